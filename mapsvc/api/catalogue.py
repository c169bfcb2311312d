"""The release catalogue as the API sees it: a per-process cache in front of the release store.

Releases are immutable, so a release's manifest (raw canonical bytes, parsed entries, tile bboxes) is read once
and kept; only the list of releases (which grows on publish) is re-read, at most every ``RELEASES_TTL``
seconds. One instance per app (kept in ``app.extensions``), never module state.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from tiles import open_store
from tiles.errors import StoreError
from tiles.grid import geodesic_circle, lon_ranges, tile_bboxes
from tiles.store import RELEASE_NAME, content_key

from mapsvc.api.problems import Problem


@dataclass
class ReleaseView:
    name: str
    raw: bytes          # canonical manifest bytes: what is signed and served
    sha256: str
    level: int
    ids: np.ndarray     # int64, manifest order
    sha: list[str]
    size: list[int]
    index: dict[int, int]
    keys: list[str]     # tiles.store.content_key per row: vector hash + raster layer hashes (for deltas)
    _boxes: object = field(default=None, repr=False)
    _paths: dict = field(default_factory=dict, repr=False)

    def blob_path(self, row: int, store) -> str:
        """Path of a tile's blob file, resolved once per row (the hot path of tile GETs)."""
        path = self._paths.get(row)
        if path is None:
            path = self._paths[row] = str(store.blob_file(self.sha[row]))
        return path

    @classmethod
    def of(cls, name: str, raw: bytes) -> "ReleaseView":
        manifest = json.loads(raw)
        entries = manifest["tiles"]
        ids = np.array([t["id"] for t in entries], dtype=np.int64)
        return cls(name, raw, hashlib.sha256(raw).hexdigest(), int(manifest["level"]), ids,
                   [t["sha256"] for t in entries], [int(t["bytes"]) for t in entries],
                   {int(t["id"]): i for i, t in enumerate(entries)}, [content_key(t) for t in entries])

    def entries(self, rows) -> list[dict]:
        return [{"id": int(self.ids[i]), "sha256": self.sha[i], "bytes": self.size[i]} for i in rows]

    @property
    def bboxes(self) -> np.ndarray:
        return tile_bboxes(self.ids) if len(self.ids) else np.zeros((0, 4))

    def in_bbox(self, west: float, south: float, east: float, north: float) -> list[int]:
        """Rows of tiles touching the box, with the grid's floor rule (a tile is [west, east) x [south, north)).
        west > east: the box crosses the antimeridian."""
        b = self.bboxes
        mask = (b[:, 1] <= north) & (b[:, 3] > south)
        across = np.zeros(len(b), dtype=bool)
        for w, e in lon_ranges(west, east):
            across |= (b[:, 0] <= e) & (b[:, 2] > w)
        return np.flatnonzero(mask & across).tolist()

    def in_circle(self, lat: float, lon: float, radius_m: float) -> list[int]:
        """Rows of tiles touching a geodesic circle (tiles.grid.geodesic_circle: wraps at +-180, covers poles)."""
        import shapely

        if self._boxes is None:
            b = self.bboxes
            self._boxes = shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])
        hit = shapely.intersects(self._boxes, geodesic_circle(lon, lat, radius_m))
        # the centre's own tile, by the grid's floor rule (lon +180 is the tile at -180)
        b, x = self.bboxes, (lon + 180.0) % 360.0 - 180.0
        hit |= (b[:, 0] <= x) & (x < b[:, 2]) & (b[:, 1] <= lat) & (lat < b[:, 3])
        return np.flatnonzero(hit).tolist()


class Catalogue:
    def __init__(self, store_url: str, releases_ttl: float = 1.0, keep: int = 64, tile_cache_mb: float = 64.0):
        self.store_url = store_url
        self.releases_ttl = releases_ttl
        self.keep = keep
        self._store = None
        # Tile bytes kept in memory (blobs are immutable and content-addressed, so a cached copy never goes
        # stale). Loading checks the sha256 once: a blob damaged on disk is never cached or served from here.
        self.tile_cache_budget = int(tile_cache_mb * 1024 * 1024)
        self._bytes: dict[str, bytes] = {}
        self._bytes_total = 0
        self._views: OrderedDict[str, ReleaseView] = OrderedDict()
        self._list: tuple[float, list] | None = None
        self._lock = threading.Lock()

    @property
    def store(self):
        if self._store is None:
            self._store = open_store(self.store_url)
        return self._store

    def releases(self) -> list:
        now = time.monotonic()
        cached = self._list
        if cached is not None and now - cached[0] < self.releases_ttl:
            return cached[1]
        rel = self.store.releases()
        self._list = (now, rel)
        return rel

    def latest(self):
        rel = self.releases()
        if not rel:
            raise Problem(404, "Not Found", "no release has been published")
        return rel[-1]

    def release(self, name: str) -> ReleaseView:
        view = self._views.get(name)
        if view is not None:
            return view
        if not RELEASE_NAME.fullmatch(name):
            raise Problem(404, "Not Found", "unknown release (release names are letters, digits, '.', '_', '-')")
        try:
            raw = self.store.manifest_raw(name)
        except StoreError:
            raise Problem(404, "Not Found", f"unknown release {name!r}") from None
        view = ReleaseView.of(name, raw)
        with self._lock:
            self._views[name] = view
            while len(self._views) > self.keep:
                self._views.popitem(last=False)
        return view

    def tile_bytes(self, sha: str, path: str) -> bytes | None:
        """A tile's verified bytes from memory (loaded on first use), or None: cache off, tile too big for the
        budget, file missing, or bytes that do not hash to ``sha`` (the caller then decides)."""
        data = self._bytes.get(sha)
        if data is not None or self.tile_cache_budget <= 0:
            return data
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        if len(data) > self.tile_cache_budget // 4 or hashlib.sha256(data).hexdigest() != sha:
            return None
        with self._lock:
            while self._bytes and self._bytes_total + len(data) > self.tile_cache_budget:
                old = next(iter(self._bytes))  # oldest first: tiles are immutable, FIFO is enough
                self._bytes_total -= len(self._bytes.pop(old))
            if sha not in self._bytes:
                self._bytes[sha] = data
                self._bytes_total += len(data)
        return data

    def attachment(self, name: str, key: str) -> bytes | None:
        """A release attachment that is not restricted (restricted ones, e.g. audit.json, are never served)."""
        self.release(name)
        try:
            return self.store.attachment(name, key, restricted_ok=False)
        except StoreError:
            return None
