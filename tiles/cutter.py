"""Cut a Lanelet2 map into self-contained tiles.

Every lanelet and area that touches a tile goes into it in full, with the transitive closure of what it
references (line strings, points, regulatory elements and *their* members), so each tile loads on its own in
Lanelet2. Elements no lanelet or area reaches (a lone sign, a spare line string, an unreferenced regulatory
element) go to the tiles their own geometry touches, so the union of all tiles is exactly the source map.
Elements are copied verbatim: IDs, tags and coordinates are the source's.

Geometry work is vectorised: all line strings are built at once with shapely 2, candidate (feature, tile)
pairs come from bounding boxes, and only features spanning several tiles get an exact intersects test.
"""
from __future__ import annotations

import gzip
import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import shapely

from lanelets.osm import OsmMap
from tiles import grid
from tiles.errors import TileError

# gzip level: 6 is zlib's default trade-off; mtime=0 and no file name make equal tiles byte-identical,
# which content addressing (one blob per distinct tile) relies on.
GZIP_LEVEL = 6


@dataclass
class Tile:
    id: int
    level: int
    data: bytes  # gzip'd OSM
    sha256: str
    bbox: tuple[float, float, float, float]
    counts: dict[str, int]

    @property
    def bytes(self) -> int:
        return len(self.data)


def gzip_bytes(raw: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=GZIP_LEVEL) as gz:
        gz.write(raw)
    return buf.getvalue()


def _features(m: OsmMap, lon: np.ndarray, lat: np.ndarray):
    """Seed features and their geometry: (kind, row, geometry) arrays.

    Seeds are lanelets and areas, then every relation, line string and point that no seed reaches.
    """
    types = m.relation_types()
    rel_of_member = m.relation_of_member()
    seed_rel = np.flatnonzero(np.isin(types, ["lanelet", "multipolygon"]))

    reached_rel, reached_way, reached_node = closure(m, seed_rel, np.zeros(0, np.int64), np.zeros(0, np.int64))
    orphan_rel = np.flatnonzero(~reached_rel)
    r2, w2, n2 = closure(m, orphan_rel, np.zeros(0, np.int64), np.zeros(0, np.int64))
    reached_way |= w2
    reached_node |= n2
    orphan_way = np.flatnonzero(~reached_way)
    w3 = np.zeros(m.n_ways, bool)
    w3[orphan_way] = True
    reached_node |= _nodes_of_ways(m, w3)
    orphan_node = np.flatnonzero(~reached_node)

    way_geom = m.way_geometries(lon, lat)

    # A relation's own geometry: the union (as a collection) of its way members and node members.
    kinds = m.rel_member_kind
    rows = m.rel_member_row
    member_geom = np.empty(len(rows), dtype=object)
    is_way = kinds == 1
    is_node = kinds == 0
    member_geom[is_way] = way_geom[rows[is_way]]
    member_geom[is_node] = shapely.points(lon[rows[is_node]], lat[rows[is_node]])
    has_geom = is_way | is_node
    rel_geom = np.empty(m.n_relations, dtype=object)
    rel_geom[:] = None
    if has_geom.any():
        owners, dense = np.unique(rel_of_member[has_geom], return_inverse=True)
        rel_geom[owners] = shapely.geometrycollections(member_geom[has_geom], indices=dense)
    # Relations made only of relations (rare): place them by their members' members.
    missing = np.array([g is None for g in rel_geom], dtype=bool)
    for r in np.flatnonzero(missing):
        _, w, n = closure(m, np.array([r]), np.zeros(0, np.int64), np.zeros(0, np.int64))
        parts = list(way_geom[w]) + list(shapely.points(lon[n], lat[n]))
        rel_geom[r] = shapely.geometrycollections(parts) if parts else None

    feat_kind = np.concatenate([np.full(len(seed_rel) + len(orphan_rel), 2), np.full(len(orphan_way), 1),
                                np.zeros(len(orphan_node), np.int64)]).astype(np.int8)
    feat_row = np.concatenate([seed_rel, orphan_rel, orphan_way, orphan_node]).astype(np.int64)
    feat_geom = np.concatenate([
        rel_geom[np.concatenate([seed_rel, orphan_rel]).astype(np.int64)],
        way_geom[orphan_way],
        shapely.points(lon[orphan_node], lat[orphan_node]) if len(orphan_node) else np.empty(0, object),
    ])
    no_geom = np.array([g is None for g in feat_geom], dtype=bool)
    if no_geom.any():
        kind, row = feat_kind[no_geom][0], feat_row[no_geom][0]
        raise TileError(f"{m.source}: relation {m.rel_id[row]} has no geometry to place it in a tile")
    return feat_kind, feat_row, feat_geom


def _nodes_of_ways(m: OsmMap, way_mask: np.ndarray) -> np.ndarray:
    nodes = np.zeros(m.n_nodes, bool)
    if way_mask.any():
        nodes[m.way_nodes[way_mask[m.way_of_position()]]] = True
    return nodes


