"""The web console: pages at ``/``, ``/releases``, ``/releases/{release}``, ``/releases/{release}/report``,
``/releases/{a}/diff/{b}`` and ``/stations``, plus the two API calls only it needs.

The pages are one static shell (``mapsvc/console``) that signs in with an API token kept in the browser's
session storage and reads everything through ``/v1`` with that token: the API's role rules are the console's
(a vehicle token is refused at sign-in, ``GET /v1/whoami``; reports, precise station positions and so on are
refused by their own endpoints). MapLibre GL JS is served from the npm package ``make setup`` installs
(``node_modules/maplibre-gl``); a Content-Security-Policy keeps every page on this host.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from flask import Blueprint, Response, current_app

from tiles.store import desensitisation_of

from mapsvc.api.auth import PERMISSIONS, current_token, requires
from mapsvc.api.problems import Problem

bp = Blueprint("console", __name__)
CONSOLE_DIR = Path(__file__).resolve().parents[1] / "console"
REPO_DIR = Path(__file__).resolve().parents[2]
# name served at /console/NAME -> (file under the console's own folder, or under the MapLibre package, type)
ASSETS = {
    "app.js": ("console", "static/app.js", "text/javascript"),
    "app.css": ("console", "static/app.css", "text/css"),
    "maplibre-gl.js": ("maplibre", "dist/maplibre-gl-csp.js", "text/javascript"),
    "maplibre-gl-worker.js": ("maplibre", "dist/maplibre-gl-csp-worker.js", "text/javascript"),
    "maplibre-gl.css": ("maplibre", "dist/maplibre-gl.css", "text/css"),
    "maplibre-gl-LICENSE.txt": ("maplibre", "LICENSE.txt", "text/plain"),
}
# Everything from this host; MapLibre's CSP build runs its worker from a file, so no blob: workers either.
CSP = ("default-src 'self'; script-src 'self'; worker-src 'self'; connect-src 'self'; img-src 'self' data: blob:; "
       "style-src 'self' 'unsafe-inline'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def maplibre_dir() -> Path:
    """Where the maplibre-gl npm package is: $MAPSVC_MAPLIBRE_DIR, else node_modules beside the project."""
    env = os.environ.get("MAPSVC_MAPLIBRE_DIR")
    return Path(env) if env else REPO_DIR / "node_modules" / "maplibre-gl"


def _page(**_):
    body = (CONSOLE_DIR / "index.html").read_bytes()
    return Response(body, mimetype="text/html", headers=PAGE_HEADERS)


for _rule, _name in (("/", "home"), ("/releases", "releases"), ("/releases/<release>", "release"),
                     ("/releases/<release>/report", "report"), ("/releases/<a>/diff/<b>", "diff"),
                     ("/stations", "stations")):
    bp.add_url_rule(_rule, _name, _page, methods=["GET"])


@bp.get("/console/<asset>")
def asset(asset):
    found = ASSETS.get(asset)
    if found is None:
        raise Problem(404, "Not Found", f"the console has no asset {asset!r}")
    base, rel, ctype = found
    path = (CONSOLE_DIR if base == "console" else maplibre_dir()) / rel
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise Problem(503, "Service Unavailable",
                      f"{asset} is not installed (MapLibre GL JS comes from npm: run `make setup`)") from None
    return Response(data, mimetype=ctype, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


# -- the console's API calls ---------------------------------------------------------------------------
@bp.get("/v1/whoami")
@requires("read_identity")
def whoami():
    """The caller's token name, role and what it may do (the console's sign-in)."""
    rec = current_token()
    allowed = sorted(p for p, roles in PERMISSIONS.items() if rec.role in roles)
    return Response(json.dumps({"name": rec.name, "role": rec.role, "permissions": allowed,
                                "console": "use_console" in allowed}) + "\n",
                    mimetype="application/json", headers={"Cache-Control": "no-store"})


def _signature(name: str, view) -> dict:
    from tiles.signing import SIG_ATTACHMENT, SignatureError, parse_signature, public_key, verify_bytes

    cat = current_app.extensions["mapsvc"]["catalogue"]
    # manifest sha256 -> result: releases and keys are immutable, so a check is done once per worker
    cache = current_app.extensions["mapsvc"].setdefault("console_signatures", {})
    hit = cache.get(view.sha256)
    if hit is not None:
        return hit
    data = cat.attachment(name, SIG_ATTACHMENT)
    if data is None:
        result = {"verified": False, "key_id": None, "detail": "the release is not signed"}
    else:
        try:
            doc = parse_signature(data)
            pub = public_key(current_app.extensions["mapsvc"]["config"]["HOME"], doc["key_id"])
            verify_bytes(view.raw, doc, pub.public_key)
            result = {"verified": True, "key_id": doc["key_id"], "detail": "Ed25519 signature of the manifest verifies"}
        except SignatureError as exc:
            result = {"verified": False, "key_id": None, "detail": str(exc)}
    cache[view.sha256] = result
    return result


def _report_summary(name: str) -> dict | None:
    data = current_app.extensions["mapsvc"]["catalogue"].attachment(name, "report.json")
    if data is None:
        return None
    try:
        rep = json.loads(data)
        v = rep["verdict"]
        sev: dict[str, int] = {}
        for f in rep.get("findings", []):
            sev[f.get("severity", "?")] = sev.get(f.get("severity", "?"), 0) + 1
        return {"result": v.get("result"), "grade": v.get("grade"), "score": v.get("score"), "findings": sev}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {"result": None, "grade": None, "score": None, "findings": {}, "detail": "report.json is unreadable"}


@bp.get("/v1/console/releases")
@requires("use_console")
def releases_overview():
    """Every release with what the console's release list shows: signature check, frame, offset provider,
    and the verdict and grade of its report."""
    cat = current_app.extensions["mapsvc"]["catalogue"]
    out = []
    for info in cat.releases():
        view = cat.release(info.name)
        manifest = json.loads(view.raw)
        offset = (desensitisation_of(manifest) or {}).get("offset") or {}
        out.append({
            "name": info.name, "created": info.created, "level": info.level, "tiles": info.tiles,
            "bytes": info.bytes, "manifest_sha256": view.sha256,
            "signature": _signature(info.name, view),
            # `frame` is written by newer publishers; older manifests have none (shown as unknown)
            "frame": manifest.get("frame") or offset.get("frame"),
            "offset_provider": offset.get("name"),
            "report": _report_summary(info.name),
        })
    return Response(json.dumps({"releases": out}, separators=(",", ":")) + "\n", mimetype="application/json",
                    headers={"Cache-Control": "no-store"})
