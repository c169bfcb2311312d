"""Desensitise one Lanelet2 map (:class:`lanelets.osm.OsmMap`): rules, restricted areas, offset, audit.

Order matters: content rules and restricted areas are evaluated on the true geometry (restricted polygons
are in true WGS-84), deletions are propagated so the map stays valid, and only then is every surviving point
moved by the offset provider. Metric attributes (widths, lengths ...) are never recomputed: they are kept
from the source, i.e. from the unshifted geometry (regulations.md §4.3: the offset distorts up to 0.66 %).
Metric copies of positions (``local_x``/``local_y``/``mgrs_code``...) are dropped.

Rule checks run on one flat table of every tag of every element (numpy object arrays), so each rule is a
handful of vectorised comparisons whatever the map size; the XML of changed elements is rewritten by
:func:`lanelets.elements.edit_element` (XML is parsed only in ``lanelets/``).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import shapely

from desensitize.audit import Audit
from desensitize.errors import DesensitizeError
from desensitize.operations import ACTION_OPS, CHECK_OPS, Match, value_match
from desensitize.provider import OffsetProvider
from desensitize.rules import CLASSES, RuleSet
from lanelets.elements import edit_element
from lanelets.osm import OsmMap, osm_document, read_osm

NODE, LINE, LANELET, AREA, REGELEM, RELATION = range(6)
_KIND_NAME = ("node", "way", "relation")
_POSITION_EXTRA = re.compile(rb"\b(min|max)?(lat|lon)\s*=")
OFFSET_RULE = "SEC-01"


@dataclass
class Restricted:
    """Restricted-area polygons (true WGS-84) and a label per polygon (layer:fid — never coordinates)."""

    polygons: np.ndarray
    labels: list[str]
    source: str = ""


@dataclass
class Result:
    map: OsmMap  # the desensitised map (offset coordinates)
    xml: bytes
    report: dict
    audit: Audit
    kept_node_ids: np.ndarray
    moved: np.ndarray  # per kept node: did the provider move it (inside its region)
    flags: list = field(default_factory=list)


# -- element table --------------------------------------------------------------------------------------
class _Table:
    """Every element as a global index g (nodes, then ways, then relations) with its class, and every tag
    as parallel arrays (g, key, value)."""

    def __init__(self, m: OsmMap):
        self.m = m
        self.nn, self.nw, self.nr = m.n_nodes, m.n_ways, m.n_relations
        self.n = self.nn + self.nw + self.nr
        cls = np.empty(self.n, np.int8)
        cls[: self.nn] = NODE
        cls[self.nn: self.nn + self.nw] = LINE
        types = m.relation_types()
        rc = np.full(self.nr, RELATION, np.int8)
        rc[types == "lanelet"] = LANELET
        rc[types == "multipolygon"] = AREA
        rc[types == "regulatory_element"] = REGELEM
        cls[self.nn + self.nw:] = rc
        self.cls = cls
        tg, tk, tv = [], [], []
        for base, dicts in ((0, m.node_tags), (self.nn, m.way_tags), (self.nn + self.nw, m.rel_tags)):
            for i, tags in enumerate(dicts):
                for k, v in tags.items():
                    tg.append(base + i)
                    tk.append(k)
                    tv.append(v)
        self.tg = np.array(tg, dtype=np.int64)
        self.tk = _objarray(tk)
        self.tv = _objarray(tv)

    def kind_row(self, g: np.ndarray):
        g = np.asarray(g, np.int64)
        kind = np.where(g < self.nn, 0, np.where(g < self.nn + self.nw, 1, 2))
        row = g - np.array([0, self.nn, self.nn + self.nw])[kind]
        return kind, row

    def ids(self, g: np.ndarray) -> np.ndarray:
        kind, row = self.kind_row(g)
        out = np.empty(len(g), np.int64)
        for k, arr in enumerate((self.m.node_id, self.m.way_id, self.m.rel_id)):
            out[kind == k] = arr[row[kind == k]]
        return out


def _objarray(items) -> np.ndarray:
    a = np.empty(len(items), dtype=object)
    a[:] = items
    return a


def _class_mask(rule) -> np.ndarray:
    allowed = np.zeros(len(CLASSES), bool)
    for i, c in enumerate(CLASSES):
        allowed[i] = rule.applies_to(c)
    return allowed


def match_tags(rule, tg, tk, tv, cls_of_g) -> np.ndarray:
    """Tag-row mask for a tag-based rule over a tag table: its registered check, its element classes and its
    ``when`` condition (tags the same element must also carry)."""
    allowed = _class_mask(rule)[cls_of_g[tg]] if len(tg) else np.zeros(0, bool)
    op = CHECK_OPS[rule.check["op"]]
    if op.geometry:
        raise AssertionError(f"{op.name} is not a tag check")
    sel = op.func(rule, tk, tv) & allowed
    when = rule.check.get("when")
    if when and sel.any():
        ok = None
        for k, spec in when.items():
            key = tk == k
            has = np.unique(tg[key][value_match(tv[key], spec)])
            ok = has if ok is None else np.intersect1d(ok, has)
        sel &= np.isin(tg, ok)
    return sel


# -- geometry of elements (true coordinates) ----------------------------------------------------------
def _element_geometries(m: OsmMap, lon, lat, cls) -> np.ndarray:
    """A shapely geometry per global element index: points, line strings, lanelet polygons (bounds closed
    into a ring) and areas (built from their outer/inner ways); other relations: their members' union."""
    nn, nw = m.n_nodes, m.n_ways
    geoms = np.empty(nn + nw + m.n_relations, dtype=object)
    geoms[:nn] = shapely.points(lon, lat)
    way_geom = m.way_geometries(lon, lat)
    geoms[nn: nn + nw] = way_geom

    owner = m.relation_of_member()
    kinds, rows = m.rel_member_kind, m.rel_member_row
    roles = np.array(m.rel_member_role, dtype=object)
    member_geom = np.empty(len(rows), dtype=object)
    member_geom[kinds == 1] = way_geom[rows[kinds == 1]]
    member_geom[kinds == 0] = geoms[rows[kinds == 0]]
    has = kinds != 2
    rel_geom = np.empty(m.n_relations, dtype=object)
    rel_geom[:] = shapely.from_wkt("GEOMETRYCOLLECTION EMPTY")
    if has.any():
        owners, dense = np.unique(owner[has], return_inverse=True)
        rel_geom[owners] = shapely.geometrycollections(member_geom[has], indices=dense)
    rcls = cls[nn + nw:]
    # Lanelets: the surface between the bounds (left + reversed right), so a polygon lying wholly inside a
    # lane is caught too. One small Python step per lanelet (not per point).
    for r in np.flatnonzero(rcls == LANELET):
        a, b = m.rel_ptr[r], m.rel_ptr[r + 1]
        left = [rows[i] for i in range(a, b) if roles[i] == "left" and kinds[i] == 1]
        right = [rows[i] for i in range(a, b) if roles[i] == "right" and kinds[i] == 1]
        if left and right:
            ln = m.way_nodes[m.way_ptr[left[0]]: m.way_ptr[left[0] + 1]]
            rn = m.way_nodes[m.way_ptr[right[0]]: m.way_ptr[right[0] + 1]][::-1]
            ring = np.concatenate([ln, rn, ln[:1]])
            if len(ring) >= 4:
                poly = shapely.make_valid(shapely.polygons(np.column_stack([lon[ring], lat[ring]])))
                rel_geom[r] = shapely.geometrycollections([poly, rel_geom[r]])
    areas = np.flatnonzero(rcls == AREA)
    if len(areas):
        built = shapely.build_area(rel_geom[areas])
        keep = ~shapely.is_empty(built)
        rel_geom[areas[keep]] = shapely.geometrycollections(
            np.column_stack([built[keep], rel_geom[areas[keep]]]).tolist()) if keep.any() else []
    geoms[nn + nw:] = rel_geom
    return geoms


