"""The NDS.Live tile grid: packed tile IDs (Morton number + 2^(16+level)), levels 0-15.

NDS coordinates are 32-bit integers, 1 unit = 360 / 2^32 degrees on both axes. A level-L tile is
2^(31-L) units on a side; the grid has 2^(L+1) columns (x, from -180) and 2^L rows (y, from -90).
The Morton number interleaves the column and row indices, x in the even bits, y in the odd bits, with the
top x bit at bit 2L. Level-15 IDs do not fit a signed int32 and are negative in the NDS.Live API.
This follows ndsev/ndslive-math (packedtileid.cpp); no maintained Python package of it is published on
PyPI, so the few lines of bit math live here, vectorised over numpy arrays.
"""
from __future__ import annotations

import numpy as np

from tiles.errors import TileError

MAX_LEVEL = 15
DEFAULT_LEVEL = 13
UNIT_DEG = 360.0 / 2**32


def _check_level(level: int) -> int:
    level = int(level)
    if not 0 <= level <= MAX_LEVEL:
        raise TileError(f"tile level {level} is outside 0-15")
    return level


def tile_size_deg(level: int) -> float:
    return 360.0 / 2 ** (_check_level(level) + 1)


# -- NDS coordinates --------------------------------------------------------------------------------
def lonlat_to_nds(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """WGS-84 degrees to NDS integer coordinates (floor, so a point on a tile edge is in the tile east/north)."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    if np.any(np.abs(lat) > 90) or np.any(np.abs(lon) > 180) or np.any(~np.isfinite(lon) | ~np.isfinite(lat)):
        raise TileError("coordinates outside WGS-84 ranges")
    x = np.floor(lon / UNIT_DEG).astype(np.int64)
    y = np.floor(lat / UNIT_DEG).astype(np.int64)
    x = np.where(x >= 2**31, x - 2**32, x)  # lon = +180 wraps to -180
    y = np.minimum(y, 2**30 - 1)  # lat = +90 stays in the top row
    return x, y


def _grid_xy(x, y, level: int) -> tuple[np.ndarray, np.ndarray]:
    shift = 31 - level
    gx = (np.asarray(x, np.int64) % 2**32) >> shift
    gy = (np.asarray(y, np.int64) % 2**31) >> shift
    return gx, gy


# -- Morton interleave (vectorised bit spreading) -----------------------------------------------------
def _spread(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64) & np.uint64(0xFFFFFFFF)
    for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F),
                        (2, 0x3333333333333333), (1, 0x5555555555555555)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def _compact(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64) & np.uint64(0x5555555555555555)
    for shift, mask in ((1, 0x3333333333333333), (2, 0x0F0F0F0F0F0F0F0F), (4, 0x00FF00FF00FF00FF),
                        (8, 0x0000FFFF0000FFFF), (16, 0x00000000FFFFFFFF)):
        v = (v | (v >> np.uint64(shift))) & np.uint64(mask)
    return v


def grid_to_tile(gx, gy, level: int) -> np.ndarray:
    """Packed tile IDs (int64; level 15 negative as in NDS.Live) from grid column/row indices."""
    level = _check_level(level)
    gx = np.asarray(gx, np.int64) % 2 ** (level + 1)
    gy = np.asarray(gy, np.int64) % 2**level if level else np.zeros_like(np.asarray(gy, np.int64))
    morton = _spread(gx) | (_spread(gy) << np.uint64(1))
    packed = (morton + np.uint64(1 << (16 + level))).astype(np.int64)
    return np.where(packed >= 2**31, packed - 2**32, packed)


def tile_level(tile) -> np.ndarray:
    t = np.asarray(tile, np.int64) % 2**32
    if np.any(t < 2**16):
        raise TileError("not a packed tile id (below 2^16)")
    # exact: t >> 16 < 2^16, so log2 of it is exact at powers of two
    return np.floor(np.log2(t >> 16)).astype(np.int64)


def tile_grid(tile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(level, column, row) of packed tile IDs; raises TileError for ids that are not valid tiles."""
    t = np.asarray(tile, np.int64)
    if np.any((t < -(2**31)) | (t >= 2**31)):
        raise TileError("tile id outside int32")
    level = tile_level(t)
    u = (t % 2**32).astype(np.uint64)
    morton = u - (np.uint64(1) << (np.uint64(16) + level.astype(np.uint64)))
    if np.any(morton >= (np.uint64(1) << (np.uint64(2) * level.astype(np.uint64) + np.uint64(1)))):
        raise TileError("not a valid packed tile id")
    gx = _compact(morton).astype(np.int64)
    gy = _compact(morton >> np.uint64(1)).astype(np.int64)
    return level, gx, gy


def is_valid_tile(tile: int) -> bool:
    try:
        tile_grid(np.int64(tile))
        return True
    except (TileError, OverflowError, ValueError):
        return False


# -- public operations --------------------------------------------------------------------------------
def point_to_tile(lon, lat, level: int = DEFAULT_LEVEL):
    """Tile(s) containing WGS-84 point(s)."""
    level = _check_level(level)
    x, y = lonlat_to_nds(lon, lat)
    gx, gy = _grid_xy(x, y, level)
    out = grid_to_tile(gx, gy, level)
    return int(out) if out.ndim == 0 else out


def nds_to_tile(x, y, level: int):
    level = _check_level(level)
    gx, gy = _grid_xy(x, y, level)
    out = grid_to_tile(gx, gy, level)
    return int(out) if out.ndim == 0 else out


def tile_bbox(tile) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees of one tile."""
    return tuple(float(v) for v in tile_bboxes(np.int64(tile)))


def tile_bboxes(tiles) -> np.ndarray:
    """Vectorised :func:`tile_bbox`: an (n, 4) array of west, south, east, north."""
    level, gx, gy = tile_grid(np.asarray(tiles, np.int64))
    size = 360.0 / 2.0 ** (level + 1)
    col = np.where(gx >= 2**level, gx - 2 ** (level + 1), gx)
    row = np.where((level > 0) & (gy >= 2 ** np.maximum(level - 1, 0)), gy - 2**level, gy)
    west, south = col * size, row * size
    north = south + size
    # Level 0: two tiles, each a whole hemisphere east or west of Greenwich, pole to pole.
    south, north = np.where(level == 0, -90.0, south), np.where(level == 0, 90.0, north)
    return np.stack([west, south, west + size, north], axis=-1)


def parent(tile: int) -> int:
    level, gx, gy = (int(v) for v in tile_grid(np.int64(tile)))
    if level == 0:
        raise TileError("level-0 tiles have no parent")
    return int(grid_to_tile(gx >> 1, gy >> 1, level - 1))


def children(tile: int) -> list[int]:
    level, gx, gy = (int(v) for v in tile_grid(np.int64(tile)))
    if level == MAX_LEVEL:
        raise TileError("level-15 tiles have no children")
    cx = np.array([2 * gx, 2 * gx + 1, 2 * gx, 2 * gx + 1])
    cy = np.array([2 * gy, 2 * gy, 2 * gy + 1, 2 * gy + 1])
    if level == 0:  # level 0 has one row; level 1 has two
        cy = np.array([0, 0, 1, 1])
    return [int(t) for t in grid_to_tile(cx, cy, level + 1)]


def neighbours(tile: int) -> dict[str, int]:
    """The eight surrounding tiles (wrapping at the antimeridian and the poles, as NDS.Live does)."""
    level, gx, gy = (int(v) for v in tile_grid(np.int64(tile)))
    out = {}
    for name, dx, dy in (("n", 0, 1), ("ne", 1, 1), ("e", 1, 0), ("se", 1, -1), ("s", 0, -1),
                         ("sw", -1, -1), ("w", -1, 0), ("nw", -1, 1)):
        out[name] = int(grid_to_tile(gx + dx, gy + dy, level))
    return out


def tiles_for_nds_bbox(sw_x: int, sw_y: int, ne_x: int, ne_y: int, level: int) -> list[int]:
    """All tiles touching an NDS bounding box, row by row from the south-west (ndslive-math's order)."""
    level = _check_level(level)
    size = 2 ** (31 - level)
    xs = np.arange(sw_x // size, ne_x // size + 1, dtype=np.int64) * size
    ys = np.arange(sw_y // size, ne_y // size + 1, dtype=np.int64) * size
    gx_x, gy_y = np.meshgrid(xs, ys)
    return [int(t) for t in np.ravel(nds_to_tile(gx_x.ravel(), gy_y.ravel(), level))]


def tiles_for_bbox(west: float, south: float, east: float, north: float, level: int = DEFAULT_LEVEL) -> list[int]:
    """All tiles touching a WGS-84 bounding box."""
    if west > east or south > north:
        raise TileError("bbox must be west,south,east,north with west <= east and south <= north")
    (x0, x1), (y0, y1) = lonlat_to_nds([west, east], [south, north])
    return tiles_for_nds_bbox(int(x0), int(y0), int(x1), int(y1), level)


def lon_ranges(west: float, east: float) -> list[tuple[float, float]]:
    """A box's longitude span as ranges within -180..180: west > east means the box crosses the antimeridian
    (as in GeoJSON, RFC 7946 section 5.2), split into [west, 180] and [-180, east]."""
    return [(west, east)] if west <= east else [(west, 180.0), (-180.0, east)]


def geodesic_circle(lon: float, lat: float, radius_m: float, points: int = 72):
    """The area within ``radius_m`` metres (WGS-84 geodesic, pyproj) of a point, as a shapely (multi)polygon in
    lon/lat degrees within -180..180: split at the antimeridian, and a polar cap when it holds a pole."""
    import shapely
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    az = np.linspace(0.0, 360.0, points, endpoint=False)
    plon, plat, _ = geod.fwd(np.full(points, lon), np.full(points, lat), az, np.full(points, radius_m))
    for pole in (90.0, -90.0):
        if geod.inv(lon, lat, lon, pole)[2] <= radius_m:  # every longitude, from the ring's far edge to the pole
            edge = float(plat.min() if pole > 0 else plat.max())
            return shapely.box(-180.0, min(edge, pole), 180.0, max(edge, pole))
    # pyproj wraps longitudes into -180..180; unwrapped around the centre the ring stays one simple polygon,
    # and its copies shifted by one turn bring back the parts beyond +-180
    plon = lon + (plon - lon + 180.0) % 360.0 - 180.0
    ring = shapely.Polygon(np.column_stack([plon, plat]))
    world = shapely.box(-180.0, -90.0, 180.0, 90.0)
    parts = [shapely.intersection(shapely.transform(ring, lambda xy, dx=dx: xy + (dx, 0.0)), world)
             for dx in (-360.0, 0.0, 360.0)]
    return shapely.union_all([p for p in parts if not p.is_empty])


def tiles_for_geometry(geom, level: int = DEFAULT_LEVEL) -> list[int]:
    """Tiles a shapely geometry (lon/lat) touches: bbox candidates, then an exact intersects test."""
    import shapely

    west, south, east, north = geom.bounds
    cand = np.array(tiles_for_bbox(west, south, east, north, level), dtype=np.int64)
    if len(cand) <= 1:
        return cand.tolist()
    b = tile_bboxes(cand)
    boxes = shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])
    return cand[shapely.intersects(boxes, geom)].tolist()


def tile_size_m(level: int, lat: float) -> tuple[float, float]:
    """Approximate (north-south, east-west) size in metres of a tile at a latitude (pyproj geodesic)."""
    from pyproj import Geod

    d = tile_size_deg(level)
    g = Geod(ellps="WGS84")
    _, _, ns = g.inv(0.0, lat - d / 2, 0.0, lat + d / 2)
    _, _, ew = g.inv(0.0, lat, d, lat)
    return ns, ew
