"""Desensitising maps: a fixture map in Beijing with every kind of forbidden content beside ordinary lanelets,
every shared Lanelet2 map moved into Beijing, the final scan, the audit and `mapsvc publish` end to end."""
from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lanelet2
from lanelet2.io import Origin
from lanelet2.projection import UtmProjector
from lxml import etree

from desensitize import DesensitizeError, Settings, desensitize, get_provider, load_rules
from desensitize.scan import require_clean, scan_tiles
from lanelets.osm import read_osm
from lanelets.projection import local_to_lonlat, lonlat_to_local
from tiles import cut

REPO = Path(__file__).resolve().parents[1]
LANELET2_DIR = REPO.parent / "shared" / "data" / "lanelet2"
BEIJING = (39.8, 116.4)
YIZHUANG = (39.795, 116.5055)


# -- the fixture map ---------------------------------------------------------------------------------------
class _Osm:
    """A tiny OSM writer: points in local metres around an origin, written as lat/lon with every node
    carrying an absolute ``ele`` and Autoware's metric copies (local_x/local_y/mgrs_code)."""

    def __init__(self, origin):
        self.origin = origin
        self.nodes, self.ways, self.rels = [], [], []
        self.next_id = 1000
        self.xy = {}

    def nid(self):
        self.next_id += 1
        return self.next_id

    def node(self, x, y, tags=None, ele=True):
        i = self.nid()
        lon, lat = local_to_lonlat(np.array([x]), np.array([y]), *self.origin)
        t = {"local_x": f"{x:.4f}", "local_y": f"{y:.4f}", "mgrs_code": "50SMJ", **(tags or {})}
        if ele:
            t["ele"] = f"{31.5 + 0.01 * x:.3f}"
        self.nodes.append((i, float(lat[0]), float(lon[0]), t))
        self.xy[i] = (x, y)
        return i

    def way(self, pts, tags):
        i = self.nid()
        self.ways.append((i, pts, tags))
        return i

    def line(self, coords, tags, ele=True):
        return self.way([self.node(x, y, ele=ele) for x, y in coords], tags)

    def rel(self, members, tags, rid=None):
        i = rid or self.nid()
        self.rels.append((i, members, tags))
        return i

    def xml(self) -> bytes:
        out = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="test">',
               '  <MetaInfo format_version="1" map_version="7"/>',
               '  <bounds minlat="39.79" minlon="116.50" maxlat="39.80" maxlon="116.51"/>']
        esc = lambda s: s.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
        tagx = lambda t: "".join(f'<tag k="{esc(k)}" v="{esc(v)}"/>' for k, v in t.items())
        for i, lat, lon, t in self.nodes:
            out.append(f'  <node id="{i}" lat="{lat!r}" lon="{lon!r}">{tagx(t)}</node>')
        for i, pts, t in self.ways:
            out.append(f'  <way id="{i}">' + "".join(f'<nd ref="{p}"/>' for p in pts) + tagx(t) + "</way>")
        for i, members, t in self.rels:
            out.append(f'  <relation id="{i}">' + "".join(
                f'<member type="{k}" ref="{r}" role="{role}"/>' for k, r, role in members) + tagx(t) + "</relation>")
        out.append("</osm>")
        return "\n".join(out).encode()


def _bound(o: _Osm, x0, x1, y, kind="line_thin", subtype="solid", start=None):
    xs = np.linspace(x0, x1, 6)
    pts = ([start] if start else [o.node(xs[0], y)]) + [o.node(x, y) for x in xs[1:]]
    return o.way(pts, {"type": kind, "subtype": subtype})


LANELETS = {"L1": 1, "L2": 2, "L3": 3, "L4": 4, "L5": 5}


