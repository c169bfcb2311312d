"""Quality checks on the real shared maps: at least what Lanelet2's own validators report (counts parsed from
the shared README, not copied here), and each check fires on a real map broken on purpose in exactly its way
while staying silent on the unbroken map.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
from lxml import etree

from conftest import LANELET2_DIR, require_shared, shared_lanelet2_maps

from standards.context import Context
from standards.registry import all_checks
from standards.runner import read_map, run_checks

README = LANELET2_DIR / "README.md"


# -- the README's table of Lanelet2 validator results ---------------------------------------------------
def readme_counts() -> dict[str, dict[str, int]]:
    """file -> {check name: count} from the README's "Measured on this machine" table."""
    text = require_shared(README).read_text(encoding="utf-8")
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 11 or not cells[0].startswith("`") or not cells[0].endswith(".osm`"):
            continue
        name = cells[0].strip("`")
        counts = {"general.parser_errors": int(cells[8]), "routing_graph.is_valid": int(cells[9])}
        for key, n in re.findall(r"([a-z_]+) (\d+)", cells[10]):
            counts[f"mapping.{key}"] = int(n)
        out[name] = counts
    return out


def run_one(path_or_map, check_id: str, **kw):
    m = path_or_map if not isinstance(path_or_map, (str, Path)) else read_map(path_or_map)
    ctx = Context(m, **kw)
    [(chk, hits, _)] = run_checks(ctx, only=[check_id])
    return hits


@pytest.fixture(scope="module")
def counts():
    return readme_counts()


def test_readme_table_parsed(counts):
    assert len(counts) == len(shared_lanelet2_maps()) == 8
    assert all("routing_graph.is_valid" in c for c in counts.values())


def test_finds_at_least_what_lanelet2_validators_report(real_map, counts):
    ctx = Context(read_map(real_map))
    found = {chk.id: len(hits) for chk, hits, _ in run_checks(ctx) if hits is not None}
    expected = counts[real_map.name]
    for check_id, n in expected.items():
        assert check_id in found, f"{check_id} is not a registered check"
        assert found[check_id] >= n, f"{real_map.name}: {check_id} found {found[check_id]}, Lanelet2 reports {n}"
    # and nothing Lanelet2 reports as absent is claimed by the counting checks it shares with us
    for check_id in ("mapping.duplicated_points", "mapping.bool_tags", "routing_graph.is_valid"):
        assert found[check_id] == expected.get(check_id, 0)


def test_registry_is_complete():
    checks = all_checks()
    for c in checks.values():
        assert c.severity in ("A", "B", "C", "D", "info") and c.description and c.element
    assert len(checks) >= 20


# -- editing real maps --------------------------------------------------------------------------------
class Osm:
    """A real map's XML, to break in one precise way."""

    def __init__(self, name: str):
        self.path = require_shared(LANELET2_DIR / name)
        self.root = etree.fromstring(self.path.read_bytes())
        self.by_id = {(el.tag, el.get("id")): el for el in self.root if el.tag in ("node", "way", "relation")}
        self.next_id = max(abs(int(el.get("id"))) for el in self.by_id.values()) + 1000

    def el(self, kind: str, i) -> etree._Element:
        return self.by_id[(kind, str(i))]

    def lanelets(self):
        return [el for el in self.root.iterfind("relation") if _tags(el).get("type") == "lanelet"]

    def regelems(self, subtype=None):
        return [el for el in self.root.iterfind("relation") if _tags(el).get("type") == "regulatory_element"
                and (subtype is None or _tags(el).get("subtype") == subtype)]

    def bound(self, ll, role) -> etree._Element:
        ref = next(m.get("ref") for m in ll.iterfind("member") if m.get("role") == role)
        return self.el("way", ref)

    def refs(self, way) -> list[str]:
        return [nd.get("ref") for nd in way.iterfind("nd")]

    def pos(self, node_id) -> tuple[float, float]:
        n = self.el("node", node_id)
        return float(n.get("lat")), float(n.get("lon"))

    def new_node(self, lat: float, lon: float, like) -> str:
        nid = str(self.next_id)
        self.next_id += 1
        el = copy.deepcopy(self.el("node", like))
        el.set("id", nid)
        el.set("lat", repr(float(lat)))
        el.set("lon", repr(float(lon)))
        for t in el.findall("tag"):  # a moved point's metric copies would disagree with it
            if t.get("k") in ("local_x", "local_y"):
                el.remove(t)
        self.root.append(el)
        self.by_id[("node", nid)] = el
        return nid

    def set_tag(self, el, k, v=None):
        for t in el.findall("tag"):
            if t.get("k") == k:
                if v is None:
                    el.remove(t)
                else:
                    t.set("v", v)
                return
        if v is not None:
            etree.SubElement(el, "tag", k=k, v=v)

    def write(self, tmp_path, name="broken.osm") -> Path:
        # keep OSM element order: nodes, ways, relations
        kids = sorted(self.root, key=lambda e: {"node": 0, "way": 1, "relation": 2}.get(e.tag, -1))
        self.root[:] = kids
        p = tmp_path / name
        p.write_bytes(etree.tostring(self.root, xml_declaration=True, encoding="UTF-8"))
        return p


