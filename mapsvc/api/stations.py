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


def _bus_status(url: str) -> dict:
    """Every node's status from the bus: the whole network, with each station's clients per node."""
    from cors.bus import network_status, open_bus

    ext = current_app.extensions["mapsvc"]
    bus = ext.get("bus")
    if bus is None:
        bus = ext["bus"] = open_bus(url, "api")
    try:
        return network_status(bus.nodes())
    except Exception as exc:  # redis down: say so rather than show a network with no stations
        raise Problem(503, "Service Unavailable", f"station bus unreachable: {type(exc).__name__}") from None


def _status() -> dict:
    from cors.caster import read_status

    cfg = current_app.extensions["mapsvc"]["config"]
    if cfg.get("BUS"):
        doc = _bus_status(cfg["BUS"])
    else:
        doc = read_status(Path(cfg["HOME"]) / STATUS_FILE) or {"generated": None, "stations": []}
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
        from cors.stations import open_registry

        where = current_app.extensions["mapsvc"]["config"]["STATIONS_DB"]
        if "://" in where or Path(where).exists():  # a SQLite registry not made yet is empty
            reg = open_registry(where)
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


def _archive():
    from cors.archive import Archive

    return Archive(Path(current_app.extensions["mapsvc"]["config"]["HOME"]) / "rinex")


@bp.get("/stations/<station_id>/rinex")
@requires("read_rinex")
def rinex_list(station_id):
    if not _STATION_ID.match(station_id):
        raise Problem(400, "Bad Request", "station ids are 1-64 letters, digits, '.', '_' or '-'")
    return _json({"station": station_id, "files": _archive().listing(station_id)})


@bp.get("/stations/<station_id>/rinex/<name>")
@requires("read_rinex")
def rinex_file(station_id, name):
    from flask import send_file

    from cors.errors import CorsError

    if not _STATION_ID.match(station_id):
        raise Problem(400, "Bad Request", "station ids are 1-64 letters, digits, '.', '_' or '-'")
    try:
        path = _archive().path(station_id, name)
    except CorsError as exc:
        raise Problem(404, "Not Found", str(exc)) from None
    return send_file(path, mimetype="application/gzip", as_attachment=True, download_name=name, max_age=3600)


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