def closure(m: OsmMap, rel_rows, way_rows, node_rows):
    """Everything the given elements reference, transitively: boolean masks (relations, ways, nodes)."""
    rel = np.zeros(m.n_relations, bool)
    rel[np.asarray(rel_rows, np.int64)] = True
    owner = m.relation_of_member()
    kinds, rows = m.rel_member_kind, m.rel_member_row
    is_rel_member = kinds == 2
    frontier = rel.copy()
    while frontier.any():
        sel = is_rel_member & frontier[owner]
        new = np.zeros(m.n_relations, bool)
        new[rows[sel]] = True
        frontier = new & ~rel
        rel |= new
    way = np.zeros(m.n_ways, bool)
    way[np.asarray(way_rows, np.int64)] = True
    in_rel = rel[owner]
    way[rows[in_rel & (kinds == 1)]] = True
    node = _nodes_of_ways(m, way)
    node[np.asarray(node_rows, np.int64)] = True
    node[rows[in_rel & (kinds == 0)]] = True
    return rel, way, node


def assign_tiles(geoms: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
    """(feature index, tile id) pairs for every tile each lon/lat geometry touches."""
    bounds = shapely.bounds(geoms)  # (n, 4)
    x0, y0 = grid.lonlat_to_nds(bounds[:, 0], bounds[:, 1])
    x1, y1 = grid.lonlat_to_nds(bounds[:, 2], bounds[:, 3])
    size = 2 ** (31 - level)
    cx0, cx1, cy0, cy1 = x0 // size, x1 // size, y0 // size, y1 // size
    nx, ny = cx1 - cx0 + 1, cy1 - cy0 + 1
    count = nx * ny
    feat = np.repeat(np.arange(len(geoms)), count)
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    cx = np.repeat(cx0, count) + k % np.repeat(nx, count)
    cy = np.repeat(cy0, count) + k // np.repeat(nx, count)
    tiles = grid.nds_to_tile(cx * size, cy * size, level)
    tiles = np.atleast_1d(tiles)
    multi = np.repeat(count > 1, count)
    keep = np.ones(len(feat), bool)
    if multi.any():
        b = grid.tile_bboxes(tiles[multi])
        boxes = shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])
        keep[multi] = shapely.intersects(geoms[feat[multi]], boxes)
    return feat[keep], tiles[keep]


def cut(m: OsmMap, level: int = grid.DEFAULT_LEVEL, origin: tuple[float, float] | None = None,
        progress=None) -> list[Tile]:
    """Cut a map into gzip'd Lanelet2 OSM tiles at an NDS level, sorted by tile id."""
    level = int(level)
    if not 0 <= level <= grid.MAX_LEVEL:
        raise TileError(f"tile level {level} is outside 0-15")
    if m.n_nodes == 0:
        raise TileError(f"{m.source}: the map has no points")
    lon, lat = m.lonlat(origin)
    if np.any(np.abs(lat) > 90) or np.any(np.abs(lon) > 180):
        raise TileError(f"{m.source}: positions outside WGS-84 ranges (check --origin)")
    feat_kind, feat_row, feat_geom = _features(m, lon, lat)
    # Elements with no position at all (an empty line string left by an editor) go to every tile,
    # so that the union of the tiles is still the whole source.
    placeless = shapely.is_empty(feat_geom)
    feat, tile_of_pair = assign_tiles(feat_geom[~placeless], level)
    feat = np.flatnonzero(~placeless)[feat]
    if placeless.any():
        every = np.unique(tile_of_pair)
        lost = np.flatnonzero(placeless)
        feat = np.concatenate([feat, np.repeat(lost, len(every))])
        tile_of_pair = np.concatenate([tile_of_pair, np.tile(every, len(lost))])
    order = np.argsort(tile_of_pair, kind="stable")
    feat, tile_of_pair = feat[order], tile_of_pair[order]
    tile_ids, starts = np.unique(tile_of_pair, return_index=True)
    ends = np.append(starts[1:], len(feat))
    rel_types = m.relation_types()

    def build(i: int) -> Tile:
        f = feat[starts[i]:ends[i]]
        kinds, rows = feat_kind[f], feat_row[f]
        rel, way, node = closure(m, rows[kinds == 2], rows[kinds == 1], rows[kinds == 0])
        raw = m.xml_bytes(nodes=node, ways=way, relations=rel)
        data = gzip_bytes(raw)
        types = rel_types[rel]
        counts = {
            "points": int(node.sum()),
            "line_strings": int(way.sum()),
            "lanelets": int((types == "lanelet").sum()),
            "areas": int((types == "multipolygon").sum()),
            "regulatory_elements": int((types == "regulatory_element").sum()),
            "relations": int(rel.sum()),
        }
        tid = int(tile_ids[i])
        return Tile(tid, level, data, hashlib.sha256(data).hexdigest(), grid.tile_bbox(tid), counts)

    # zlib releases the GIL: two threads use both cores of a small machine.
    with ThreadPoolExecutor(max_workers=2) as pool:
        tiles = []
        for t in pool.map(build, range(len(tile_ids))):
            tiles.append(t)
            if progress is not None:
                progress(1)
    return tiles
