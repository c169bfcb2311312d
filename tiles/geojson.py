"""A published tile as GeoJSON, for drawing (the web console's map) rather than for vehicles.

One tile (gzip'd Lanelet2 OSM, as stored) becomes a FeatureCollection in the release's published frame (the
tile's own lat/lon: nothing is re-projected). Every feature's ``properties`` are ``id``, ``type`` (``lanelet``,
``area``, ``line_string`` or ``regulatory_element``) and ``tags`` (the element's OSM tags, verbatim):

- a lanelet is its polygon (left bound, then the right bound back) plus ``left``/``right`` bound ids and the
  ids of its regulatory elements; its bounds are ``line_string`` features of their own;
- an area is the polygon its outer/inner line strings build (shapely ``build_area``);
- every line string is a LineString (stop lines, traffic lights and signs are line strings in Lanelet2);
- a regulatory element is a Point where its own members are (the centroid of their geometry), with the ids
  of its members by role, so a click on it tells what it refers to.

Parsing is :func:`lanelets.osm.read_osm`'s; geometry is shapely's.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import shapely

from lanelets import read_osm
from lanelets.files import write_atomic
from tiles.errors import StoreError

_DECIMALS = 8  # 1e-8 degree is about a millimetre: finer digits only make the file bigger


def tile_geojson(tile_gz: bytes) -> dict:
    """The FeatureCollection of one stored tile (gzip'd OSM bytes)."""
    return osm_geojson(read_osm(tile_gz, name="tile"))


def tile_geojson_bytes(tile_gz: bytes) -> bytes:
    """Compact UTF-8 JSON of :func:`tile_geojson` (what the API serves and caches)."""
    return json.dumps(tile_geojson(tile_gz), separators=(",", ":"), ensure_ascii=False).encode()


class GeoJSONCache:
    """gzip'd GeoJSON by tile sha256: memory (bounded, oldest out first) in front of a directory.

    A tile's GeoJSON depends on nothing but the tile's bytes, so it is made once per sha256. The directory is
    the store's :meth:`~tiles.store.ReleaseStore.derived_dir` (shared like the blobs, so one conversion serves
    every worker and node) and is filled at publish (:meth:`warm`): a release's first view converts nothing.
    """

    def __init__(self, directory: str | Path, memory_mb: float = 32.0):
        self.dir = Path(directory)
        self.budget = int(memory_mb * 1024 * 1024)
        self._mem: OrderedDict[str, bytes] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def path(self, sha: str) -> Path:
        return self.dir / sha[:2] / f"{sha}.geojson.gz"

    def get(self, sha: str, tile_bytes: Callable[[], bytes]) -> bytes:
        """The gzip'd GeoJSON of the tile ``sha``; ``tile_bytes()`` gives the tile when it must be converted.
        A tile whose bytes do not hash to ``sha`` is :class:`StoreError` (nothing is cached from it)."""
        data = self._mem.get(sha)
        if data is not None:
            return data
        path = self.path(sha)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            tile = tile_bytes()
            if hashlib.sha256(tile).hexdigest() != sha:
                raise StoreError(f"tile {sha} is damaged in the store") from None
            # mtime=0: the same tile always gives the same bytes
            data = gzip.compress(tile_geojson_bytes(tile), 6, mtime=0)
            write_atomic(path, data, mode=0o644)
        if len(data) <= self.budget // 4:
            with self._lock:
                if sha not in self._mem:
                    self._mem[sha] = data
                    self._total += len(data)
                while self._total > self.budget and self._mem:
                    self._total -= len(self._mem.popitem(last=False)[1])
        return data

    def warm(self, store, release: str, progress: Callable[[int], None] | None = None) -> int:
        """Convert every tile of ``release`` not converted yet (a tile shared with an older release is not
        converted again); returns how many were converted."""
        made = 0
        for entry in store.manifest(release)["tiles"]:
            sha = entry["sha256"]
            if not self.path(sha).exists():
                self.get(sha, lambda sha=sha: store.blob(sha))
                made += 1
            if progress is not None:
                progress(1)
        return made


def osm_geojson(m) -> dict:
    """The FeatureCollection of an :class:`lanelets.osm.OsmMap`."""
    lon, lat = m.lonlat()
    ways = m.way_geometries(lon, lat)
    features: list[dict] = []
    rel_types = [t.get("type", "") for t in m.rel_tags]
    for r in range(m.n_relations):
        lo, hi = int(m.rel_ptr[r]), int(m.rel_ptr[r + 1])
        kinds = m.rel_member_kind[lo:hi]
        rows = m.rel_member_row[lo:hi]
        roles = m.rel_member_role[lo:hi]
        rtype = rel_types[r]
        props = {"id": int(m.rel_id[r]), "tags": dict(m.rel_tags[r])}
        if rtype == "lanelet":
            geom, extra = _lanelet(m, ways, kinds, rows, roles)
            props = {"id": props["id"], "type": "lanelet", **extra, "tags": props["tags"]}
        elif rtype == "multipolygon":
            geom = _area(ways, kinds, rows, roles)
            props = {"id": props["id"], "type": "area", "tags": props["tags"]}
        elif rtype == "regulatory_element":
            geom, members = _regulatory_element(m, ways, lon, lat, kinds, rows, roles)
            props = {"id": props["id"], "type": "regulatory_element", "members": members, "tags": props["tags"]}
        else:
            continue  # other relations (routes, ...) have nothing to draw
        if geom is None or geom.is_empty:
            continue
        features.append(_feature(geom, props))
    for w in range(m.n_ways):
        geom = ways[w]
        if geom is None or geom.is_empty:
            continue
        features.append(_feature(geom, {"id": int(m.way_id[w]), "type": "line_string",
                                        "tags": dict(m.way_tags[w])}))
    return {"type": "FeatureCollection", "features": features}


def _feature(geom, props: dict) -> dict:
    geom = shapely.transform(geom, lambda xy: np.round(xy, _DECIMALS))
    return {"type": "Feature", "geometry": shapely.geometry.mapping(geom), "properties": props}


def _lanelet(m, ways, kinds, rows, roles):
    left = right = None
    regelems = []
    for kind, row, role in zip(kinds, rows, roles):
        if kind == 1 and role == "left":
            left = int(row)
        elif kind == 1 and role == "right":
            right = int(row)
        elif kind == 2 and role == "regulatory_element":
            regelems.append(int(m.rel_id[row]))
    extra = {"left": int(m.way_id[left]) if left is not None else None,
             "right": int(m.way_id[right]) if right is not None else None,
             "regulatory_elements": regelems}
    if left is None or right is None:
        return None, extra
    lcoords = np.asarray(shapely.get_coordinates(ways[left]))
    rcoords = np.asarray(shapely.get_coordinates(ways[right]))
    if len(lcoords) < 2 or len(rcoords) < 2:
        return None, extra
    # Lanelet2 lets a bound be stored against the driving direction (it inverts it on load); the polygon is
    # the left bound then the right bound back, with the right one turned to run along the left one.
    same = (np.hypot(*(lcoords[0] - rcoords[0])) + np.hypot(*(lcoords[-1] - rcoords[-1]))
            <= np.hypot(*(lcoords[0] - rcoords[-1])) + np.hypot(*(lcoords[-1] - rcoords[0])))
    ring = np.vstack([lcoords, rcoords[::-1] if same else rcoords])
    poly = shapely.Polygon(ring)
    if not poly.is_valid:
        poly = shapely.make_valid(poly)
        polys = [g for g in getattr(poly, "geoms", [poly]) if g.geom_type in ("Polygon", "MultiPolygon")]
        poly = shapely.union_all(polys) if polys else None
    return poly, extra


def _area(ways, kinds, rows, roles):
    lines = [ways[row] for kind, row, role in zip(kinds, rows, roles)
             if kind == 1 and role in ("outer", "inner") and ways[row] is not None]
    if not lines:
        return None
    built = shapely.build_area(shapely.GeometryCollection(lines))
    return None if built.is_empty else built


def _regulatory_element(m, ways, lon, lat, kinds, rows, roles):
    members: dict[str, list[int]] = {}
    parts = []
    for kind, row, role in zip(kinds, rows, roles):
        role = role or "member"
        if kind == 0:
            members.setdefault(role, []).append(int(m.node_id[row]))
            parts.append(shapely.Point(lon[row], lat[row]))
        elif kind == 1:
            members.setdefault(role, []).append(int(m.way_id[row]))
            if ways[row] is not None:
                parts.append(ways[row])
        else:
            members.setdefault(role, []).append(int(m.rel_id[row]))
    # drawn where its own devices are (lights, signs, stop lines), not over the lanelets it governs; one with
    # lanelets only (a right of way without a stop line) is drawn where those lanelets' bounds are
    if not parts:
        for kind, row in zip(kinds, rows):
            if kind == 2:
                lo, hi = int(m.rel_ptr[row]), int(m.rel_ptr[row + 1])
                parts += [ways[w] for k, w in zip(m.rel_member_kind[lo:hi], m.rel_member_row[lo:hi])
                          if k == 1 and ways[w] is not None]
    if not parts:
        return None, members
    return shapely.centroid(shapely.GeometryCollection(parts)), members