def build_fixture(path: Path) -> dict:
    """Lane A (L1 -> L2 -> L3 -> L5) eastbound, lane B (L4) beside L1 sharing its bound. L2 is a bridge with
    limits and a structure type, L3 a tunnel with a width, L1 has a road surface. L5 lies in the restricted
    area (x 160..240 m), with a right_of_way element (L5 has way, L4 yields) and a traffic sign of L3.
    Beside them: vegetation, a power line, a pipeline, a survey point, a military area, a yard siding."""
    o = _Osm(YIZHUANG)
    bounds_right, bounds_left = [], []
    prev_r = prev_l = None
    for k in range(4):
        x0, x1 = 50 * k, 50 * (k + 1)
        r = _bound(o, x0, x1, 0.0, start=prev_r)
        l = _bound(o, x0, x1, 3.5, subtype="dashed", start=prev_l)
        prev_r = o.ways[-2][1][-1]
        prev_l = o.ways[-1][1][-1]
        bounds_right.append(r)
        bounds_left.append(l)
    # lane B beside L1: shares L1's left bound as its right bound
    b_left = _bound(o, 0, 50, 7.0)
    light = o.line([(50, -1), (50, -0.5)], {"type": "traffic_light", "subtype": "red_yellow_green", "height": "0.9"})
    stop = o.line([(49, 0), (49, 3.5)], {"type": "stop_line"})
    tl = o.rel([("way", light, "refers"), ("way", stop, "ref_line")],
               {"type": "regulatory_element", "subtype": "traffic_light"})
    sign_in = o.line([(170, -2), (170, -1.5)], {"type": "traffic_sign", "subtype": "de206"})
    ts_in = o.rel([("way", sign_in, "refers")], {"type": "regulatory_element", "subtype": "traffic_sign"})
    sign_limit = o.line([(60, -2), (60, -1.5)], {"type": "traffic_sign", "subtype": "de265"})
    ts_limit = o.rel([("way", sign_limit, "refers")], {"type": "regulatory_element", "subtype": "traffic_sign"})
    row = o.rel([("relation", 5, "right_of_way"), ("relation", 4, "yield")],
                {"type": "regulatory_element", "subtype": "right_of_way"})
    base = {"type": "lanelet", "subtype": "road", "location": "urban", "one_way": "yes", "speed_limit": "60"}
    o.rel([("way", bounds_left[0], "left"), ("way", bounds_right[0], "right"), ("relation", tl, "regulatory_element")],
          {**base, "road_surface": "asphalt", "name": "Jinghai Road"}, rid=1)
    o.rel([("way", bounds_left[1], "left"), ("way", bounds_right[1], "right"), ("relation", ts_limit, "regulatory_element")],
          {**base, "bridge": "yes", "maxheight": "4.5", "maxweight": "20", "bridge:structure": "arch",
           "surface": "concrete"}, rid=2)
    o.rel([("way", bounds_left[2], "left"), ("way", bounds_right[2], "right"), ("relation", ts_in, "regulatory_element")],
          {**base, "tunnel": "yes", "maxwidth": "3.2", "width": "3.5"}, rid=3)
    o.rel([("way", b_left, "left"), ("way", bounds_left[0], "right"), ("relation", row, "regulatory_element")],
          {**base}, rid=4)
    o.rel([("way", bounds_left[3], "left"), ("way", bounds_right[3], "right"), ("relation", row, "regulatory_element")],
          {**base}, rid=5)
    veg = o.line([(0, 20), (30, 20), (30, 40), (0, 40)], {"type": "line_thin", "subtype": "solid"})
    o.ways[-1][1].append(o.ways[-1][1][0])
    o.rel([("way", veg, "outer")], {"type": "multipolygon", "subtype": "vegetation"})
    o.line([(0, 50), (200, 50)], {"power": "line", "voltage": "110000", "cables": "3"})
    o.line([(0, 60), (200, 60)], {"man_made": "pipeline", "substance": "gas"})
    o.node(20, -20, {"man_made": "survey_point", "name": "GPS control point 17"})
    mil = o.line([(0, 80), (40, 80), (40, 100), (0, 100)], {"type": "line_thin", "subtype": "solid"})
    o.ways[-1][1].append(o.ways[-1][1][0])
    o.rel([("way", mil, "outer")], {"type": "multipolygon", "landuse": "military", "name": "某部队营区"})
    o.line([(0, -40), (100, -40)], {"type": "rail", "railway": "siding"})
    path.write_bytes(o.xml())
    return {"origin": YIZHUANG}


def restricted_gpkg(path: Path) -> Path:
    """The restricted polygon x 160..240 m, y -20..30 m, written in UTM 50N (GDAL reprojects it)."""
    from osgeo import ogr, osr

    ogr.UseExceptions()
    lon, lat = local_to_lonlat(np.array([160, 240, 240, 160]), np.array([-20, -20, 30, 30]), *YIZHUANG)
    from lanelets.projection import lonlat_to_utm

    e, n = lonlat_to_utm(lon, lat, 32650)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32650)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("zones", srs, ogr.wkbPolygon)
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in list(zip(e, n)) + [(e[0], n[0])]:
        ring.AddPoint_2D(float(x), float(y))
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    f = ogr.Feature(layer.GetLayerDefn())
    f.SetGeometry(poly)
    layer.CreateFeature(f)
    ds = None
    return path