def _tags(el) -> dict:
    return {t.get("k"): t.get("v") for t in el.iterfind("tag")}


def metres(lat: float) -> tuple[float, float]:
    """Degrees of (lat, lon) per metre at this latitude."""
    return 1 / 111_320.0, 1 / (111_320.0 * np.cos(np.radians(lat)))


def successor_pair(osm: Osm):
    """A lanelet pair A -> B sharing both end points (B starts where A ends), bounds drawn forward."""
    starts = {}
    for ll in osm.lanelets():
        left, right = osm.refs(osm.bound(ll, "left")), osm.refs(osm.bound(ll, "right"))
        starts[(left[0], right[0])] = ll
    for ll in osm.lanelets():
        left, right = osm.refs(osm.bound(ll, "left")), osm.refs(osm.bound(ll, "right"))
        nxt = starts.get((left[-1], right[-1]))
        if nxt is not None and nxt is not ll:
            return ll, nxt
    raise AssertionError("no successor pair")


def fires(check_id, clean: Path, broken: Path, element_id=None, **kw):
    before = run_one(clean, check_id, **kw)
    after = run_one(broken, check_id, **kw)
    assert len(before) == 0, f"{check_id} not silent on {clean.name}: {before.detail[:3]}"
    assert len(after) > 0, f"{check_id} silent on the broken map"
    if element_id is not None:
        assert int(element_id) in after.ids.tolist(), (element_id, after.ids[:10], after.detail[:3])
    return after


CARGO = "autoware_tools_cargo_transport_map.osm"
KASHI = "tier4_kashiwanoha_lanelet2_map.osm"
HIGHWAY = "tier4_four_track_highway_lanelet2_map.osm"
EXAMPLE = "mapping_example.osm"


def test_duplicated_points(tmp_path):
    osm = Osm(CARGO)
    way = osm.bound(osm.lanelets()[0], "left")
    nd = way.find("nd")
    nd.addnext(copy.deepcopy(nd))
    fires("mapping.duplicated_points", osm.path, osm.write(tmp_path), way.get("id"))


def test_points_too_close(tmp_path):
    osm = Osm(EXAMPLE)
    way = osm.bound(osm.lanelets()[0], "left")
    refs = osm.refs(way)
    lat, lon = osm.pos(refs[0])
    dlat, _ = metres(lat)
    new = osm.new_node(lat + 0.02 * dlat, lon, refs[0])  # 2 cm north of the first point
    way.find("nd").addnext(etree.Element("nd", ref=new))
    hits = fires("mapping.points_too_close", osm.path, osm.write(tmp_path), new)
    assert set(hits.ids.tolist()) == {int(new), int(refs[0])}


def test_curvature_too_big(tmp_path):
    osm = Osm(HIGHWAY)
    ll = osm.lanelets()[0]
    way = osm.bound(ll, "left")
    refs = osm.refs(way)
    (la, lo), (lb, lob) = osm.pos(refs[0]), osm.pos(refs[1])
    dlat, dlon = metres(la)
    d = np.array([(lb - la) / dlat, (lob - lo) / dlon])
    d /= np.linalg.norm(d)
    a = np.array([la, lo]) + 0.5 * d * [dlat, dlon]
    b = a + 0.5 * np.array([-d[1], d[0]]) * [dlat, dlon]  # a right-angle kink of 0.5 m sides
    na, nb = osm.new_node(*a, refs[0]), osm.new_node(*b, refs[0])
    first = way.find("nd")
    first.addnext(etree.Element("nd", ref=nb))
    first.addnext(etree.Element("nd", ref=na))
    fires("mapping.curvature_too_big", osm.path, osm.write(tmp_path), ll.get("id"))


