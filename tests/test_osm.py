"""Reading real Lanelet2 maps losslessly, and refusing bad input with a clear one-line error."""
import re
import subprocess

import numpy as np
import pytest

from conftest import mapsvc_cmd
from lanelets import MapError, read_osm
from lanelets.model import load_lanelet2
from osmcanon import canonical, top_level_others


def test_round_trip_is_lossless(real_map, tmp_path):
    m = read_osm(real_map)
    out = tmp_path / "out.osm"
    m.write(out)
    src, dst = real_map.read_bytes(), out.read_bytes()
    assert canonical(dst) == canonical(src)
    assert top_level_others(dst) == top_level_others(src)  # <MetaInfo> survives
    assert re.search(rb"<osm[^>]*>", dst).group(0) == re.search(rb"<osm[^>]*>", src).group(0).replace(b"'", b'"')


def test_summary_says_what_is_kept_verbatim(real_map):
    m = read_osm(real_map)
    s = m.summary()
    file_regelems = {}
    for tags in m.rel_tags:
        if tags.get("type") == "regulatory_element":
            file_regelems[tags.get("subtype")] = file_regelems.get(tags.get("subtype"), 0) + 1
    lmap, _, errors = load_lanelet2(m)
    modelled = len(lmap.regulatoryElementLayer)
    verbatim = sum(s["kept"]["verbatim_regulatory_elements"].values())
    # Every regulatory element is either in Lanelet2's model or listed as kept verbatim.
    assert modelled + verbatim == sum(file_regelems.values())
    assert s["lanelets"] == len(lmap.laneletLayer)


def test_local_only_map_positions(tmp_path):
    from conftest import LANELET2_DIR, require_shared
    path = require_shared(LANELET2_DIR / "autoware_core_2km_test.osm")
    m = read_osm(path)
    assert m.local_only
    lon, lat = m.lonlat((35.0, 139.0))
    from lanelets.projection import lonlat_to_local
    x, y = lonlat_to_local(lon, lat, 35.0, 139.0)
    assert np.allclose(x, m.node_local_x, atol=1e-6) and np.allclose(y, m.node_local_y, atol=1e-6)
    lmap, _, errors = load_lanelet2(m)
    xs = np.array([p.x for p in lmap.pointLayer])
    assert xs.max() - xs.min() > 1900  # points are placed from local_x, not all at the origin


def test_negative_ids_and_origin_zero(tmp_path):
    from conftest import LANELET2_DIR, require_shared
    src = require_shared(LANELET2_DIR / "interaction_TestScenarioForScripts.osm").read_bytes()
    neg = re.sub(rb'\b(id|ref)="(\d+)"', lambda mm: b'%s="-%s"' % (mm.group(1), mm.group(2)), src)
    path = tmp_path / "neg.osm"
    path.write_bytes(neg)
    m = read_osm(path)
    assert (m.node_id < 0).all() and m.summary()["negative_ids"] == m.n_nodes + m.n_ways + m.n_relations
    assert canonical(m.xml_bytes()) == canonical(neg)
    lmap, _, errors = load_lanelet2(m, origin=(0.0, 0.0))
    assert len(lmap.laneletLayer) == 2 and not errors


GOOD_NODE = b'<node id="1" lat="1.0" lon="2.0"/>'
BAD_INPUTS = {
    "empty": (b"", "empty file"),
    "malformed": (b"<osm><node id='1' lat='1' lon='2'></osm>", "malformed XML"),
    "entity_bomb": (b'<?xml version="1.0"?>\n<!DOCTYPE osm [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>\n'
                    b'<osm><node id="1" lat="1" lon="2"><tag k="x" v="&b;"/></node></osm>', "DTD"),
    "dangling": (b'<osm>' + GOOD_NODE + b'<way id="2"><nd ref="1"/><nd ref="99"/></way></osm>', "dangling reference"),
    "dangling_member": (b'<osm>' + GOOD_NODE + b'<relation id="3"><member type="way" ref="7" role="left"/>'
                        b'</relation></osm>', "dangling reference"),
    "duplicate": (b"<osm>" + GOOD_NODE + GOOD_NODE + b"</osm>", "duplicate point id 1"),
    "out_of_range": (b'<osm><node id="1" lat="91" lon="2"/></osm>', "outside WGS-84"),
    "not_osm": (b"<gpx/>", "expected <osm>"),
    "bad_number": (b'<osm><node id="1" lat="north" lon="2"/></osm>', "not a number"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_map_error(case, tmp_path):
    data, message = BAD_INPUTS[case]
    path = tmp_path / f"{case}.osm"
    path.write_bytes(data)
    with pytest.raises(MapError) as err:
        read_osm(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("case", ["entity_bomb", "dangling", "out_of_range", "empty"])
@pytest.mark.parametrize("command", ["build", "tile", "publish"])
def test_cli_bad_input_exit_2_nothing_written(case, command, tmp_path, mapsvc_home):
    path = tmp_path / f"{case}.osm"
    path.write_bytes(BAD_INPUTS[case][0])
    out = tmp_path / "out"
    args = {"build": ["build", str(path), "-o", str(out)],
            "tile": ["tile", str(path), "--out", str(out)],
            "publish": ["publish", str(path), "--release", "r1"]}[command]
    proc = subprocess.run(mapsvc_cmd() + args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mapsvc: error: ") and path.name in lines[0]
    assert not out.exists()
    assert not list(tmp_path.glob(".out*"))  # no temp leftovers
    if command == "publish":
        from tiles import open_store
        assert open_store(mapsvc_home / "store").releases() == []