def _routing_successors(path_or_bytes, origin=BEIJING, local_only=False) -> dict[int, set[int]]:
    from lanelets.model import load_lanelet2

    lmap, _, _ = load_lanelet2(path_or_bytes, origin)
    rules = lanelet2.traffic_rules.create(lanelet2.traffic_rules.Locations.Germany,
                                          lanelet2.traffic_rules.Participants.Vehicle)
    graph = lanelet2.routing.RoutingGraph(lmap, rules)
    return {ll.id: {f.id for f in graph.following(ll, False)} for ll in lmap.laneletLayer}


def _tags_everywhere(xml: bytes):
    root = etree.fromstring(xml)
    for el in root:
        for t in el.iterfind("tag"):
            yield el.tag, el.get("id"), t.get("k"), t.get("v")


@pytest.fixture(scope="module")
def fixture_map(tmp_path_factory):
    d = tmp_path_factory.mktemp("fixture")
    build_fixture(d / "fixture.osm")
    restricted_gpkg(d / "zones.gpkg")
    return d


def test_fixture_map_desensitised(fixture_map):
    src = read_osm(fixture_map / "fixture.osm")
    raw_xml = (fixture_map / "fixture.osm").read_bytes()
    provider = get_provider("gcj02")
    res = desensitize(src, restricted=fixture_map / "zones.gpkg")
    out = res.map
    tags = list(_tags_everywhere(res.xml))
    keys = {k for _, _, k, _ in tags}
    values = {(k, v) for _, _, k, v in tags}
    # forbidden content is gone
    for k in ("ele", "local_x", "local_y", "mgrs_code", "road_surface", "surface", "maxheight", "maxweight",
              "maxwidth", "bridge:structure", "voltage", "cables", "substance", "power", "man_made", "railway",
              "landuse", "military"):
        assert k not in keys, k
    assert ("subtype", "vegetation") not in values
    assert not any("军" in v or "部队" in v or "control point" in v for _, _, _, v in tags)
    assert b"<bounds" not in res.xml
    # ordinary lanelets survive with their IDs and everything else they carry
    types = out.relation_types()
    lanelet_ids = set(out.rel_id[types == "lanelet"].tolist())
    assert lanelet_ids == {1, 2, 3, 4}
    l1 = out.rel_tags[list(out.rel_id).index(1)]
    assert l1["name"] == "Jinghai Road" and l1["speed_limit"] == "60"
    assert out.rel_tags[list(out.rel_id).index(2)]["bridge"] == "yes"
    assert out.rel_tags[list(out.rel_id).index(3)]["width"] == "3.5"  # metric attribute kept from source
    # regulatory elements: traffic light kept; the sign in the area and the right_of_way of L5 are gone,
    # and the lanelets no longer refer to them (read_osm above validated: no dangling references)
    subtypes = sorted(t.get("subtype") for t, ty in zip(out.rel_tags, types) if ty == "regulatory_element")
    assert subtypes == ["traffic_light", "traffic_sign"]
    assert res.report["flagged_for_review"] and res.report["flagged_for_review"][0]["rule"] == "SEC-11"
    # Lanelet2 loads the result strictly (no unknown references) and the topology is the source's
    succ_in = _routing_successors(src, YIZHUANG)
    succ_out = _routing_successors(out, YIZHUANG)
    assert succ_out == {k: v & lanelet_ids for k, v in succ_in.items() if k in lanelet_ids}
    assert succ_out[1] == {2} and succ_out[2] == {3} and succ_out[3] == set()
    # lane-change neighbours too: L4 stays left of L1
    from lanelets.model import load_lanelet2

    lmap, _, _ = load_lanelet2(out, YIZHUANG)
    graph = lanelet2.routing.RoutingGraph(lmap, lanelet2.traffic_rules.create(
        lanelet2.traffic_rules.Locations.Germany, lanelet2.traffic_rules.Participants.Vehicle))
    left = graph.left(lmap.laneletLayer[1])
    assert left is not None and left.id == 4 and graph.right(lmap.laneletLayer[4]).id == 1
    with_tmp = fixture_map / "out.osm"
    with_tmp.write_bytes(res.xml)
    lanelet2.io.load(str(with_tmp), UtmProjector(Origin(*YIZHUANG)))  # strict load raises on any error
    # every surviving point is the provider's forward transform of its true position
    lon, lat = src.lonlat()
    idx = {i: j for j, i in enumerate(src.node_id.tolist())}
    rows = np.array([idx[i] for i in out.node_id.tolist()])
    f_lon, f_lat = provider.forward(lon[rows], lat[rows])
    assert np.array_equal(out.node_lon, f_lon) and np.array_equal(out.node_lat, f_lat)
    moved_m = np.hypot((out.node_lon - lon[rows]) * 85e3, (out.node_lat - lat[rows]) * 111e3)
    assert moved_m.min() > 300  # ~530 m at Yizhuang
    # the audit names rule ids and element ids, never a true coordinate or a removed value
    audit = res.audit.to_json()
    doc = json.loads(audit)
    rules_hit = {e["rule"] for e in doc["actions"]}
    assert {"SEC-01", "SEC-04", "SEC-04b", "SEC-05", "SEC-06", "SEC-07", "SEC-08", "SEC-09", "SEC-10",
            "SEC-12", "SEC-13", "SEC-14"} <= rules_hit
    assert any(e["rule"] == "SEC-04" and 5 in e["ids"] and e["element"] == "relation" for e in doc["actions"])
    raw_numbers = set(re.findall(rb'(?:lat|lon)="(-?\d+\.\d{5,})"', raw_xml)) | set(
        re.findall(rb'k="ele" v="([0-9.]+)"', raw_xml))
    assert raw_numbers and not any(n in audit for n in raw_numbers)
    assert not re.search(rb"\d+\.\d{5,}", audit)
    # the final scan of the tiles finds nothing
    tiles = cut(out, 15)
    assert scan_tiles(tiles, res.rules, expected_nodes=(out.node_id, out.node_lon, out.node_lat),
                      provider=res.provider, restricted=res.restricted) == []


