"""Tiles are self-contained Lanelet2 maps whose union is exactly the source (every shared map, levels 13-15)."""
import gzip
import json
import subprocess

import lanelet2
import pytest
from lanelet2.io import Origin
from lanelet2.projection import UtmProjector
from shapely import box, linestrings

from conftest import mapsvc_cmd, origin_of
from lanelets import read_osm
from osmcanon import canonical
from tiles import cut, grid


def _load(path, origin):
    return lanelet2.io.loadRobust(str(path), UtmProjector(Origin(*origin)))


@pytest.mark.parametrize("level", [13, 14, 15])
def test_union_of_tiles_is_the_source_and_each_tile_loads(real_map, level, tmp_path):
    m = read_osm(real_map)
    origin = origin_of(real_map)
    tiles = cut(m, level)
    assert tiles and len({t.id for t in tiles}) == len(tiles)
    source = canonical(real_map.read_bytes())
    _, source_errors = _load(real_map, origin)
    strict_ok = not source_errors
    union = {}
    lon, lat = m.lonlat()
    for t in tiles:
        raw = gzip.decompress(t.data)
        elems = canonical(raw)
        for key, value in elems.items():
            assert union.setdefault(key, value) == value  # same element, same content, in every tile
        path = tmp_path / f"{t.id}.osm"
        path.write_bytes(raw)
        if strict_ok:
            lanelet2.io.load(str(path), UtmProjector(Origin(*origin)))  # raises on any error
        else:
            _, errors = _load(path, origin)
            assert set(errors) <= set(source_errors), "a tile has errors its source does not have"
        # Every lanelet touching the tile is in it, in full.
        sub = read_osm(path)
        in_tile = {("relation", str(i)) for i in sub.rel_id}
        tb = box(*t.bbox)
        for r, tags in enumerate(m.rel_tags):
            if tags.get("type") != "lanelet":
                continue
            members = slice(m.rel_ptr[r], m.rel_ptr[r + 1])
            ways = m.rel_member_row[members][m.rel_member_kind[members] == 1]
            for w in ways:
                nodes = m.way_nodes[m.way_ptr[w]:m.way_ptr[w + 1]]
                line = linestrings(list(zip(lon[nodes], lat[nodes]))) if len(nodes) >= 2 else None
                # tiles are half-open: a line only touching a tile's edge may belong to the neighbour
                if line is not None and line.intersects(tb) and not line.touches(tb):
                    assert ("relation", str(m.rel_id[r])) in in_tile
                    break
    assert union == source


def test_tiling_is_deterministic(real_map):
    m = read_osm(real_map)
    a = [(t.id, t.sha256) for t in cut(m, 14)]
    b = [(t.id, t.sha256) for t in cut(read_osm(real_map), 14)]
    assert a == b


def test_tile_command_writes_manifest_and_tiles(real_map, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(mapsvc_cmd() + ["tile", str(real_map), "--out", str(out), "--level", "14"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["level"] == 14
    import hashlib
    for entry in manifest["tiles"]:
        data = (out / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
        assert grid.is_valid_tile(entry["id"]) and int(grid.tile_level(entry["id"])) == 14
        assert tuple(entry["bbox"]) == grid.tile_bbox(entry["id"])
        (tmp_path / "t.osm").write_bytes(gzip.decompress(data))
        tile_map = read_osm(tmp_path / "t.osm")
        assert entry["counts"]["lanelets"] == int((tile_map.relation_types() == "lanelet").sum())
        assert entry["counts"]["points"] == tile_map.n_nodes
    assert len(list((out / "tiles").iterdir())) == len(manifest["tiles"])
    assert sum(e["counts"]["lanelets"] for e in manifest["tiles"]) >= int(
        (read_osm(real_map).relation_types() == "lanelet").sum())  # every lanelet is in at least one tile


def test_local_only_map_needs_origin_to_place_tiles(tmp_path):
    from conftest import LANELET2_DIR, require_shared
    path = require_shared(LANELET2_DIR / "autoware_core_2km_test.osm")
    m = read_osm(path)
    here = cut(m, 15, origin=(35.0, 139.0))
    lon0 = grid.tile_bbox(here[0].id)[0]
    assert 138.9 < lon0 < 139.1  # placed at the origin given, from local_x/local_y
    assert len(here) >= 4  # 2 km of road spans several level-15 tiles