# -- deletion propagation -----------------------------------------------------------------------------
def _propagate(m: OsmMap, cls, dead_g: np.ndarray, required_roles: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grow the set of deleted elements until the map is valid again. Returns (dead per g, dead member
    mask, dead way-node mask): a lanelet without a bound goes, an area without a ring way goes, a regulatory
    element that lost all members of a required role goes, a way left with < 2 points goes, and anything
    that only deleted elements used goes; other references to deleted elements are just dropped."""
    nn, nw = m.n_nodes, m.n_ways
    owner = m.relation_of_member()
    kinds, rows = m.rel_member_kind, m.rel_member_row
    roles = np.array(m.rel_member_role, dtype=object)
    member_g = rows + np.array([0, nn, nn + nw])[kinds]
    pos_way = m.way_of_position()
    waynode_g = m.way_nodes
    way_len = np.diff(m.way_ptr)
    rcls = cls[nn + nw:]
    subtypes = np.array([t.get("subtype", "") for t in m.rel_tags], dtype=object)
    # which relation needs which role
    need: dict[str, np.ndarray] = {}
    default = required_roles.get("default", [])
    for role in {r for v in required_roles.values() for r in v}:
        req = np.array([role in required_roles.get(s, default) for s in subtypes], bool) & (rcls == REGELEM)
        need[role] = req
    referenced = np.zeros(len(cls), bool)
    referenced[member_g] = True
    referenced[waynode_g] = True
    n_members = np.bincount(owner, minlength=m.n_relations)
    orphanable = (cls != LANELET) & (cls != AREA)

    dead = dead_g.copy()
    while True:
        before = int(dead.sum())
        member_dead = dead[member_g]
        waynode_dead = dead[waynode_g]
        # ways
        alive_pts = np.bincount(pos_way[~waynode_dead], minlength=nw)
        lost = (way_len > 0) & (alive_pts < np.minimum(way_len, 2))
        dead[nn: nn + nw] |= lost
        # lanelets and areas lose their geometry with any bound / ring way
        geom_role = np.isin(roles, np.array(["left", "right", "outer", "inner"], dtype=object))
        broken = np.bincount(owner[member_dead & geom_role], minlength=m.n_relations) > 0
        dead[nn + nw:] |= broken & ((rcls == LANELET) | (rcls == AREA))
        # regulatory elements: required roles
        for role, req in need.items():
            with_role = roles == role
            had = np.bincount(owner[with_role], minlength=m.n_relations)
            alive = np.bincount(owner[with_role & ~member_dead], minlength=m.n_relations)
            dead[nn + nw:] |= req & (had > 0) & (alive == 0)
        # any relation with members, all gone
        alive_members = np.bincount(owner[~member_dead], minlength=m.n_relations)
        dead[nn + nw:] |= (n_members > 0) & (alive_members == 0)
        # orphans: parts used before, and now only by deleted elements (lanelets and areas are features
        # in their own right: a regulatory element naming one does not make it a part)
        used = np.zeros(len(cls), bool)
        used[member_g[~dead[nn + nw + owner]]] = True
        used[waynode_g[~dead[nn + pos_way]]] = True
        dead |= referenced & ~used & orphanable
        if int(dead.sum()) == before:
            break
    member_dead = dead[member_g] | dead[nn + nw + owner]
    waynode_dead = dead[waynode_g] | dead[nn + pos_way]
    return dead, member_dead, waynode_dead


# -- the whole step -----------------------------------------------------------------------------------------
def _fmt(values: np.ndarray) -> list[str]:
    """Shortest round-trip decimal strings (numpy's C formatting), never exponent notation."""
    out = values.astype(str)
    bad = np.char.find(out, "e") >= 0
    if bad.any():
        out[bad] = [np.format_float_positional(v, trim="-") for v in values[bad]]
    return out.tolist()


@dataclass
class Run:
    """The state of one desensitisation: what the rule operations (:mod:`desensitize.operations`) change."""

    m: OsmMap
    t: _Table
    lon: np.ndarray  # true positions; never written to the audit or report
    lat: np.ndarray
    restricted: Restricted | None
    audit: Audit = field(default_factory=Audit)
    dead: np.ndarray = None
    del_tags: dict = field(default_factory=lambda: defaultdict(set))
    add_tags: dict = field(default_factory=lambda: defaultdict(dict))
    flags: list = field(default_factory=list)
    blocks: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    _geoms: np.ndarray | None = None

    def __post_init__(self):
        if self.dead is None:
            self.dead = np.zeros(self.t.n, bool)

    @staticmethod
    def class_mask(rule) -> np.ndarray:
        return _class_mask(rule)

    def geometries(self) -> np.ndarray:
        if self._geoms is None:
            self._geoms = _element_geometries(self.m, self.lon, self.lat, self.t.cls)
        return self._geoms


def desensitize_map(m: OsmMap, rules: RuleSet, provider: OffsetProvider, *, restricted: Restricted | None = None,
                    origin=None) -> Result:
    lon, lat = m.lonlat(origin)
    run = Run(m, _Table(m), lon, lat, restricted)
    _apply_rules(run, rules)
    member_dead, waynode_dead = _cascade(run, rules)
    _refuse_blocked(run)
    flag_out = _live_flags(run)
    off = _offset(run, rules, provider)
    xml = _rewrite(run, rules, off, member_dead, waynode_dead)
    # Re-read what was written: the lossless model of the output, and a validity check (dangling refs).
    try:
        out = read_osm(xml, name=m.source)
    except Exception as exc:  # a bug here must never publish
        raise DesensitizeError(f"{m.source}: desensitised map is invalid: {exc}") from None
    report = _report(run, rules, provider, off, flag_out)
    return Result(out, xml, report, run.audit, m.node_id[off.kept_rows], off.moved, flag_out)


def _apply_rules(run: Run, rules: RuleSet) -> None:
    """Each rule's registered check, then its registered action (on the true, unshifted map)."""
    t = run.t
    for rule in rules.rules:
        check = CHECK_OPS[rule.check["op"]]
        if check.geometry:
            match = check.func(rule, run)
            if match is None:
                continue
        else:
            sel = match_tags(rule, t.tg, t.tk, t.tv, t.cls)
            match = Match(np.unique(t.tg[sel]), (t.tg[sel], t.tk[sel]))
        if not len(match.g):
            continue
        run.counts[rule.id] = int(len(match.g))
        ACTION_OPS[rule.action["op"]].func(run, rule, match)


def _cascade(run: Run, rules: RuleSet) -> tuple[np.ndarray, np.ndarray]:
    """Deletions propagated until the map is valid again, audited as a cascade of the deleting rules."""
    direct_dead = run.dead.copy()
    run.dead, member_dead, waynode_dead = _propagate(run.m, run.t.cls, run.dead, rules.required_roles)
    cascaded = run.dead & ~direct_dead
    if cascaded.any():
        causes = ",".join(sorted({e["rule"] for e in run.audit.entries if e["action"] == "delete_feature"}))
        run.audit.record(causes or "cascade", "delete_feature", run.t, np.flatnonzero(cascaded),
                         "cascade: needed a deleted element, or was used only by deleted elements")
    return member_dead, waynode_dead


def _refuse_blocked(run: Run) -> None:
    """Blocking rules look at what survives (a forbidden name on a deleted feature is gone with it)."""
    t, dead = run.t, run.dead
    for rule, hit_g, hit_keys in run.blocks:
        alive = []
        pairs = (zip(hit_keys[0].tolist(), hit_keys[1].tolist()) if hit_keys is not None
                 else ((g, None) for g in hit_g.tolist()))  # geometry rules: no tag
        for g, k in pairs:
            if not dead[g] and k not in run.del_tags.get(g, ()):
                alive.append(g)
        if alive:
            kind, row = t.kind_row(np.array(alive[:1]))
            ident = t.ids(np.array(alive[:1]))[0]
            raise DesensitizeError(
                f"{run.m.source}: publication blocked by rule {rule.id} ({rule.description}): "
                f"{_KIND_NAME[kind[0]]} {ident}" + (f" and {len(set(alive)) - 1} more" if len(set(alive)) > 1 else ""))


def _live_flags(run: Run) -> list[dict]:
    flag_out = []
    for rule, hit_g in run.flags:
        live = hit_g[~run.dead[hit_g]]
        if len(live):
            run.audit.record(rule.id, "flag_review", run.t, live, rule.description)
            flag_out.append({"rule": rule.id, "elements": int(len(live)), "description": rule.description})
    return flag_out


@dataclass
class _Offset:
    kept_rows: np.ndarray
    new_lon: np.ndarray
    new_lat: np.ndarray
    moved: np.ndarray
    copy_sel: np.ndarray


def _offset(run: Run, rules: RuleSet, provider: OffsetProvider) -> _Offset:
    """Every surviving point moved by the provider; metric copies of positions marked for removal."""
    t, audit, nn = run.t, run.audit, run.t.nn
    lon, lat = run.lon, run.lat
    keep_node = ~run.dead[:nn]
    if np.isnan(lon[keep_node]).any():
        raise DesensitizeError(f"{run.m.source}: points without a position (local-only map needs --origin)")
    new_lon, new_lat = provider.forward(lon[keep_node], lat[keep_node])
    moved = (new_lon != lon[keep_node]) | (new_lat != lat[keep_node])
    kept_rows = np.flatnonzero(keep_node)
    audit.record(OFFSET_RULE, "offset", t, kept_rows[moved],
                 f"moved by offset provider {provider.name} (certified={bool(provider.certified)})")
    if (~moved).any():
        audit.record(OFFSET_RULE, "offset", t, kept_rows[~moved],
                     f"outside the region of offset provider {provider.name}: not moved")
    copies = set(rules.position_copies)
    copy_sel = np.isin(t.tk, np.array(sorted(copies), dtype=object)) & (t.tg < nn)
    copy_sel &= keep_node[np.minimum(t.tg, nn - 1)] if nn else copy_sel
    for k in sorted(set(t.tk[copy_sel].tolist())):
        gs = np.unique(t.tg[copy_sel & (t.tk == k)])
        audit.record(OFFSET_RULE, "delete_tag", t, gs, f"removed metric copy of position {k!r}")
    return _Offset(kept_rows, new_lon, new_lat, moved, copy_sel)


def _rewrite(run: Run, rules: RuleSet, off: _Offset, member_dead, waynode_dead) -> bytes:
    """The output document: kept elements with offset positions, removed tags and references; top-level
    extras holding true coordinates dropped."""
    m, dead, del_tags, add_tags = run.m, run.dead, run.del_tags, run.add_tags
    nn, nw = run.t.nn, run.t.nw
    copies = set(rules.position_copies)
    lat_s, lon_s = _fmt(off.new_lat), _fmt(off.new_lon)
    node_xml = np.empty(len(off.kept_rows), dtype=object)
    for j, r in enumerate(off.kept_rows.tolist()):
        node_xml[j] = edit_element(m.node_xml[r], attrs={"lat": lat_s[j], "lon": lon_s[j]},
                                   drop_tags=copies | del_tags.get(r, set()), add_tags=add_tags.get(r))

    pos_way = m.way_of_position()
    way_changed = np.zeros(nw, bool)
    way_changed[pos_way[waynode_dead]] = True
    dead_ids = {
        "node": {str(i) for i in m.node_id[dead[:nn]].tolist()},
        "way": {str(i) for i in m.way_id[dead[nn:nn + nw]].tolist()},
        "relation": {str(i) for i in m.rel_id[dead[nn + nw:]].tolist()},
    }
    way_xml = m.way_xml.copy()
    for w in np.flatnonzero(~dead[nn:nn + nw]).tolist():
        g = nn + w
        if not way_changed[w] and g not in del_tags and g not in add_tags:
            continue
        way_xml[w] = edit_element(way_xml[w], drop_refs=dead_ids, drop_tags=del_tags.get(g, ()),
                                  add_tags=add_tags.get(g))
    owner = m.relation_of_member()
    rel_changed = np.zeros(m.n_relations, bool)
    rel_changed[owner[member_dead]] = True
    rel_xml = m.rel_xml.copy()
    for r in np.flatnonzero(~dead[nn + nw:]).tolist():
        g = nn + nw + r
        if not rel_changed[r] and g not in del_tags and g not in add_tags:
            continue
        rel_xml[r] = edit_element(rel_xml[r], drop_refs=dead_ids, drop_tags=del_tags.get(g, ()),
                                  add_tags=add_tags.get(g))

    extras = []
    for x in m.extras:
        head = x[: x.find(b">") + 1]
        if _POSITION_EXTRA.search(head):
            run.audit.note(OFFSET_RULE, "delete_element",
                           f"dropped <{head[1:].split()[0].decode(errors='replace')}> (it holds true coordinates)")
        else:
            extras.append(x)
    return osm_document(m.root_open, extras, node_xml, way_xml[~dead[nn:nn + nw]], rel_xml[~dead[nn + nw:]])


def _report(run: Run, rules: RuleSet, provider: OffsetProvider, off: _Offset, flag_out: list) -> dict:
    t, dead, nn, nw = run.t, run.dead, run.t.nn, run.t.nw
    removed = {name: int(dead[sl].sum()) for name, sl in
               (("points", slice(0, nn)), ("line_strings", slice(nn, nn + nw)), ("relations", slice(nn + nw, t.n)))}
    return {
        "offset": {**provider.describe(), "points_moved": int(off.moved.sum()),
                   "points_outside_region": int((~off.moved).sum())},
        "rules": rules.describe(),
        "matches": run.counts,
        "removed": removed,
        "removed_lanelets": int((dead[nn + nw:] & (t.cls[nn + nw:] == LANELET)).sum()),
        "flagged_for_review": flag_out,
        "restricted_areas": ({"polygons": int(len(run.restricted.polygons))} if run.restricted is not None
                             else None),
        "position_copies_dropped": sorted(set(t.tk[off.copy_sel].tolist())),
        "metric_attributes": "kept from the source (unshifted) geometry; never recomputed after offset",
    }