def test_scan_stops_forbidden_tiles(fixture_map):
    """Tiles with a forbidden tag, a metric copy, a true coordinate, or a point in a restricted area."""
    src = read_osm(fixture_map / "fixture.osm")
    res = desensitize(src, restricted=fixture_map / "zones.gpkg")
    out = res.map
    expected = (out.node_id, out.node_lon, out.node_lat)
    clean = cut(out, 15)
    assert scan_tiles(clean, res.rules, expected_nodes=expected, provider=res.provider,
                      restricted=res.restricted) == []
    t0 = clean[0]
    raw = gzip.decompress(t0.data)

    def tampered(old: bytes, new: bytes):
        assert old in raw
        t = type(t0)(t0.id, t0.level, gzip.compress(raw.replace(old, new, 1)), "", t0.bbox, t0.counts)
        return scan_tiles([t] + clean[1:], res.rules, expected_nodes=expected, provider=res.provider,
                          restricted=res.restricted)

    first_tag = raw[raw.index(b"<tag "):raw.index(b"/>", raw.index(b"<tag ")) + 2]
    assert any("SEC-09" in f for f in tampered(first_tag, first_tag + b'<tag k="road_surface" v="asphalt"/>'))
    assert any("SEC-16" in f for f in tampered(first_tag, first_tag + b'<tag k="note" v="next to the army depot"/>'))
    n0 = raw.index(b"<node ")
    node = raw[n0:raw.index(b">", n0) + 1]
    assert node.endswith(b"/>")  # tags all removed: a bare point
    assert any("metric copy" in f for f in tampered(node, node[:-2] + b'><tag k="local_x" v="1.0"/></node>'))
    # a point put back at its true position
    nid = int(re.search(rb'id="(-?\d+)"', node).group(1))
    i = list(src.node_id).index(nid)
    lat_attr = re.search(rb'lat="[^"]*"', node).group(0)
    findings = tampered(node, node.replace(lat_attr, f'lat="{float(src.node_lat[i])!r}"'.encode()))
    assert any("differ from their offset position" in f for f in findings)
    with pytest.raises(DesensitizeError, match="final scan"):
        require_clean([type(t0)(t0.id, t0.level, gzip.compress(raw.replace(first_tag, first_tag +
                       b'<tag k="ele" v="35.2"/>', 1)), "", t0.bbox, t0.counts)], res.rules)


