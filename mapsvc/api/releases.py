"""Release endpoints: list, latest, manifest, signature, tiles (one, by area), tile rasters, delta, report."""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from typing import Callable

from flask import Blueprint, Response, current_app, request
from werkzeug.http import is_resource_modified
from werkzeug.wsgi import wrap_file

from tiles.grid import is_valid_tile
from tiles.raster import LAYER_NAME
from tiles.signing import SIG_ATTACHMENT
from tiles.store import raster_attachment, tile_changes

from mapsvc.api.auth import requires
from mapsvc.api.problems import Problem
from mapsvc.errors import USER_ERRORS

bp = Blueprint("releases", __name__)
log = logging.getLogger("mapsvc.api")
TILE_CACHE = "public, max-age=31536000, immutable"  # tiles are content-addressed: a URL's bytes never change
# Names and numbers from URLs are checked with fullmatch only: `$` would also accept a trailing newline.
TILE_ID = re.compile(r"-?[0-9]{1,10}")
_LANG = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?")
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")


def not_modified(environ, sha: str) -> bool:
    """Whether the request's If-None-Match matches ETag ``"sha"`` (werkzeug's rule, as in make_conditional:
    weak comparison, ``*``). The one ETag test of the API; the tile fast path uses it too."""
    return "HTTP_IF_NONE_MATCH" in environ and not is_resource_modified(environ, etag=sha)


def _conditional(sha: str, cache_control: str, body: Callable[[], Response]) -> Response:
    """304 when the client holds this content, else ``body()`` (only made then); ETag and Cache-Control on both."""
    resp = Response(status=304) if not_modified(request.environ, sha) else body()
    resp.set_etag(sha)
    resp.headers["Cache-Control"] = cache_control
    return resp


def _ext() -> dict:
    return current_app.extensions["mapsvc"]


def _json(obj, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(obj, separators=(",", ":")) + "\n", status=status, mimetype="application/json",
                    headers=headers)


def _float_arg(name: str, lo: float, hi: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        raise Problem(400, "Bad Request", f"query parameter {name!r} is required")
    if len(raw) > 32 or not _FLOAT.fullmatch(raw):
        raise Problem(400, "Bad Request", f"{name}={raw[:32]!r} is not a number")
    value = float(raw)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise Problem(400, "Bad Request", f"{name}={raw} is outside {lo:g}..{hi:g}")
    return value


def _tile_id(raw: str) -> int:
    if not TILE_ID.fullmatch(raw):
        raise Problem(400, "Bad Request", "tile id must be an NDS packed tile id (an integer)")
    tid = int(raw)
    if not is_valid_tile(tid):
        raise Problem(400, "Bad Request", f"{tid} is not a valid NDS packed tile id")
    return tid


def _area_rows(view) -> tuple[list[int], dict]:
    """Rows of the release's tiles selected by ?bbox=W,S,E,N or ?lat=&lon=&radius_m= (exactly one of them)."""
    cfg = _ext()["config"]
    args = request.args
    allowed = {"bbox", "lat", "lon", "radius_m"}
    unknown = set(args) - allowed
    if unknown:
        raise Problem(400, "Bad Request", f"unknown query parameter(s): {', '.join(sorted(unknown))[:200]}")
    if any(len(args.getlist(k)) > 1 for k in args):
        raise Problem(400, "Bad Request", "each query parameter may appear once")
    if "bbox" in args:
        if {"lat", "lon", "radius_m"} & set(args):
            raise Problem(400, "Bad Request", "give either bbox or lat/lon/radius_m, not both")
        parts = args["bbox"].split(",")
        if len(parts) != 4 or any(len(p) > 32 or not _FLOAT.fullmatch(p.strip()) for p in parts):
            raise Problem(400, "Bad Request", "bbox must be four numbers: west,south,east,north")
        w, s, e, n = (float(p) for p in parts)
        if not all(math.isfinite(v) for v in (w, s, e, n)) or not (
                -180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
            raise Problem(400, "Bad Request", "bbox must be west,east in -180..180 (west > east crosses the "
                                              "antimeridian) and south<=north in -90..90")
        if (e - w if w <= e else e - w + 360.0) > cfg["MAX_BBOX_DEG"] or n - s > cfg["MAX_BBOX_DEG"]:
            raise Problem(400, "Bad Request", f"bbox larger than {cfg['MAX_BBOX_DEG']} degrees")
        return view.in_bbox(w, s, e, n), {"bbox": [w, s, e, n]}
    if {"lat", "lon", "radius_m"} <= set(args):
        lat = _float_arg("lat", -90.0, 90.0)
        lon = _float_arg("lon", -180.0, 180.0)
        radius = _float_arg("radius_m", 0.0, float(cfg["MAX_RADIUS_M"]))
        return view.in_circle(lat, lon, radius), {"lat": lat, "lon": lon, "radius_m": radius}
    raise Problem(400, "Bad Request", "give bbox=W,S,E,N or lat, lon and radius_m")


@bp.get("/releases")
@requires("read_releases")
def list_releases():
    return _json({"releases": [r.__dict__ for r in _ext()["catalogue"].releases()]})


@bp.get("/releases/latest")
@requires("read_releases")
def latest():
    return _json(_ext()["catalogue"].latest().__dict__)


@bp.get("/releases/<release>")
@requires("read_releases")
def manifest(release):
    view = _ext()["catalogue"].release(release)
    return _conditional(view.sha256, "no-cache", lambda: Response(view.raw, mimetype="application/json"))


@bp.get("/releases/<release>/manifest.sig")
@requires("read_releases")
def signature(release):
    data = _ext()["catalogue"].attachment(release, SIG_ATTACHMENT)
    if data is None:
        raise Problem(404, "Not Found", f"release {release!r} is not signed")
    return Response(data, mimetype="application/json", headers={"Cache-Control": "no-cache"})


@bp.get("/releases/<release>/tiles/<tile_id>")
@requires("read_releases")
def tile(release, tile_id):
    ext = _ext()
    view = ext["catalogue"].release(release)
    row = view.index.get(int(tile_id)) if TILE_ID.fullmatch(tile_id) else None
    if row is None:
        tid = _tile_id(tile_id)
        raise Problem(404, "Not Found", f"release {release!r} has no tile {tid}")
    sha = view.sha[row]
    if request.query_string:
        if set(request.args) - {"redirect"} or len(request.args.getlist("redirect")) != 1:
            raise Problem(400, "Bad Request", "the only query parameter here is redirect=1")
        if request.args["redirect"] not in ("1", "true"):
            raise Problem(400, "Bad Request", "redirect must be 1 or true")
        url, _ = _signed_url(sha)
        return Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})
    return _conditional(sha, TILE_CACHE, lambda: _tile_body(ext["catalogue"], view, row, release, tile_id))


