"""``GET /v1/releases/{release}/tiles/{tile_id}.geojson``: a tile as GeoJSON (:mod:`tiles.geojson`), for maps.

A tile's GeoJSON depends on nothing but the tile's bytes, so it is made once per tile sha256 and kept gzip'd:
in memory (per worker) and under ``HOME/cache/geojson`` (shared by the workers and across restarts). It is
served with the tile's own ETag and immutable caching, to the same roles as the tile.
"""
from __future__ import annotations

import gzip
import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

from flask import Blueprint, Response, current_app, request
from lanelets.files import write_atomic
from tiles.geojson import tile_geojson_bytes

from mapsvc.api.auth import requires
from mapsvc.api.problems import Problem
from mapsvc.api.releases import TILE_CACHE, _conditional, _tile_id

bp = Blueprint("geojson", __name__)
GEOJSON_TYPE = "application/geo+json"


class GeoJSONCache:
    """gzip'd GeoJSON by tile sha256: memory (bounded, oldest out first) in front of a directory."""

    def __init__(self, directory: str | Path, memory_mb: float = 32.0):
        self.dir = Path(directory)
        self.budget = int(memory_mb * 1024 * 1024)
        self._mem: OrderedDict[str, bytes] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def _path(self, sha: str) -> Path:
        return self.dir / sha[:2] / f"{sha}.geojson.gz"

    def get(self, sha: str, tile_bytes) -> bytes:
        """The gzip'd GeoJSON of the tile ``sha``; ``tile_bytes()`` gives the tile when it must be converted."""
        data = self._mem.get(sha)
        if data is not None:
            return data
        path = self._path(sha)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            tile = tile_bytes()
            if hashlib.sha256(tile).hexdigest() != sha:
                raise Problem(503, "Service Unavailable", f"tile {sha} is damaged in the store") from None
            # mtime=0: the same tile always gives the same bytes
            data = gzip.compress(tile_geojson_bytes(tile), 6, mtime=0)
            write_atomic(path, data)
        if len(data) <= self.budget // 4:
            with self._lock:
                if sha not in self._mem:
                    self._mem[sha] = data
                    self._total += len(data)
                while self._total > self.budget and self._mem:
                    self._total -= len(self._mem.popitem(last=False)[1])
        return data


def _cache() -> GeoJSONCache:
    ext = current_app.extensions["mapsvc"]
    cache = ext.get("geojson")
    if cache is None:
        cache = ext["geojson"] = GeoJSONCache(Path(ext["config"]["HOME"]) / "cache" / "geojson")
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
        data = _cache().get(sha, tile_bytes)
        if request.accept_encodings["gzip"] > 0:
            return Response(data, mimetype=GEOJSON_TYPE, headers={"Content-Encoding": "gzip"})
        return Response(gzip.decompress(data), mimetype=GEOJSON_TYPE)

    # the tile's own ETag and immutable caching: the GeoJSON is a function of the tile's bytes
    resp = _conditional(sha, TILE_CACHE, body)
    resp.headers["Vary"] = "Accept-Encoding"
    return resp