def test_free_text_on_a_surviving_feature_blocks(fixture_map, tmp_path):
    xml = (fixture_map / "fixture.osm").read_bytes().replace(
        b'k="name" v="Jinghai Road"', b'k="note" v="lane beside the military depot"')
    p = tmp_path / "blocked.osm"
    p.write_bytes(xml)
    with pytest.raises(DesensitizeError, match=r"SEC-16.*relation 1"):
        desensitize(read_osm(p), restricted=fixture_map / "zones.gpkg")
    xml = (fixture_map / "fixture.osm").read_bytes().replace(
        b'k="name" v="Jinghai Road"', b'k="description" v="gate at 39.79612, 116.51234"')
    p.write_bytes(xml)
    with pytest.raises(DesensitizeError, match="SEC-16b"):
        desensitize(read_osm(p))


def test_production_profile_refuses_public_formula(fixture_map):
    with pytest.raises(DesensitizeError, match="not certified"):
        desensitize(read_osm(fixture_map / "fixture.osm"), settings=Settings(profile="production"))


def test_rules_are_data(tmp_path, fixture_map):
    """A new rule is a YAML entry; a broken rules file is a one-line error naming the file and the rule."""
    base = (REPO / "desensitize" / "rules" / "default.yaml").read_text()
    extra = base + """
  - id: LOCAL-01
    source: {doc: "local pilot rule", clause: "1"}
    target: {on: [lanelet]}
    check: {op: tag_present, keys: [speed_limit]}
    action: {op: delete_tag}
    severity: C
"""
    p = tmp_path / "rules.yaml"
    p.write_text(extra)
    res = desensitize(read_osm(fixture_map / "fixture.osm"), rules=load_rules(p))
    assert not any(k == "speed_limit" for _, _, k, _ in _tags_everywhere(res.xml))
    assert res.audit.count("LOCAL-01", "delete_tag") == 5  # all 5 lanelets (no restricted areas here)
    for broken, msg in [
        (base.replace("op: delete_tag}", "op: shred}", 1), "unknown action op 'shred'"),
        (base.replace("severity: A", "severity: Z", 1), "severity must be one of"),
        (base.replace("  - id: SEC-09", "  - id: SEC-06", 1), "duplicate id"),
        (base.replace("check: {op: tag_present, keys: [road_surface", "check: {op: tag_present, kes: [road_surface"),
         "needs keys"),
        (base.replace('patterns: ["(?i)\\\\bmilitary', 'patterns: ["(?i)(\\\\bmilitary', 1), "bad pattern"),
        ("rules: [", "not valid YAML"),
    ]:
        p.write_text(broken)
        with pytest.raises(DesensitizeError) as exc:
            load_rules(p)
        assert msg in str(exc.value) and str(p) in str(exc.value) and "\n" not in str(exc.value)


# -- every shared map, moved into Beijing --------------------------------------------------------------------
SHARED = sorted(LANELET2_DIR.glob("*.osm")) if LANELET2_DIR.is_dir() else []


def _with_positions(m, lon, lat, dst: Path) -> None:
    xml = [m.root_open.decode()]
    for i, raw in enumerate(m.node_xml):
        el = etree.fromstring(raw)
        el.set("lat", repr(float(lat[i])))
        el.set("lon", repr(float(lon[i])))
        xml.append(etree.tostring(el).decode())
    xml += [x.decode() for x in m.way_xml] + [x.decode() for x in m.rel_xml] + ["</osm>"]
    dst.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + "\n".join(xml))


def move_to_beijing(src: Path, dst: Path, baseline: Path) -> tuple[float, float] | None:
    """Rigidly move a georeferenced map so its first point lands at 39.8N 116.4E (local metres kept).
    A local-only map is copied unchanged and placed by the Beijing origin; ``baseline`` then gets the same
    map with lat/lon written out, for Lanelet2 (its loader puts every local-only point at the origin)."""
    m = read_osm(src)
    if m.local_only:
        dst.write_bytes(src.read_bytes())
        _with_positions(m, *m.lonlat(BEIJING), baseline)
        return BEIJING
    lon, lat = m.lonlat()
    ok = np.flatnonzero(~np.isnan(lat))[0]
    x, y = lonlat_to_local(lon, lat, lat[ok], lon[ok])
    nlon, nlat = local_to_lonlat(x, y, *BEIJING)
    _with_positions(m, nlon, nlat, dst)
    baseline.write_bytes(dst.read_bytes())
    return None


