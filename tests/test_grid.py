"""NDS.Live tile grid: published unit vectors (ndsev/ndslive-math tests) and properties."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiles import grid
from tiles.errors import TileError

LEVEL13_LEN = 1 << (32 - 14)  # LEVEL13_TILE_LEN_NDS_UNITS in ndslive-math's tests


@pytest.mark.parametrize("x,y,number", [
    (LEVEL13_LEN // 2, LEVEL13_LEN // 2, 0),
    (3 * LEVEL13_LEN // 2, LEVEL13_LEN // 2, 1),
    (LEVEL13_LEN // 2, 3 * LEVEL13_LEN // 2, 2),
    (3 * LEVEL13_LEN // 2, 3 * LEVEL13_LEN // 2, 3),
])
def test_ndslive_tile_numbers(x, y, number):
    assert grid.nds_to_tile(x, y, 13) - (1 << 29) == number


def test_ndslive_bbox_ground_truth():
    got = grid.tiles_for_nds_bbox(-209157330, 174937580, -208540811, 175239411, 13)
    assert sorted(got) == sorted([626579086, 626579087, 626579098, 626579120, 626579109, 626579108])
    assert grid.tiles_for_nds_bbox(132644864, 572522496, 132907007, 572784639, 13) == [545379780]
    assert len(grid.tiles_for_nds_bbox(0, 0, (1 << 18) + 1, (1 << 18) + 1, 13)) == 4


def test_ndslive_levels_and_level15_negative():
    for level in range(1, 16):
        assert int(grid.tile_level(np.int64((1 << (level + 16)) % 2**32 - (2**32 if level == 15 else 0)))) == level
    assert grid.point_to_tile(116.5, 39.79, 15) < 0  # level-15 ids are negative int32


def test_ndslive_longitude_edge_neighbours():
    off = LEVEL13_LEN >> 1
    east_edge = grid.nds_to_tile((1 << 31) - off, off, 13)
    west_edge = grid.nds_to_tile(-(1 << 31) + off, off, 13)
    assert grid.neighbours(east_edge)["e"] == west_edge
    assert grid.neighbours(west_edge)["w"] == east_edge


def test_tile_size_at_yizhuang_matches_reference():
    ns, ew = grid.tile_size_m(13, 39.79)
    assert abs(ns - 2440) < 5 and abs(ew - 1880) < 5  # hdmap-tiling.md: 2.44 km x 1.88 km


lons = st.floats(-180, 179.999999, allow_nan=False)
lats = st.floats(-89.999999, 89.999999, allow_nan=False)
levels = st.integers(0, 15)


@settings(max_examples=300, deadline=None)
@given(lons, lats, levels)
def test_point_lies_in_its_tile(lon, lat, level):
    t = grid.point_to_tile(lon, lat, level)
    w, s, e, n = grid.tile_bbox(t)
    assert w <= lon < e + 1e-12 and s <= lat < n + 1e-12
    assert grid.is_valid_tile(t)
    assert int(grid.tile_level(np.int64(t))) == level


@settings(max_examples=200, deadline=None)
@given(lons, lats, st.integers(1, 15))
def test_parent_contains_child(lon, lat, level):
    t = grid.point_to_tile(lon, lat, level)
    p = grid.parent(t)
    assert p == grid.point_to_tile(lon, lat, level - 1)
    assert t in grid.children(p)
    pw, ps, pe, pn = grid.tile_bbox(p)
    w, s, e, n = grid.tile_bbox(t)
    assert pw <= w and ps <= s and e <= pe and n <= pn


@settings(max_examples=200, deadline=None)
@given(lons, st.floats(-85, 85), st.integers(2, 15))
def test_neighbours_are_adjacent_and_symmetric(lon, lat, level):
    t = grid.point_to_tile(lon, lat, level)
    nb = grid.neighbours(t)
    opposite = {"n": "s", "e": "w", "s": "n", "w": "e", "ne": "sw", "sw": "ne", "nw": "se", "se": "nw"}
    for k, v in nb.items():
        assert grid.neighbours(v)[opposite[k]] == t
    w, s, e, n = grid.tile_bbox(t)
    if e < 180:
        assert grid.tile_bbox(nb["e"])[0] == pytest.approx(e)
    if n < 90:
        assert grid.tile_bbox(nb["n"])[1] == pytest.approx(n)


@settings(max_examples=100, deadline=None)
@given(lons, lats, st.floats(0, 0.05), st.floats(0, 0.05), st.integers(10, 15))
def test_bbox_cover_is_exact(lon, lat, dlon, dlat, level):
    east, north = max(lon, min(lon + dlon, 179.9999)), max(lat, min(lat + dlat, 89.9999))
    tiles = grid.tiles_for_bbox(lon, lat, east, north, level)
    assert len(tiles) == len(set(tiles))
    corners = {grid.point_to_tile(x, y, level) for x in (lon, east) for y in (lat, north)}
    assert corners <= set(tiles)
    for t in tiles:
        w, s, e, n = grid.tile_bbox(t)
        assert w <= east and e >= lon and s <= north and n >= lat


def test_geometry_cover_uses_exact_intersection():
    from shapely import LineString
    line = LineString([(116.40, 39.70), (116.60, 39.90)])  # diagonal: bbox covers more tiles than the line
    exact = grid.tiles_for_geometry(line, 13)
    box = grid.tiles_for_bbox(*line.bounds, 13)
    assert set(exact) < set(box)
    assert grid.point_to_tile(116.5, 39.8, 13) in exact


@pytest.mark.parametrize("bad", [0, 12345, 2**31, -(2**31) - 1])
def test_invalid_tile_ids(bad):
    assert not grid.is_valid_tile(bad)


def test_bad_level_and_coordinates():
    with pytest.raises(TileError):
        grid.point_to_tile(0, 0, 16)
    with pytest.raises(TileError):
        grid.point_to_tile(0, 95, 13)
