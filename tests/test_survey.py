"""Survey input -> Lanelet2 map, checked with the real lanelet2 (strict load, routing graph, regulatory elements)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import lanelet2
import lanelet2.io
import lanelet2.projection
import lanelet2.routing
import lanelet2.traffic_rules
import numpy as np
import pytest
import shapely
from lanelet2.core import RightOfWay, TrafficLight
from osgeo import ogr, osr
from pyproj import Transformer

from lanelets.errors import MapError
from lanelets.roadspec import YIZHUANG
from lanelets.survey import build_from_survey

ogr.UseExceptions()
osr.UseExceptions()


# ---------------------------------------------------------------- helpers

def load(osm: Path, origin):
    proj = lanelet2.projection.UtmProjector(lanelet2.io.Origin(*origin))
    return lanelet2.io.load(str(osm), proj)  # strict: raises on any parse error


def vehicle_graph(m):
    rules = lanelet2.traffic_rules.create(lanelet2.traffic_rules.Locations.Germany,
                                          lanelet2.traffic_rules.Participants.Vehicle)
    return rules, lanelet2.routing.RoutingGraph(m, rules)


def xy(ls):
    return np.array([[p.x, p.y] for p in ls])


def heading(ll):
    c = xy(ll.centerline)
    d = c[-1] - c[0]
    return d / np.linalg.norm(d)


def named(m, name, turning=False):
    return [ll for ll in m.laneletLayer if ll.attributes["name"] == name
            and ("turn_direction" in ll.attributes) == turning]


def tag(prim, k):
    return prim.attributes[k] if k in prim.attributes else None


@pytest.fixture(scope="module")
def pilot(tmp_path_factory):
    out = tmp_path_factory.mktemp("pilot") / "yizhuang.osm"
    summary = build_from_survey(YIZHUANG, out)
    m = load(out, summary["origin"])
    rules, graph = vehicle_graph(m)
    return summary, out, m, rules, graph


# ---------------------------------------------------------------- the bundled road-spec

def test_pilot_summary_and_strict_load(pilot):
    summary, out, m, _, _ = pilot
    assert json.loads(json.dumps(summary)) == summary  # the CLI prints it as JSON
    assert summary["lanelets"] == len(m.laneletLayer) > 0
    assert summary["regulatory_elements"] == len(m.regulatoryElementLayer)
    assert summary["merges"] == 1 and summary["diverges"] == 1
    assert summary["signalled_junctions"] == 9 and summary["segment_joins"] >= 1
    assert summary["utm_crs"] == "EPSG:32650"
    lat, lon = summary["origin"]
    assert 39.7 < lat < 39.9 and 116.4 < lon < 116.6
    _, errors = lanelet2.io.loadRobust(str(out), lanelet2.projection.UtmProjector(lanelet2.io.Origin(lat, lon)))
    assert errors == []


def test_pilot_routing_graph_valid(pilot):
    *_, graph = pilot
    assert graph.checkValidity(False) == []


def test_pilot_build_is_deterministic(pilot, tmp_path):
    _, out, *_ = pilot
    again = tmp_path / "again.osm"
    build_from_survey(YIZHUANG, again)
    assert again.read_bytes() == out.read_bytes()


def _expressway_east(m, k):
    return [ll for ll in named(m, f"Pilot Expressway {k}") if heading(ll)[0] > 0.9]


def test_diverge_off_ramp_is_successor_of_outer_lane(pilot):
    _, _, m, _, graph = pilot
    off = named(m, "Pilot Off-ramp")
    first = [ll for ll in off if not graph.previous(ll) or all(tag(p, "name") != "Pilot Off-ramp"
                                                               for p in graph.previous(ll))]
    assert len(first) == 1
    (pred,) = graph.previous(first[0])
    assert tag(pred, "name") == "Pilot Expressway 2"
    # the predecessor is the outer (rightmost) eastbound lane: nothing right of it
    assert graph.adjacentRight(pred) is None and graph.right(pred) is None
    names = sorted(tag(s, "name") for s in graph.following(pred))
    assert names == ["Pilot Expressway 3", "Pilot Off-ramp"]
    # it shares its start points exactly with the through lane that continues
    through = [s for s in graph.following(pred) if tag(s, "name") == "Pilot Expressway 3"][0]
    assert first[0].leftBound[0].id == through.leftBound[0].id
    assert first[0].rightBound[0].id == through.rightBound[0].id


def test_merge_on_ramp_joins_outer_lane_with_right_of_way(pilot):
    _, _, m, _, graph = pilot
    on = named(m, "Pilot On-ramp")
    last = [ll for ll in on if any(tag(s, "name") == "Pilot Expressway 4" for s in graph.following(ll))]
    assert len(last) == 1
    (succ,) = graph.following(last[0])
    preds = sorted(tag(p, "name") for p in graph.previous(succ))
    assert preds == ["Pilot Expressway 3", "Pilot On-ramp"]
    rows = [r for r in last[0].regulatoryElements if isinstance(r, RightOfWay)]
    assert len(rows) == 1
    assert [ll.id for ll in rows[0].yieldLanelets()] == [last[0].id]
    assert {tag(ll, "name") for ll in rows[0].rightOfWayLanelets()} == {"Pilot Expressway 3"}


def test_routes_expressway_off_ramp_grid_on_ramp(pilot):
    _, _, m, _, graph = pilot
    west = min(_expressway_east(m, 1), key=lambda ll: (round(xy(ll.centerline)[0][0]), xy(ll.centerline)[0][1]))
    grid = sorted((ll for ll in named(m, "Pilot Road 3") if heading(ll)[0] > 0.9),
                  key=lambda ll: xy(ll.centerline)[:, 0].mean())
    target = grid[len(grid) // 2]  # mid-grid, eastbound
    path = graph.shortestPath(west, target)
    assert path is not None
    names = [tag(ll, "name") for ll in path]
    assert "Pilot Off-ramp" in names
    turning = [ll for ll in path if tag(ll, "turn_direction")]
    assert turning, "the route must pass through a junction"
    # back from the grid onto the expressway through the on-ramp merge
    east_end = max(_expressway_east(m, 4), key=lambda ll: xy(ll.centerline)[-1][0])
    back = graph.shortestPath(target, east_end)
    assert back is not None and "Pilot On-ramp" in [tag(ll, "name") for ll in back]
    assert graph.getRoute(west, east_end) is not None


def test_signalled_approaches_have_traffic_lights_with_stop_lines(pilot):
    summary, _, m, _, graph = pilot
    tls = [re for re in m.regulatoryElementLayer if isinstance(re, TrafficLight)]
    assert len(tls) == summary["traffic_lights"] >= 9 * 3
    for ll in m.laneletLayer:
        succ = graph.following(ll)
        enters_junction = bool(succ) and all(tag(s, "turn_direction") for s in succ) and not tag(ll, "turn_direction")
        lights = [r for r in ll.regulatoryElements if isinstance(r, TrafficLight)]
        assert bool(lights) == enters_junction, ll.id
        for tl in lights:
            stop = tl.stopLine
            assert stop is not None and tag(stop, "type") == "stop_line"
            # the stop line runs across the lanelet's end
            assert {ll.leftBound[-1].id, ll.rightBound[-1].id} <= {p.id for p in stop}
            assert [tag(ls, "type") for ls in tl.trafficLights] == ["traffic_light"]


def test_turning_lanelets_connect_approach_to_exit(pilot):
    _, _, m, _, graph = pilot
    turning = [ll for ll in m.laneletLayer if tag(ll, "turn_direction")]
    assert {tag(ll, "turn_direction") for ll in turning} == {"left", "right", "straight"}
    for ll in turning:
        (pred,) = graph.previous(ll)
        succ = graph.following(ll)
        assert len(succ) == 1 and not tag(pred, "turn_direction") and not tag(succ[0], "turn_direction")
        assert {tag(ll.leftBound, "type"), tag(ll.rightBound, "type")} == {"virtual"}
        a, b = heading(pred), heading(succ[0])
        turn = math.degrees(math.atan2(a[0] * b[1] - a[1] * b[0], a @ b))
        want = {"left": (30, 150), "right": (-150, -30), "straight": (-30, 30)}[tag(ll, "turn_direction")]
        assert want[0] - 10 <= turn <= want[1] + 10


def test_neighbour_lanes_share_bounds_and_line_types(pilot):
    _, _, m, _, graph = pilot
    x2 = named(m, "Pilot Expressway 2")
    mid_x = np.mean([xy(ll.centerline)[:, 0].mean() for ll in x2])
    # the cross-section of all 6 lanes whose lanelets contain mid_x
    cut = [ll for ll in x2 if xy(ll.leftBound)[:, 0].min() <= mid_x <= xy(ll.leftBound)[:, 0].max()]
    east = sorted([ll for ll in cut if heading(ll)[0] > 0], key=lambda ll: -xy(ll.centerline)[:, 1].mean())
    west = sorted([ll for ll in cut if heading(ll)[0] < 0], key=lambda ll: xy(ll.centerline)[:, 1].mean())
    assert len(east) == 3 and len(west) == 3
    for lanes in (east, west):  # left to right in travel direction
        for a, b in zip(lanes, lanes[1:]):
            assert a.rightBound.id == b.leftBound.id  # the same LineString object
            assert tag(a.rightBound, "subtype") == "dashed"
            assert graph.right(a).id == b.id  # lane change allowed across dashed
        assert tag(lanes[-1].rightBound, "subtype") == "solid"
        assert tag(lanes[0].leftBound, "subtype") == "solid_solid"
    # opposite directions share the centre line, inverted
    e0, w0 = east[0], west[0]
    assert e0.leftBound.id == w0.leftBound.id
    assert e0.leftBound.inverted() != w0.leftBound.inverted()
    assert graph.left(e0) is None  # no lane change across the double solid line


def test_speed_limits(pilot):
    _, _, m, rules, _ = pilot
    want = {"expressway": 100.0, "ramp": 40.0, "urban_arterial": 60.0, "urban_local": 40.0}
    for ll in m.laneletLayer:
        if tag(ll, "turn_direction"):
            continue
        v = want[tag(ll, "road_class")]
        assert float(tag(ll, "speed_limit")) == v
        assert rules.speedLimit(ll).speedLimit == pytest.approx(v, abs=1e-6)
        assert tag(ll, "subtype") == ("highway" if v >= 100 or tag(ll, "road_class") == "ramp" else "road")


def test_lane_width_is_metric(pilot):
    """Offsets are made in metres: a straight lane measured in UTM is lane_width wide to 1 cm."""
    summary, out, *_ = pilot
    lat0, lon0 = summary["origin"]
    m = load(out, (lat0, lon0))  # UtmProjector: UTM zone 50N metres minus the origin's
    spec = json.loads(YIZHUANG.read_text())
    widths = {f["properties"]["name"]: f["properties"]["lane_width"] for f in spec["features"]
              if f["properties"]["layer"] == "roads"}
    checked = 0
    for name in ("Pilot Road 2", "Pilot Street 2", "Pilot Expressway 3"):
        for ll in named(m, name):
            left, right = shapely.LineString(xy(ll.leftBound)), shapely.LineString(xy(ll.rightBound))
            probe = shapely.line_interpolate_point(left, np.linspace(0.3, 0.7, 5), normalized=True)
            d = shapely.distance(probe, right)
            assert np.abs(d - widths[name]).max() < 0.01, (name, d)
            checked += 1
    assert checked > 20


def test_roadspec_readme_says_illustrative():
    readme = (YIZHUANG.parent / "README.md").read_text().lower()
    assert "illustrative" in readme and "not surveyed" in readme


def test_roadspec_is_reproducible(tmp_path, monkeypatch):
    from lanelets.roadspec import make_yizhuang
    monkeypatch.setattr(make_yizhuang, "OUT", tmp_path / "spec.geojson")
    assert make_yizhuang.main().read_bytes() == YIZHUANG.read_bytes()


# ---------------------------------------------------------------- GeoPackage in another CRS (UTM 50N)

UTM50 = 32650
BASE = Transformer.from_crs(4326, UTM50, always_xy=True).transform(116.50, 39.79)


def _write_gpkg(path: Path, layers: dict, epsg: int = UTM50):
    """layers: name -> (geometry type, [(field, ogr type)], [(coords, {field: value})])"""
    drv = ogr.GetDriverByName("GPKG")
    ds = drv.CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    for name, (gtype, fields, feats) in layers.items():
        lyr = ds.CreateLayer(name, srs, gtype)
        for fname, ftype in fields:
            fd = ogr.FieldDefn(fname, ogr.OFTInteger if ftype == "bool" else ftype)
            if ftype == "bool":
                fd.SetSubType(ogr.OFSTBoolean)
            lyr.CreateField(fd)
        for coords, props in feats:
            f = ogr.Feature(lyr.GetLayerDefn())
            for k, v in props.items():
                f.SetField(k, v)
            if gtype == ogr.wkbPoint:
                g = ogr.Geometry(ogr.wkbPoint)
                g.AddPoint_2D(*coords)
            else:
                g = ogr.Geometry(ogr.wkbLineString)
                for x, y in coords:
                    g.AddPoint_2D(x, y)
            f.SetGeometry(g)
            lyr.CreateFeature(f)
    ds = None


ROAD_FIELDS = [("id", ogr.OFTString), ("name", ogr.OFTString), ("lanes_forward", ogr.OFTInteger),
               ("lanes_backward", ogr.OFTInteger), ("lane_width", ogr.OFTReal), ("speed_limit", ogr.OFTReal),
               ("road_class", ogr.OFTString)]


def _road(rid, pts, lf=2, lb=2, w=3.5, v=50.0, cls="urban_arterial"):
    e0, n0 = BASE
    return ([(e0 + x, n0 + y) for x, y in pts],
            {"id": rid, "name": rid, "lanes_forward": lf, "lanes_backward": lb, "lane_width": w,
             "speed_limit": v, "road_class": cls})


def _town_gpkg(path: Path):
    e0, n0 = BASE
    # B is surveyed: five boundaries left -> right (y = +7 .. -7), line types as painted
    styles = [("road_border", ""), ("line_thin", "dashed"), ("line_thick", "solid"), ("line_thin", "dashed"),
              ("road_border", "")]
    bounds = [([(e0 + 200, n0 + y), (e0 + 300, n0 + y + 0.02), (e0 + 400, n0 + y)],
               {"road_id": "B", "position": k, "type": t, "subtype": s})
              for k, ((t, s), y) in enumerate(zip(styles, (7.0, 3.5, 0.0, -3.5, -7.0)))]
    _write_gpkg(path, {
        "roads": (ogr.wkbLineString, ROAD_FIELDS, [
            _road("A", [(0, 0), (100, 0), (200, 0)]),
            _road("B", [(200, 0), (300, 0), (400, 0)]),
            _road("C", [(400, 0), (600, 0)], w=3.0),
            _road("D", [(400, 0), (400, -250)], lf=1, lb=1, w=3.25, v=30.0, cls="urban_local"),
        ]),
        "lane_boundaries": (ogr.wkbLineString, [("road_id", ogr.OFTString), ("position", ogr.OFTInteger),
                                                ("type", ogr.OFTString), ("subtype", ogr.OFTString)], bounds),
        "junctions": (ogr.wkbPoint, [("signalled", "bool")], [((e0 + 401, n0 - 1), {"signalled": 1})]),
    })


def test_geopackage_in_utm_is_reprojected(tmp_path):
    gpkg = tmp_path / "town.gpkg"
    _town_gpkg(gpkg)
    out = tmp_path / "town.osm"
    s = build_from_survey(gpkg, out)
    assert s["roads"] == 4 and s["surveyed_roads"] == 1 and s["segment_joins"] == 1
    assert s["signalled_junctions"] == 1
    lat, lon = s["origin"]
    assert abs(lat - 39.79) < 0.01 and abs(lon - 116.51) < 0.01  # reprojected, not UTM metres as degrees
    m = load(out, (lat, lon))
    _, graph = vehicle_graph(m)
    assert graph.checkValidity(False) == []
    # the surveyed road keeps its painted line types; its lanes share bounds
    b = named(m, "B")
    assert {tag(ll.rightBound, "type") for ll in b} >= {"road_border"}
    centre = [ll for ll in b if tag(ll.leftBound, "type") == "line_thick"]
    ids = [ll.leftBound.id for ll in centre]
    assert len(centre) >= 2 and all(ids.count(i) == 2 for i in ids)  # both directions share the centre line
    # A's eastbound outer lane -> B (segment join) -> right turn into D (southbound)
    a_east = [ll for ll in named(m, "A") if heading(ll)[0] > 0]
    start = min(a_east, key=lambda ll: (xy(ll.centerline)[0][0], xy(ll.centerline)[0][1]))
    d_south = [ll for ll in named(m, "D") if heading(ll)[1] < 0]
    path = graph.shortestPath(start, max(d_south, key=lambda ll: -xy(ll.centerline)[-1][1]))
    assert path is not None
    names = [tag(ll, "name") for ll in path]
    assert names.index("A") < names.index("B") < names.index("D")
    assert any(tag(ll, "turn_direction") == "right" for ll in path)
    # a surveyed point lands where the GeoPackage put it (UTM in, UTM out)
    corner = np.array([BASE[0] + 200 - 0.0, BASE[1] + 7.0])
    e_org, n_org = Transformer.from_crs(4326, UTM50, always_xy=True).transform(lon, lat)
    pts = np.array([[p.x + e_org, p.y + n_org] for p in m.pointLayer])
    assert np.hypot(*(pts - corner).T).min() < 0.01


def test_explicit_origin_is_used(tmp_path):
    gpkg = tmp_path / "town.gpkg"
    _town_gpkg(gpkg)
    s = build_from_survey(gpkg, tmp_path / "o.osm", origin=(39.78, 116.49))
    assert s["origin"] == [39.78, 116.49]
    load(tmp_path / "o.osm", (39.78, 116.49))


# ---------------------------------------------------------------- bad input

def _geojson(path: Path, features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _road_feature(coords, **props):
    base = {"layer": "roads", "lanes_forward": 1, "lanes_backward": 1, "lane_width": 3.5, "speed_limit": 50,
            "road_class": "urban_local"}
    base.update(props)
    return {"type": "Feature", "properties": {k: v for k, v in base.items() if v is not None},
            "geometry": {"type": "LineString", "coordinates": coords}}


def _missing_layer(p: Path):
    p = p.with_suffix(".gpkg")
    _write_gpkg(p, {"streets": (ogr.wkbLineString, ROAD_FIELDS, [_road("A", [(0, 0), (100, 0)])])})
    return p, "no 'roads' layer"


def _missing_field(p: Path):
    return _geojson(p, [_road_feature([[116.5, 39.79], [116.501, 39.79]], lane_width=None)]), "lane_width"


def _point_geometry(p: Path):
    f = _road_feature([[116.5, 39.79], [116.501, 39.79]])
    f["geometry"] = {"type": "Point", "coordinates": [116.5, 39.79]}
    return _geojson(p, [f]), "Point"


def _lon_200(p: Path):
    return _geojson(p, [_road_feature([[200.0, 39.79], [200.001, 39.79]])]), "outside WGS-84"


def _empty(p: Path):
    p.write_bytes(b"")
    return p, "empty file"


def _malformed(p: Path):
    p.write_text('{"type": "FeatureCollection", "features": [ {"type": "Feat')
    return p, "cannot read"


def _bad_value(p: Path):
    return _geojson(p, [_road_feature([[116.5, 39.79], [116.501, 39.79]], road_class="boulevard")]), "road_class"


def _no_features(p: Path):
    return _geojson(p, []), "no features"


def _single_vertex(p: Path):
    return _geojson(p, [_road_feature([[116.5, 39.79]])]), "fewer than 2 points"


def _nan_coordinate(p: Path):
    return _geojson(p, [_road_feature([[116.5, 39.79], [float("nan"), 39.79]])]), "(nan, 39.79) outside WGS-84"


@pytest.mark.parametrize("make", [_missing_layer, _missing_field, _point_geometry, _lon_200, _empty, _malformed,
                                  _bad_value, _no_features, _single_vertex, _nan_coordinate])
def test_bad_input_raises_one_line_and_writes_nothing(tmp_path, make):
    src_dir, out_dir = tmp_path / "in", tmp_path / "out"
    src_dir.mkdir()
    out_dir.mkdir()
    src, words = make(src_dir / "bad.geojson")
    out = out_dir / "map.osm"
    with pytest.raises(MapError) as ei:
        build_from_survey(src, out)
    msg = str(ei.value)
    assert "\n" not in msg and str(src) in msg and words in msg, msg
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("make", [_single_vertex, _nan_coordinate])
def test_cli_build_bad_line_is_one_line_exit_2(tmp_path, make):
    """Issue 14 item 9: a one-vertex line gave exit 1 and a shapely traceback; NaN printed a shapely warning."""
    import os
    import subprocess
    import sys

    src, words = make(tmp_path / "bad.geojson")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-W", "default", "-m", "mapsvc", "build", str(src), "-o",
                           str(tmp_path / "out.osm")], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(repo)})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(src) in lines[0] and "feature 0" in lines[0] and words in lines[0], proc.stderr
    assert not (tmp_path / "out.osm").exists()


def _ll_road(rid, pts_m, **props):
    """A road feature from local metres around (116.50 E, 39.79 N), as a plain (layer-less) GeoJSON feature."""
    e0, n0 = BASE
    back = Transformer.from_crs(UTM50, 4326, always_xy=True)
    lon, lat = back.transform([e0 + x for x, _ in pts_m], [n0 + y for _, y in pts_m])
    f = _road_feature([[a, b] for a, b in zip(lon, lat)], id=rid, name=rid, **props)
    del f["properties"]["layer"]
    return f


def test_plain_roads_geojson_signal_flags_one_way_and_plain_junction(tmp_path):
    feats = [
        _ll_road("W", [(-300, 0), (0, 0)], signal_end=True),
        _ll_road("E", [(0, 0), (300, 0)], road_class="urban_arterial"),
        _ll_road("N", [(0, 300), (0, 0)], lanes_backward=None, one_way=True, lanes_forward=2),
        _ll_road("S", [(0, 0), (0, -300)], lanes_backward=None, one_way=True, lanes_forward=2),
        # an unmarked three-way node east: a plain (unsignalled) junction
        _ll_road("E2", [(300, 0), (600, 0)], road_class="urban_arterial"),
        _ll_road("T", [(300, 0), (300, -200)]),
    ]
    feats[0]["geometry"] = {"type": "MultiLineString", "coordinates": [feats[0]["geometry"]["coordinates"]]}
    src = _geojson(tmp_path / "plain.geojson", feats)
    out = tmp_path / "plain.osm"
    s = build_from_survey(src, out)
    assert s["junctions"] == 2 and s["signalled_junctions"] == 1 and s["traffic_lights"] == 3  # W, E, N approach
    m = load(out, s["origin"])
    _, graph = vehicle_graph(m)
    assert graph.checkValidity(False) == []
    assert all(heading(ll)[1] < -0.9 for ll in named(m, "N") + named(m, "S"))  # one-way southbound
    n_last = [ll for ll in named(m, "N") if any(tag(f, "turn_direction") for f in graph.following(ll))]
    assert len(n_last) == 2 and all(any(isinstance(r, TrafficLight) for r in ll.regulatoryElements) for ll in n_last)
    east_node = {"E2", "T"}
    t_lanes = [ll for ll in m.laneletLayer if tag(ll, "turn_direction")
               and {tag(x, "name") for x in graph.previous(ll) + graph.following(ll)} & east_node]
    assert len(t_lanes) == 6  # E->E2, E->T, E2->E, E2->T, T->E, T->E2 (one lane each way)
    assert t_lanes and not any(isinstance(r, TrafficLight) for ll in t_lanes for p in graph.previous(ll)
                               for r in p.regulatoryElements)
    # no lights there: the local street T yields to the arterial (a right_of_way element)
    (row,) = {r.id: r for ll in m.laneletLayer for r in ll.regulatoryElements if isinstance(r, RightOfWay)}.values()
    assert {tag(ll, "name") for ll in row.yieldLanelets()} == {"T"}
    assert {tag(ll, "name") for ll in row.rightOfWayLanelets()} == {"E", "E2"}
    w_start = [ll for ll in named(m, "W") if heading(ll)[0] > 0.9]
    t_south = [ll for ll in named(m, "T") if heading(ll)[1] < -0.9]
    assert graph.shortestPath(w_start[0], t_south[-1]) is not None


def test_boundaries_that_do_not_fit_their_road(tmp_path):
    e0, n0 = BASE
    gpkg = tmp_path / "b.gpkg"
    _write_gpkg(gpkg, {
        "roads": (ogr.wkbLineString, ROAD_FIELDS, [_road("A", [(0, 0), (200, 0)])]),
        "lane_boundaries": (ogr.wkbLineString, [("road_id", ogr.OFTString), ("position", ogr.OFTInteger),
                                                ("type", ogr.OFTString)],
                            [([(e0, n0 + y), (e0 + 200, n0 + y)], {"road_id": "A", "position": k, "type": "line_thin"})
                             for k, y in enumerate((3.5, 0.0, -3.5))]),
    })
    with pytest.raises(MapError, match=r"needs boundaries at positions 0\.\.4"):
        build_from_survey(gpkg, tmp_path / "b.osm")
    assert not (tmp_path / "b.osm").exists()


def test_failed_write_leaves_old_output_and_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "map.osm"
    out.write_text("old map")
    real_write = lanelet2.io.write

    def write_then_die(name, *args):
        real_write(name, *args)  # a complete temp file exists at this point ...
        raise OSError("disk full")  # ... and then the write step fails

    monkeypatch.setattr(lanelet2.io, "write", write_then_die)
    with pytest.raises(OSError):
        build_from_survey(YIZHUANG, out)
    assert out.read_text() == "old map"
    assert [p.name for p in tmp_path.iterdir()] == ["map.osm"]


def test_pilot_map_passes_the_geometry_and_topology_checks(pilot):
    """The built map is checked by standards/ like any survey: no class A, B or C finding in its geometry,
    topology or attributes (metadata such as the map-review number is not the builder's to give), the junction
    turns stay drivable (no curvature above 0.5 1/m) and no line string has points closer than 5 cm."""
    from standards import check_map

    osm = pilot[1]
    report = check_map(osm)
    serious = [f for f in report["findings"]
               if f["severity"] in ("A", "B", "C") and f["element"] != "metadata"]
    assert not serious, serious[:5]
    counts = {c["id"]: c["count"] for c in report["checks"]}
    assert counts["mapping.curvature_too_big"] == 0 and counts["mapping.points_too_close"] == 0
    assert counts["mapping.duplicated_points"] == 0