@pytest.mark.shared_data
@pytest.mark.parametrize("src", SHARED, ids=lambda p: p.stem)
def test_shared_maps_moved_into_beijing(src, tmp_path):
    if not src.exists():
        pytest.skip("../shared/data/lanelet2 absent: shared Lanelet2 maps")
    moved = tmp_path / "moved.osm"
    origin = move_to_beijing(src, moved, tmp_path / "baseline.osm")
    m = read_osm(moved)
    provider = get_provider("gcj02")
    res = desensitize(m, origin=origin)
    out = res.map
    # nothing forbidden remains (scan of the tiles, and directly in the map)
    tiles = cut(out, 14)
    require_clean(tiles, res.rules, expected_nodes=(out.node_id, out.node_lon, out.node_lat), provider=provider)
    keys = {k for _, _, k, _ in _tags_everywhere(res.xml)}
    assert not keys & {"ele", "local_x", "local_y", "mgrs_code", "road_surface"}
    assert ("subtype", "vegetation") not in {(k, v) for _, _, k, v in _tags_everywhere(res.xml)}
    # every lanelet survives with its ID, and routing successors are unchanged
    ids_in = set(m.rel_id[m.relation_types() == "lanelet"].tolist())
    ids_out = set(out.rel_id[out.relation_types() == "lanelet"].tolist())
    assert ids_out == ids_in
    assert _routing_successors(out) == _routing_successors(read_osm(tmp_path / "baseline.osm"))
    # every point is the forward transform of its (moved) original position
    lon, lat = m.lonlat(origin)
    idx = {i: j for j, i in enumerate(m.node_id.tolist())}
    rows = np.array([idx[i] for i in out.node_id.tolist()])
    f_lon, f_lat = provider.forward(lon[rows], lat[rows])
    assert np.array_equal(out.node_lon, f_lon) and np.array_equal(out.node_lat, f_lat)
    assert res.report["offset"]["points_outside_region"] == 0


