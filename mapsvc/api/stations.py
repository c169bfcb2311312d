"""Reference-station status: ``GET /v1/stations``, ``/v1/stations/{id}``, ``/v1/network`` and ``/metrics``.

The NTRIP caster runs in the ``mapsvc serve`` process and writes its status document every 2 s
(:func:`cors.caster.read_status`); API workers only read it. Positions in it are the approximate ones of the
sourcetable: precise station coordinates leave only inside RTCM 1005/1006.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from flask import Blueprint, Response, current_app

from mapsvc.api.auth import PERMISSIONS, current_token, requires
from mapsvc.api.problems import Problem

bp = Blueprint("stations", __name__)
STATUS_FILE = "cors_status.json"
STALE_AFTER_S = 10.0  # the caster writes every 2 s; older than this means it is not running
_STATION_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # fullmatch only: `$` accepts a trailing newline


def _status() -> dict:
    from cors.caster import read_status

    home = Path(current_app.extensions["mapsvc"]["config"]["HOME"])
    doc = read_status(home / STATUS_FILE) or {"generated": None, "stations": []}
    stale = doc.get("generated") is None or time.time() - float(doc["generated"]) > STALE_AFTER_S
    if stale:
        for st in doc.get("stations", []):
            st["up"] = False
    doc["caster_running"] = not stale
    return doc


def _positions(doc: dict) -> dict:
    """Station positions as the caller's role may see them, enforced here whatever the status file holds:
    rounded to 0.01 degree below admin; admins also get the precise ARP (lat, lon, height) from the registry."""
    rec = current_token()
    precise = {}
    if rec is not None and rec.role in PERMISSIONS["read_precise_positions"]:
        from cors.stations import StationRegistry

        path = Path(current_app.extensions["mapsvc"]["config"]["HOME"]) / "stations.sqlite"
        if path.exists():
            reg = StationRegistry(path)
            try:
                precise = {s.id: s.geodetic for s in reg.list()}
            finally:
                reg.close()
    for st in doc.get("stations", []):
        for key in ("approx_lat", "approx_lon"):
            if isinstance(st.get(key), (int, float)):
                st[key] = round(float(st[key]), 2)
        for key in ("lat", "lon", "height", "ecef"):
            st.pop(key, None)
        if st.get("id") in precise:
            st["lat"], st["lon"], st["height"] = (round(v, 9 if i < 2 else 4) for i, v in enumerate(precise[st["id"]]))
    return doc


def _json(obj) -> Response:
    return Response(json.dumps(obj, indent=1) + "\n", mimetype="application/json",
                    headers={"Cache-Control": "no-store"})


@bp.get("/stations")
@requires("read_stations")
def stations():
    return _json(_positions(_status()))


@bp.get("/stations/<station_id>")
@requires("read_stations")
def station(station_id):
    if not _STATION_ID.fullmatch(station_id):
        raise Problem(400, "Bad Request", "station ids are 1-64 letters, digits, '.', '_' or '-'")
    doc = _positions(_status())
    for st in doc.get("stations", []):
        if st.get("id") == station_id:
            return _json({**st, "caster_running": doc["caster_running"], "generated": doc.get("generated")})
    raise Problem(404, "Not Found", f"unknown station {station_id!r}")


@bp.get("/network")
@requires("read_stations")
def network():
    """Network RTK: baselines and fix state, closures, leave-one-out residuals, exclusions and why.

    Written into the caster's status document by its network mountpoint; 404 while there is none.
    """
    doc = _status()
    net = doc.get("network")
    if not net:
        raise Problem(404, "Not Found", "no network RTK mountpoint is running")
    return _json({**net, "caster_running": doc["caster_running"], "generated": doc.get("generated")})


@bp.get("/metrics")
@requires("read_metrics")
def metrics():
    home = Path(current_app.extensions["mapsvc"]["config"]["HOME"])
    try:
        text = (home / STATUS_FILE).with_suffix(".prom").read_bytes()
    except OSError:
        text = b""
    return Response(text, mimetype="text/plain; version=0.0.4", headers={"Cache-Control": "no-store"})
