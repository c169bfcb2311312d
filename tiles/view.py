"""A release as readers see it: the signed manifest bytes, indexed for tile lookups and area queries.

Built from the canonical manifest bytes alone (no store needed), so the API and the vehicle client select
tiles by the same rules: the client checks the server's area answers against its own view of the signed
manifest.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from tiles.grid import geodesic_circle, lon_ranges, tile_bboxes
from tiles.store import content_key


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

    def blob_path(self, row: int, store) -> str | None:
        """Path of a tile's blob file, resolved once per row (the hot path of tile GETs); None when the store
        keeps no local files (:meth:`tiles.store.ReleaseStore.blob_file`)."""
        try:
            return self._paths[row]
        except KeyError:
            path = store.blob_file(self.sha[row])
            self._paths[row] = None if path is None else str(path)
            return self._paths[row]

    @classmethod
    def of(cls, name: str, raw: bytes) -> "ReleaseView":
        manifest = json.loads(raw)
        entries = manifest["tiles"]
        ids = np.array([t["id"] for t in entries], dtype=np.int64)
        return cls(name, raw, hashlib.sha256(raw).hexdigest(), int(manifest["level"]), ids,
                   [t["sha256"] for t in entries], [int(t["bytes"]) for t in entries],
                   {int(t["id"]): i for i, t in enumerate(entries)}, [content_key(t) for t in entries])

    def content_keys(self) -> list[tuple[int, str]]:
        """(tile id, content key) in manifest order, for :func:`tiles.store.tile_changes`."""
        return list(zip(self.ids.tolist(), self.keys, strict=True))

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