def _tile_body(cat, view, row: int, release: str, tile_id: str) -> Response:
    # The path comes from the catalogue's sha256, never from the request: nothing outside the store is reachable.
    sha = view.sha[row]
    path = view.blob_path(row, cat.store)
    data = cat.tile_bytes(sha, path)
    if data is not None:
        return Response(data, mimetype="application/gzip")
    if path is None or (cat.tile_cache_budget > 0 and os.path.exists(path)
                        and os.path.getsize(path) <= cat.tile_cache_budget // 4):
        log.error("tile %s of %s: blob %s fails its sha256 check", tile_id, release, sha)
        raise Problem(503, "Service Unavailable", f"tile {tile_id} of {release!r} is damaged in the store")
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise Problem(503, "Service Unavailable", f"tile {tile_id} of {release!r} is missing from the store") from None
    size = os.fstat(f.fileno()).st_size
    # wrap_file lets gunicorn use sendfile(2) for the body
    resp = Response(wrap_file(request.environ, f), mimetype="application/gzip", direct_passthrough=True)
    resp.content_length = size
    return resp


RASTER_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def _raster_index(view) -> dict[tuple[int, str], str]:
    """{(tile id, layer): sha256} of a release's per-tile rasters, parsed once per manifest (kept per app)."""
    cache = _ext().setdefault("raster_index", {})
    index = cache.get(view.sha256)
    if index is None:
        index = {(int(t["id"]), layer): r["sha256"] for t in json.loads(view.raw)["tiles"]
                 for layer, r in (t.get("rasters") or {}).items()}
        while len(cache) >= 64:  # releases are immutable; a few recent ones are enough
            cache.pop(next(iter(cache)), None)
        cache[view.sha256] = index
    return index


@bp.get("/releases/<release>/tiles/<tile_id>/rasters/<layer>")
@requires("read_releases")
def tile_raster(release, tile_id, layer):
    """One raster layer of a tile: a cloud-optimised GeoTIFF, content-addressed like the tiles."""
    view = _ext()["catalogue"].release(release)
    tid = _tile_id(tile_id)
    if not LAYER_NAME.fullmatch(layer):
        raise Problem(400, "Bad Request", "layer names are 1-64 letters, digits, '_' or '-'")
    if request.query_string:
        raise Problem(400, "Bad Request", "this endpoint takes no query parameters")
    sha = _raster_index(view).get((tid, layer))
    if sha is None:
        raise Problem(404, "Not Found", f"release {release!r} has no raster {layer!r} for tile {tid}")
    return _conditional(sha, TILE_CACHE, lambda: _raster_body(release, tid, layer, sha))


def _raster_body(release: str, tid: int, layer: str, sha: str) -> Response:
    data = _ext()["catalogue"].attachment(release, raster_attachment(layer, tid))
    if data is None or hashlib.sha256(data).hexdigest() != sha:
        log.error("raster %s of tile %s of %s is missing or fails its sha256 check", layer, tid, release)
        raise Problem(503, "Service Unavailable", f"raster {layer!r} of tile {tid} of {release!r} is damaged "
                      "or missing in the store")
    return Response(data, mimetype=RASTER_TYPE)


def _signed_url(sha: str) -> tuple[str, int]:
    from mapsvc.api.securelink import sign

    cfg = _ext()["config"]
    if not cfg["SECURE_LINK_SECRET"] or not cfg["SECURE_LINK_BASE"]:
        raise Problem(404, "Not Found", "signed tile URLs are not configured on this server")
    return sign(cfg["SECURE_LINK_BASE"], sha, cfg["SECURE_LINK_SECRET"], cfg["SECURE_LINK_TTL"])


@bp.get("/releases/<release>/tiles/<tile_id>/url")
@requires("read_releases")
def tile_url(release, tile_id):
    view = _ext()["catalogue"].release(release)
    tid = _tile_id(tile_id)
    row = view.index.get(tid)
    if row is None:
        raise Problem(404, "Not Found", f"release {release!r} has no tile {tid}")
    url, expires = _signed_url(view.sha[row])
    return _json({"id": tid, "sha256": view.sha[row], "url": url, "expires": expires},
                 headers={"Cache-Control": "no-store"})


@bp.get("/releases/<release>/tiles")
@requires("read_releases")
def tiles_in_area(release):
    view = _ext()["catalogue"].release(release)
    rows, query = _area_rows(view)
    return _json({"release": release, "level": view.level, "query": query, "tiles": view.entries(rows)})


@bp.get("/releases/<release>/delta")
@requires("read_releases")
def delta(release):
    cat = _ext()["catalogue"]
    args = request.args
    if set(args) != {"from"} or len(args.getlist("from")) != 1:
        raise Problem(400, "Bad Request", "give exactly one query parameter: from=RELEASE")
    a, b = cat.release(args["from"]), cat.release(release)
    ch = tile_changes(a.content_keys(), b.content_keys())
    return _json({"from": a.name, "to": b.name, "from_manifest_sha256": a.sha256, "to_manifest_sha256": b.sha256,
                  "added": b.entries(b.index[t] for t in ch.added),
                  "changed": b.entries(b.index[t] for t in ch.changed),
                  "removed": ch.removed, "unchanged": ch.unchanged})


REPORT_TYPES = {"json": "application/json", "html": "text/html", "pdf": "application/pdf"}


@bp.get("/releases/<release>/report")
@requires("read_reports")
def report(release):
    """The release's quality report as stored when it was made (mapsvc.reports): serving is a read, never a
    rendering, so report downloads cannot take CPU from tile requests."""
    from standards.report import attachment_name

    fmt = request.args.get("format")
    if fmt is None:
        best = request.accept_mimetypes.best_match(list(REPORT_TYPES.values()), default="application/json")
        fmt = next(k for k, v in REPORT_TYPES.items() if v == best)
    if fmt not in REPORT_TYPES:
        raise Problem(400, "Bad Request", "format must be json, html or pdf")
    lang = request.args.get("lang") or next(iter(request.accept_languages.values()), "en")
    if not _LANG.fullmatch(lang):
        raise Problem(400, "Bad Request", "lang must be a language tag such as en or zh-CN")
    try:
        key = attachment_name(fmt, lang)
    except USER_ERRORS as exc:  # a language the reports are not rendered in
        raise Problem(400, "Bad Request", str(exc)) from None
    cat = _ext()["catalogue"]
    data = cat.attachment(release, key)
    if data is None:
        if fmt != "json" and cat.attachment(release, attachment_name("json")) is not None:
            raise Problem(404, "Not Found", f"release {release!r} has no {fmt} report rendered in {lang!r}; "
                          "`mapsvc check --release` renders the missing ones")
        raise Problem(404, "Not Found", f"release {release!r} has no quality report")
    return Response(data, mimetype=REPORT_TYPES[fmt], headers={"Cache-Control": "no-cache"})
