"""``GET /v1/releases/{release}/tiles/{tile_id}.geojson``: a tile as GeoJSON (:mod:`tiles.geojson`), for maps.

A tile's GeoJSON depends on nothing but the tile's bytes, so it is made once per tile sha256 and kept gzip'd
(:class:`tiles.geojson.GeoJSONCache`): in memory per worker, in front of the store's ``geojson`` directory,
which publish fills and every node shares (``HOME/cache/geojson`` for a store without local files). It is
served with the tile's own ETag and immutable caching, to the same roles as the tile.
"""
from __future__ import annotations

import gzip
from pathlib import Path

from flask import Blueprint, Response, current_app, request
from tiles import StoreError
from tiles.geojson import GeoJSONCache

from mapsvc.api.auth import requires
from mapsvc.api.problems import Problem
from mapsvc.api.releases import TILE_CACHE, _conditional, _tile_id

bp = Blueprint("geojson", __name__)
GEOJSON_TYPE = "application/geo+json"


def _cache() -> GeoJSONCache:
    ext = current_app.extensions["mapsvc"]
    cache = ext.get("geojson")
    if cache is None:
        shared = ext["catalogue"].store.derived_dir("geojson")
        cache = ext["geojson"] = GeoJSONCache(shared or Path(ext["config"]["HOME"]) / "cache" / "geojson")
    return cache


@bp.get("/releases/<release>/tiles/<tile_id>.geojson")
@requires("read_releases")
def tile_geojson(release, tile_id):
    cat = current_app.extensions["mapsvc"]["catalogue"]
    view = cat.release(release)
    tid = _tile_id(tile_id)
    row = view.index.get(tid)
    if row is None:
        raise Problem(404, "Not Found", f"release {release!r} has no tile {tid}")
    if request.query_string:
        raise Problem(400, "Bad Request", "this endpoint takes no query parameters")
    sha = view.sha[row]

    def tile_bytes() -> bytes:
        try:
            return cat.store.blob(sha)
        except Exception:
            raise Problem(503, "Service Unavailable", f"tile {tid} of {release!r} is missing from the store") from None

    def body() -> Response:
        try:
            data = _cache().get(sha, tile_bytes)
        except StoreError as exc:
            raise Problem(503, "Service Unavailable", str(exc)) from None
        if request.accept_encodings["gzip"] > 0:
            return Response(data, mimetype=GEOJSON_TYPE, headers={"Content-Encoding": "gzip"})
        return Response(gzip.decompress(data), mimetype=GEOJSON_TYPE)

    # the tile's own ETag and immutable caching: the GeoJSON is a function of the tile's bytes
    resp = _conditional(sha, TILE_CACHE, body)
    resp.headers["Vary"] = "Accept-Encoding"
    return resp