def test_mandatory_unknown_value_unknown_tag_bool(tmp_path):
    osm = Osm(CARGO)
    ll = osm.lanelets()[3]
    osm.set_tag(ll, "subtype", None)
    p1 = osm.write(tmp_path, "a.osm")
    fires("mapping.mandatory_tags", osm.path, p1, ll.get("id"))
    osm = Osm(CARGO)
    ll = osm.lanelets()[3]
    osm.set_tag(ll, "subtype", "roadway")
    fires("mapping.unknown_tag_value", osm.path, osm.write(tmp_path, "b.osm"), ll.get("id"))
    osm = Osm("interaction_TestScenarioForScripts.osm")
    ll = osm.lanelets()[0]
    osm.set_tag(ll, "surface_colour", "red")
    fires("mapping.unknown_tags", osm.path, osm.write(tmp_path, "c.osm"), ll.get("id"))
    osm = Osm(CARGO)
    ll = osm.lanelets()[3]
    osm.set_tag(ll, "one_way", "maybe")
    fires("mapping.bool_tags", osm.path, osm.write(tmp_path, "d.osm"), ll.get("id"))
    osm = Osm(CARGO)
    ll = osm.lanelets()[3]
    osm.set_tag(ll, "speed_limit", "fast")
    fires("schema.speed_limit", osm.path, osm.write(tmp_path, "e.osm"), ll.get("id"))


def test_parser_errors_and_dangling_references(tmp_path):
    osm = Osm(CARGO)
    ll = osm.lanelets()[0]
    rel = etree.SubElement(osm.root, "relation", id=str(osm.next_id), version="1")
    etree.SubElement(rel, "member", type="way", ref=osm.bound(ll, "left").get("id"), role="refers")
    etree.SubElement(rel, "tag", k="type", v="regulatory_element")
    etree.SubElement(rel, "tag", k="subtype", v="secret_rule")
    fires("general.parser_errors", osm.path, osm.write(tmp_path, "a.osm"), rel.get("id"))
    osm = Osm(CARGO)
    ll = osm.lanelets()[5]
    etree.SubElement(ll, "member", type="relation", ref="987654321", role="regulatory_element")
    hits = fires("general.dangling_references", osm.path, osm.write(tmp_path, "b.osm"), ll.get("id"))
    assert "987654321" in hits.detail[0]


def test_regulatory_element_members_and_stop_line(tmp_path):
    osm = Osm(KASHI)
    tl = osm.regelems("traffic_light")[0]
    refers = next(m for m in tl.iterfind("member") if m.get("role") == "refers")
    refers.set("ref", osm.bound(osm.lanelets()[0], "left").get("id"))  # a lane marking, not a traffic light
    fires("autoware.regulatory_element_members", osm.path, osm.write(tmp_path, "a.osm"), tl.get("id"))
    osm = Osm(KASHI)
    tl = osm.regelems("traffic_light")[0]
    for m in tl.findall("member"):
        if m.get("role") == "ref_line":
            tl.remove(m)
    fires("autoware.traffic_light_stop_line", osm.path, osm.write(tmp_path, "b.osm"), tl.get("id"))


def _clone_lanelet(osm: Osm, ll, shift_m: float):
    """A copy of a lanelet with new points, line strings and id, shifted east."""
    lat, _ = osm.pos(osm.refs(osm.bound(ll, "left"))[0])
    _, dlon = metres(lat)
    new_ll = copy.deepcopy(ll)
    new_ll.set("id", str(osm.next_id))
    osm.next_id += 1
    for mem in new_ll.findall("member"):
        if mem.get("role") not in ("left", "right"):
            new_ll.remove(mem)
            continue
        way = copy.deepcopy(osm.el("way", mem.get("ref")))
        way.set("id", str(osm.next_id))
        osm.next_id += 1
        for nd in way.iterfind("nd"):
            la, lo = osm.pos(nd.get("ref"))
            nd.set("ref", osm.new_node(la, lo + shift_m * dlon, nd.get("ref")))
        osm.root.append(way)
        osm.by_id[("way", way.get("id"))] = way
        mem.set("ref", way.get("id"))
    osm.root.append(new_ll)
    return new_ll


def test_unreachable_lanelets(tmp_path):
    osm = Osm(CARGO)
    new = _clone_lanelet(osm, osm.lanelets()[0], 2000.0)
    fires("autoware.unreachable_lanelets", osm.path, osm.write(tmp_path), new.get("id"))


def test_bounds_crossing(tmp_path):
    osm = Osm(CARGO)
    ll = osm.lanelets()[10]
    left, right = osm.bound(ll, "left"), osm.bound(ll, "right")
    ln, rn = left.findall("nd")[-1], right.findall("nd")[-1]
    a, b = ln.get("ref"), rn.get("ref")
    ln.set("ref", b)
    rn.set("ref", a)  # the bounds end on each other's last point: they cross
    fires("autoware.bounds_crossing", osm.path, osm.write(tmp_path), ll.get("id"))