# -- mapsvc publish, end to end ------------------------------------------------------------------------
def _mapsvc(home: Path, *args):
    env = {**os.environ, "MAPSVC_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "mapsvc", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120, cwd=REPO)


def test_publish_cli_end_to_end(fixture_map, tmp_path):
    home = tmp_path / "home"
    src = fixture_map / "fixture.osm"
    r = _mapsvc(home, "publish", src, "--release", "r1", "--level", "15",
                "--restricted-areas", fixture_map / "zones.gpkg")
    assert r.returncode == 0, r.stderr
    assert "certified: no" in r.stdout and "PILOT TEST" in r.stdout
    from tiles import StoreError, open_store

    store = open_store(home / "store")
    man = store.manifest("r1")
    d = man["desensitisation"]
    assert d["profile"] == "pilot-test" and d["offset"]["name"] == "gcj02" and d["certified"] is False
    assert "not a state-certified" in d["notice"] and man["origin"] is None
    with pytest.raises(StoreError):
        store.attachment("r1", "audit.json")  # restricted: never served
    audit = json.loads(store.attachment("r1", "audit.json", restricted_ok=True))
    assert {"SEC-01", "SEC-04", "SEC-06"} <= {e["rule"] for e in audit["actions"]}
    # nothing raw in the store: no raw coordinate, no ele, no restricted lanelet
    raw_xml = src.read_bytes()
    raw_coords = set(re.findall(rb'(?:lat|lon)="(-?\d+\.\d{5,})"', raw_xml))
    blobs = [gzip.decompress(store.blob(t["sha256"])) for t in man["tiles"]]
    everything = b"".join(blobs) + json.dumps(man).encode()
    assert not any(c in everything for c in raw_coords)
    assert b'k="ele"' not in everything and b'<relation id="5"' not in everything
    # production refuses the public formula, and nothing is written
    r = _mapsvc(home, "publish", src, "--release", "r2", "--profile", "production")
    assert r.returncode == 2 and "not certified" in r.stderr and r.stderr.count("\n") == 1
    assert [x.name for x in store.releases()] == ["r1"]
    # a bad restricted-areas file is a one-line error
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    r = _mapsvc(home, "publish", src, "--release", "r3", "--restricted-areas", bad)
    assert r.returncode == 2 and "bad.geojson" in r.stderr


def test_relativise_and_round_elevation(tmp_path, fixture_map):
    """The alternative SEC-06 policy: absolute ele -> height above the map's lowest point, on a 0.5 m step."""
    base = (REPO / "desensitize" / "rules" / "default.yaml").read_text()
    sec06 = "    check: {op: tag_present, keys: [ele, \"ele:wgs84\", \"ele:local\", height_above_sea, altitude]}\n    action: {op: delete_tag}"
    assert sec06 in base
    p = tmp_path / "rules.yaml"
    p.write_text(base.replace(sec06, sec06.replace("{op: delete_tag}", "{op: relativise_round, step_m: 0.5}")))
    src = read_osm(fixture_map / "fixture.osm")
    res = desensitize(src, rules=load_rules(p))
    tags = list(_tags_everywhere(res.xml))
    assert not any(k == "ele" for _, _, k, _ in tags)
    rel = {int(i): float(v) for kind, i, k, v in tags if k == "ele_rel"}
    assert len(rel) == len(res.map.node_id)  # every surviving point had an ele
    vals = np.array(list(rel.values()))
    assert vals.min() == 0.0 and np.allclose(vals * 2, np.round(vals * 2))
    # relative heights follow the true ones (ele = 31.5 + 0.01 x in the fixture): x = 200 m -> ~2 m
    raw = {int(e.get("id")): float(e.find("tag[@k='ele']").get("v"))
           for e in etree.fromstring((fixture_map / "fixture.osm").read_bytes()).iterfind("node")}
    lowest = min(raw.values())
    for i, v in rel.items():
        assert abs(v - (raw[i] - lowest)) <= 0.25 + 1e-9
    assert res.audit.count("SEC-06", "relativise_round") == len(raw)  # recorded before deletions


def test_restricted_areas_can_block_instead(tmp_path, fixture_map):
    """Same data, other policy: a rules file that blocks publication when anything lies in a restricted area."""
    base = (REPO / "desensitize" / "rules" / "default.yaml").read_text()
    old = "    check: {op: intersects, layer: restricted_areas}\n    action: {op: delete_feature}"
    assert old in base
    p = tmp_path / "rules.yaml"
    p.write_text(base.replace(old, old.replace("delete_feature", "block_publish")))
    with pytest.raises(DesensitizeError, match="blocked by rule SEC-04"):
        desensitize(read_osm(fixture_map / "fixture.osm"), rules=load_rules(p), restricted=fixture_map / "zones.gpkg")


def test_a_new_rule_operation_is_one_registered_function(tmp_path, fixture_map):
    """The operation registries (desensitize.operations): a check and an action added by decorator are
    validated from YAML (their declared parameters) and run by the engine, with no other change."""
    from desensitize import operations

    @operations.check_op("key_prefix", required={"prefix"})
    def key_prefix(rule, tk, tv):
        return np.array([str(k).startswith(rule.check["prefix"]) for k in tk], bool)

    @operations.action_op("rename_tag", required={"to"}, removing=True)
    def rename_tag(run, rule, match):
        for g, k in zip(*match.keys):
            run.del_tags[int(g)].add(k)
            run.add_tags[int(g)][rule.action["to"]] = "redacted"
        run.audit.record(rule.id, "rename_tag", run.t, match.g, "renamed")

    try:
        base = (REPO / "desensitize" / "rules" / "default.yaml").read_text()
        p = tmp_path / "rules.yaml"
        p.write_text(base + """
  - id: LOCAL-02
    source: {doc: "local pilot rule", clause: "2"}
    target: {on: [lanelet]}
    check: {op: key_prefix, prefix: "speed_"}
    action: {op: rename_tag, to: "limit_class"}
    severity: C
""")
        res = desensitize(read_osm(fixture_map / "fixture.osm"), rules=load_rules(p))
        tags = [(k, v) for _, _, k, v in _tags_everywhere(res.xml)]
        assert not any(k == "speed_limit" for k, _ in tags)
        assert tags.count(("limit_class", "redacted")) == 5 and res.audit.count("LOCAL-02", "rename_tag") == 5
        with pytest.raises(DesensitizeError, match="'rename_tag' needs to"):
            p.write_text(p.read_text().replace('to: "limit_class"', ""))
            load_rules(p)
    finally:
        del operations.CHECK_OPS["key_prefix"], operations.ACTION_OPS["rename_tag"]