def test_bounds_direction(tmp_path):
    osm = Osm(CARGO)
    a, b = successor_pair(osm)
    for m in b.iterfind("member"):  # swap left and right: B now runs against A
        if m.get("role") in ("left", "right"):
            m.set("role", "right" if m.get("role") == "left" else "left")
    fires("autoware.bounds_direction", osm.path, osm.write(tmp_path), b.get("id"))


def test_lane_width(tmp_path):
    osm = Osm(KASHI)
    ll = next(x for x in osm.lanelets() if _tags(x).get("subtype") == "road")
    left, right = osm.bound(ll, "left"), osm.bound(ll, "right")
    lat0, lon0 = osm.pos(osm.refs(left)[0])
    dlat, dlon = metres(lat0)
    lc = np.mean([osm.pos(r) for r in osm.refs(left)], axis=0)
    rc = np.mean([osm.pos(r) for r in osm.refs(right)], axis=0)
    out = (rc - lc) / [dlat, dlon]
    out = out / np.linalg.norm(out) * 15.0 * [dlat, dlon]  # move the right bound 15 m outwards
    way = copy.deepcopy(right)
    way.set("id", str(osm.next_id))
    osm.next_id += 1
    for nd in way.iterfind("nd"):
        la, lo = osm.pos(nd.get("ref"))
        nd.set("ref", osm.new_node(la + out[0], lo + out[1], nd.get("ref")))
    osm.root.append(way)
    next(m for m in ll.iterfind("member") if m.get("role") == "right").set("ref", way.get("id"))
    hits = fires("autoware.lane_width", osm.path, osm.write(tmp_path), ll.get("id"))
    assert "road" in hits.detail[list(hits.ids).index(int(ll.get("id")))]


def test_successor_gap(tmp_path):
    osm = Osm(HIGHWAY)
    a, b = successor_pair(osm)
    lat0, _ = osm.pos(osm.refs(osm.bound(b, "left"))[0])
    dlat, dlon = metres(lat0)
    for role in ("left", "right"):
        way = osm.bound(b, role)
        refs = osm.refs(way)
        p0, p1 = np.array(osm.pos(refs[0])), np.array(osm.pos(refs[1]))
        d = (p1 - p0) / [dlat, dlon]
        d /= np.linalg.norm(d)
        new = osm.new_node(*(p0 + 0.3 * d * [dlat, dlon]), refs[0])  # B now starts 0.3 m after A ends
        way.find("nd").set("ref", new)
    hits = fires("autoware.successor_gap", osm.path, osm.write(tmp_path), a.get("id"))
    assert any("gap of 0.3" in d for d in hits.detail)


def test_spatial_reference(tmp_path):
    osm = Osm(CARGO)
    for n in osm.root.iterfind("node"):
        n.set("lat", "")
        n.set("lon", "")
    fires("qa.spatial_reference", osm.path, osm.write(tmp_path))


def test_routing_graph_validity_runs_lanelet2(real_map):
    hits = run_one(real_map, "routing_graph.is_valid")
    assert hits.checked > 0 and len(hits) == 0


def test_checks_vectorised_on_every_map(real_map):
    """Every check runs on every shared map and reports places for what it finds."""
    ctx = Context(read_map(real_map))
    for chk, hits, secs in run_checks(ctx):
        if hits is None:
            continue
        assert len(hits.kind) == len(hits.ids) == len(hits.x)
        if chk.id.startswith(("mapping.points", "mapping.curvature", "autoware.lane")) and len(hits):
            assert np.isfinite(hits.x).all()


def test_routing_graph_invalid_on_duplicated_lanelet(tmp_path):
    # A lanelet entered twice (same bounds, new id) beside lane-change neighbours breaks the routing
    # graph's symmetry, which Lanelet2's checkValidity reports.
    osm = Osm(HIGHWAY)
    ll = osm.lanelets()[3]
    dup = copy.deepcopy(ll)
    dup.set("id", str(osm.next_id))
    osm.root.append(dup)
    hits = fires("routing_graph.is_valid", osm.path, osm.write(tmp_path))
    assert "relation" in hits.detail[0]


def test_all_checks_survive_a_lanelet_without_its_right_bound(tmp_path):
    # Lanelet2's RoutingGraph crashes the process on such a lanelet unless it is left out of the graph.
    osm = Osm(CARGO)
    ll = osm.lanelets()[4]
    next(m for m in ll.iterfind("member") if m.get("role") == "right").set("ref", "987654321")
    ctx = Context(read_map(osm.write(tmp_path)))
    out = {c.id: h for c, h, _ in run_checks(ctx)}
    assert int(ll.get("id")) in out["general.dangling_references"].ids.tolist()
    assert len(out["general.parser_errors"]) > 0
    assert out["autoware.unreachable_lanelets"].checked == len(osm.lanelets()) - 1
