"""Lane geometry and topology checks in the manner of Autoware's map validator, vectorised over all lanelets.

Thresholds and tables (widths per road class, regulatory-element member roles) are in
``standards/config/rules.yaml``.
"""
from __future__ import annotations

import numpy as np
import shapely

from lanelets.elements import element_members
from standards.registry import Hits, check

_KINDS = ("node", "way", "relation")


def _lanelet_hits(ctx, sel: np.ndarray, detail: list[str], checked: int) -> Hits:
    xy = ctx.lanelet_centroid[sel]
    return Hits("lanelet", ctx.m.rel_id[ctx.lanelet_rows[sel]], xy[:, 0], xy[:, 1], detail, checked=checked)


def _bound_geometry(ctx):
    """Per usable lanelet (index into lanelet_rows): signed ring area, bound lengths, bound directions."""
    if "_bounds" in ctx.__dict__:
        return ctx.__dict__["_bounds"]
    m = ctx.m
    ok = np.flatnonzero(ctx.lanelet_ok)
    L, R = ctx.lanelet_left[ok], ctx.lanelet_right[ok]
    ptr, wxy = m.way_ptr, ctx.way_xy
    nl, nr = ptr[L + 1] - ptr[L], ptr[R + 1] - ptr[R]
    ls, le, rs, re_ = ctx.way_end(L, False), ctx.way_end(L, True), ctx.way_end(R, False), ctx.way_end(R, True)
    dist = lambda a, b: np.hypot(*(a - b).T)  # noqa: E731
    # Lanelet2's loader inverts a bound stored against the lanelet's direction (left bound = direction):
    # the right bound is reversed when start-to-end pairing is shorter than start-to-start.
    back = dist(ls, re_) + dist(le, rs) < dist(ls, rs) + dist(le, re_)
    # Ring = left bound forward then the (aligned) right bound backward; one fancy index for all lanelets.
    tot = nl + nr
    seg = np.repeat(np.arange(len(ok)), tot)
    within = np.arange(tot.sum()) - np.repeat(np.cumsum(tot) - tot, tot)
    on_left = within < np.repeat(nl, tot)
    k = within - np.repeat(nl, tot)
    right_pos = np.where(np.repeat(back, tot), np.repeat(ptr[R], tot) + k, np.repeat(ptr[R + 1] - 1, tot) - k)
    pos = np.where(on_left, np.repeat(ptr[L], tot) + within, right_pos)
    ring = wxy[pos]
    nxt = np.roll(np.arange(len(ring)), -1)
    nxt[np.cumsum(tot) - 1] = np.cumsum(tot) - tot  # close each ring on its own first vertex
    cross = ring[:, 0] * ring[nxt, 1] - ring[nxt, 0] * ring[:, 1]
    area = 0.5 * np.bincount(seg, weights=np.nan_to_num(cross), minlength=len(ok))
    g = ctx.way_geoms
    len_l, len_r = shapely.length(g[L].astype(object)), shapely.length(g[R].astype(object))
    out = {"ok": ok, "L": L, "R": R, "area": area, "ring": ring, "seg": seg, "len_l": len_l, "len_r": len_r, "back": back}
    ctx.__dict__["_bounds"] = out
    return out


def aligned_sections(ctx):
    """Start and end cross-sections (left point, right point) of every usable lanelet after Lanelet2's
    ``geometry::align``: the left bound is inverted when it lies right of the right bound, and the right
    bound is inverted when it then runs against the left (stored way direction carries no meaning)."""
    b = _bound_geometry(ctx)
    L, R = b["L"], b["R"]
    inv_l = b["area"] > 0
    inv_r = inv_l ^ b["back"]
    ls, le = ctx.way_end_node(L, False), ctx.way_end_node(L, True)
    rs, re_ = ctx.way_end_node(R, False), ctx.way_end_node(R, True)
    start = np.column_stack([np.where(inv_l, le, ls), np.where(inv_r, re_, rs)])
    end = np.column_stack([np.where(inv_l, ls, le), np.where(inv_r, rs, re_)])
    return b["ok"], np.sort(start, axis=1), np.sort(end, axis=1)


@check("autoware.bounds_direction", element="logical_consistency", severity="B",
       description="A one-way lanelet runs backwards: it meets another head-on (both end, or both start, on "
                   "the same cross-section and no lanelet continues from it).")
def bounds_direction(ctx) -> Hits:
    ok, start, end = aligned_sections(ctx)
    rows = ctx.lanelet_rows[ok]
    sub = ctx.rel_subtype[rows]
    one_way = np.array([ctx.m.rel_tags[r].get("one_way", "yes") != "no" for r in rows.tolist()], bool)
    dirn = one_way & np.isin(sub, ctx.rules["vehicle_subtypes"])
    both = np.vstack([start, end])
    keys, inv = np.unique(both, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    n = len(ok)
    s_key, e_key = inv[:n], inv[n:]
    n_start = np.bincount(s_key[dirn], minlength=len(keys))
    n_end = np.bincount(e_key[dirn], minlength=len(keys))
    all_start = np.bincount(s_key, minlength=len(keys))
    all_end = np.bincount(e_key, minlength=len(keys))
    head_on = dirn & (n_end[e_key] >= 2) & (all_start[e_key] == 0)
    tail_on = dirn & (n_start[s_key] >= 2) & (all_end[s_key] == 0)
    bad = head_on | tail_on
    detail = np.where(head_on[bad], "ends head-on with another one-way lanelet",
                      "starts tail-to-tail with another one-way lanelet")
    return _lanelet_hits(ctx, ok[bad], detail.tolist(), int(dirn.sum()))


@check("autoware.bounds_crossing", element="logical_consistency", severity="B",
       description="The left and right bounds of a lanelet cross each other.")
def bounds_crossing(ctx) -> Hits:
    b = _bound_geometry(ctx)
    g = ctx.way_geoms
    bad = shapely.crosses(g[b["L"]].astype(object), g[b["R"]].astype(object))
    sel = b["ok"][bad]
    return _lanelet_hits(ctx, sel, ["left and right bounds cross"] * len(sel), len(b["ok"]))


@check("autoware.lane_width", element="logical_consistency", severity="C",
       description="The mean lane width (area / centreline length) is outside the range set for its road class.")
def lane_width(ctx) -> Hits:
    b = _bound_geometry(ctx)
    length = (b["len_l"] + b["len_r"]) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        width = np.abs(b["area"]) / length
    sub = ctx.rel_subtype[ctx.lanelet_rows[b["ok"]]]
    table = ctx.rules["lane_width_m"]
    lo = np.array([table.get(s, table["*"])[0] for s in sub.tolist()], float)
    hi = np.array([table.get(s, table["*"])[1] for s in sub.tolist()], float)
    bad = (width < lo) | (width > hi) | ~np.isfinite(width)
    idx = np.flatnonzero(bad)
    return _lanelet_hits(ctx, b["ok"][idx],
                         [f"{s or 'no subtype'}: mean width {w:.2f} m outside [{a}, {c}] m"
                          for s, w, a, c in zip(sub[idx].tolist(), width[idx].tolist(), lo[idx].tolist(),
                                                hi[idx].tolist())], len(b["ok"]))


@check("autoware.successor_gap", element="logical_consistency", severity="C",
       description="A lanelet and the lanelet that continues it leave a gap or overlap of more than 0.1 m.")
def successor_gap(ctx) -> Hits:
    cfg = ctx.rules["geometry"]
    b = _bound_geometry(ctx)
    L, R, ok = b["L"], b["R"], b["ok"]
    if not len(ok):
        return Hits.none()
    end_l, end_r = ctx.way_end(L, True), ctx.way_end(R, True)
    start_l, start_r = ctx.way_end(L, False), ctx.way_end(R, False)
    end_nl, end_nr = ctx.way_end_node(L, True), ctx.way_end_node(R, True)
    st_nl, st_nr = ctx.way_end_node(L, False), ctx.way_end_node(R, False)
    ptr = ctx.m.way_ptr
    end_dir = ctx.way_xy[ptr[L + 1] - 1] - ctx.way_xy[ptr[L + 1] - 2]
    start_dir = ctx.way_xy[ptr[L] + 1] - ctx.way_xy[ptr[L]]
    end_mid, start_mid = (end_l + end_r) / 2, (start_l + start_r) / 2
    tree = shapely.STRtree(shapely.points(start_mid))
    a, c = tree.query(shapely.points(end_mid), predicate="dwithin", distance=cfg["successor_search_m"])
    keep = a != c
    a, c = a[keep], c[keep]
    dl = np.hypot(*(end_l[a] - start_l[c]).T)
    dr = np.hypot(*(end_r[a] - start_r[c]).T)
    cos = (end_dir[a] * start_dir[c]).sum(axis=1) / (np.hypot(*end_dir[a].T) * np.hypot(*start_dir[c].T))
    near = (dl < cfg["successor_search_m"]) & (dr < cfg["successor_search_m"]) & \
        (cos > np.cos(np.radians(cfg["successor_max_angle_deg"])))
    gap = np.maximum(np.where(end_nl[a] == st_nl[c], 0.0, dl), np.where(end_nr[a] == st_nr[c], 0.0, dr))
    bad = near & (gap > cfg["successor_gap_m"])
    a, c, gap = a[bad], c[bad], gap[bad]
    along = ((start_mid[c] - end_mid[a]) * end_dir[a]).sum(axis=1)
    ids = ctx.m.rel_id[ctx.lanelet_rows[ok[c]]]
    detail = [f"{'overlap' if s < 0 else 'gap'} of {g:.2f} m to lanelet {i}"
              for s, g, i in zip(along.tolist(), gap.tolist(), ids.tolist())]
    return _lanelet_hits(ctx, ok[a], detail, len(ok))


def _member_ids(ctx, rows: np.ndarray) -> dict[int, list[tuple[str, int, str]]]:
    """(kind, ref, role) of the members of a few relations, read from their verbatim XML (only relations with
    a missing member: the array model keeps no id for a member that does not exist)."""
    out = {}
    for r in rows.tolist():
        out[r] = [(kind, int(ref), role) for kind, ref, role in element_members(ctx.m.rel_xml[r])]
    return out


def _type_of_members(ctx) -> np.ndarray:
    """The ``type`` tag of each relation member (node, way or relation), '' if none or missing."""
    m = ctx.m
    out = np.full(len(m.rel_member_row), "", dtype=object)
    kind, row = m.rel_member_kind, m.rel_member_row
    w = (kind == 1) & (row >= 0)
    out[w] = ctx.way_type[row[w]]
    r = (kind == 2) & (row >= 0)
    out[r] = ctx.rel_type[row[r]]
    n = (kind == 0) & (row >= 0)
    if n.any():
        prow, pkey, pval = ctx.node_tags
        node_type = np.full(m.n_nodes, "", dtype=object)
        t = pkey == "type"
        node_type[prow[t]] = pval[t]
        out[n] = node_type[row[n]]
    return out


@check("general.dangling_references", element="logical_consistency", severity="B",
       description="A line string or relation refers to a point, line string or relation that is not in the map.")
def dangling_references(ctx) -> Hits:
    m = ctx.m
    kind, ids, detail, xy = [], [], [], []
    bad_w = np.unique(m.way_of_position()[m.way_nodes < 0])
    for w in bad_w.tolist():
        kind.append("line_string")
        ids.append(int(m.way_id[w]))
        detail.append("refers to a missing point")
        xy.append(ctx.way_centroid[w])
    bad_r = np.unique(ctx.member_owner[m.rel_member_row < 0])
    members = _member_ids(ctx, bad_r)
    for r in bad_r.tolist():
        mk, mr = m.rel_member_kind[m.rel_ptr[r]:m.rel_ptr[r + 1]], m.rel_member_row[m.rel_ptr[r]:m.rel_ptr[r + 1]]
        for j in np.flatnonzero(mr < 0).tolist():
            k, ref, role = members[r][j]
            kind.append(_rel_kind(ctx.rel_type[r]))
            ids.append(int(m.rel_id[r]))
            detail.append(f"member {role or '(no role)'} refers to missing {_KINDS[mk[j]]} {ref}")
            xy.append(ctx.relation_centroid[r])
    xy = np.array(xy, float).reshape(-1, 2)
    return Hits(np.array(kind, dtype=object), ids, xy[:, 0], xy[:, 1], detail,
                checked=m.n_ways + m.n_relations)


def _rel_kind(t: str) -> str:
    return {"lanelet": "lanelet", "multipolygon": "area", "regulatory_element": "regulatory_element"}.get(t, "relation")


@check("autoware.regulatory_element_members", element="logical_consistency", severity="B",
       description="A regulatory element lacks a required member, or a member has the wrong kind or type.")
def regulatory_element_members(ctx) -> Hits:
    m = ctx.m
    table = ctx.rules["regulatory_elements"]
    is_re = ctx.rel_type == "regulatory_element"
    owner = ctx.member_owner
    mtype = _type_of_members(ctx)
    sub_of_member = ctx.rel_subtype[owner]
    role = ctx.member_role
    kind_name = np.array(_KINDS, dtype=object)[m.rel_member_kind.astype(int)] if len(owner) else np.zeros(0, object)
    bad_member = np.zeros(len(owner), bool)
    reason = np.full(len(owner), "", dtype=object)
    rows, details = [], []
    for sub, roles in table.items():
        sel = is_re[owner] & (sub_of_member == sub) & (m.rel_member_row >= 0)
        known_role = np.isin(role, list(roles))
        unexpected = sel & ~known_role
        bad_member |= unexpected
        reason[unexpected] = "unexpected role"
        for rname, spec in roles.items():
            rs = sel & (role == rname)
            wrong_kind = rs & ~np.isin(kind_name, spec["kind"])
            types = spec.get("types") or []
            wrong_type = rs & ~wrong_kind & (~np.isin(mtype, types) if types else False)
            bad_member |= wrong_kind | wrong_type
            reason[wrong_kind] = f"{rname} must be a {' or '.join(spec['kind'])}"
            if types:
                reason[wrong_type] = f"{rname} must have type {' or '.join(types)}"
            if spec.get("required"):
                have = np.zeros(m.n_relations, bool)
                have[owner[rs]] = True
                missing = np.flatnonzero(is_re & (ctx.rel_subtype == sub) & ~have)
                rows.extend(missing.tolist())
                details.extend([f"{sub}: no {rname} member"] * len(missing))
    idx = np.flatnonzero(bad_member)
    for j in idx.tolist():
        rows.append(int(owner[j]))
        details.append(f"{sub_of_member[j]}: member {_KINDS[m.rel_member_kind[j]]} "
                       f"{_member_id(ctx, j)} ({role[j] or 'no role'}, type {mtype[j] or 'none'}): {reason[j]}")
    rows = np.array(rows, np.int64)
    xy = ctx.relation_centroid[rows] if len(rows) else np.zeros((0, 2))
    return Hits("regulatory_element", m.rel_id[rows], xy[:, 0], xy[:, 1], details, checked=int(is_re.sum()))


def _member_id(ctx, j: int) -> int:
    m = ctx.m
    arr = (m.node_id, m.way_id, m.rel_id)[m.rel_member_kind[j]]
    return int(arr[m.rel_member_row[j]])


@check("autoware.traffic_light_stop_line", element="logical_consistency", severity="B",
       description="A traffic light regulatory element has no stop line (ref_line).")
def traffic_light_stop_line(ctx) -> Hits:
    m = ctx.m
    is_tl = (ctx.rel_type == "regulatory_element") & (ctx.rel_subtype == "traffic_light")
    has = np.zeros(m.n_relations, bool)
    sel = np.isin(ctx.member_role, ctx.rules["traffic_light_stop_line_roles"]) & (m.rel_member_row >= 0)
    has[ctx.member_owner[sel]] = True
    rows = np.flatnonzero(is_tl & ~has)
    xy = ctx.relation_centroid[rows]
    return Hits("regulatory_element", m.rel_id[rows], xy[:, 0], xy[:, 1], ["no stop line"] * len(rows),
                checked=int(is_tl.sum()))


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component labels of an undirected graph by min-label propagation with pointer jumping."""
    labels = np.arange(n)
    while True:
        new = labels.copy()
        np.minimum.at(new, a, labels[b])
        np.minimum.at(new, b, labels[a])
        new = new[new]
        if np.array_equal(new, labels):
            return labels
        labels = new


@check("autoware.unreachable_lanelets", element="logical_consistency", severity="D",
       description="A vehicle lanelet is not connected, in Lanelet2's routing graph, to the main road network.")
def unreachable_lanelets(ctx) -> Hits:
    lmap = ctx.routing_map
    graph = ctx.routing_graph
    vehicle = set(ctx.rules["vehicle_subtypes"])
    ids, a, b = [], [], []
    for ll in lmap.laneletLayer:  # one routing-graph query per lanelet (not per point)
        ids.append(ll.id)
        for nxt in graph.following(ll, True):
            a.append(ll.id)
            b.append(nxt.id)
    ids = np.array(ids, np.int64)
    order = np.argsort(ids)
    sid = ids[order]
    sub = ctx.rel_subtype
    rel_order = np.argsort(ctx.m.rel_id)
    rel_row = rel_order[np.searchsorted(ctx.m.rel_id[rel_order], sid)]
    is_vehicle = np.isin(sub[rel_row], list(vehicle))
    ai = np.searchsorted(sid, np.array(a, np.int64))
    bi = np.searchsorted(sid, np.array(b, np.int64))
    lab = components(len(sid), ai, bi)
    if not is_vehicle.any():
        return Hits.none()
    sizes = np.bincount(lab[is_vehicle], minlength=len(sid))
    main = int(np.argmax(sizes))
    bad = is_vehicle & (lab != main)
    rows = rel_row[bad]
    xy = ctx.relation_centroid[rows]
    n_comp = len(np.unique(lab[is_vehicle]))
    detail = [f"in a routing component of {s} lanelet(s), apart from the main one of {sizes[main]} "
              f"({n_comp} components)" for s in sizes[lab[bad]].tolist()]
    return Hits("lanelet", sid[bad], xy[:, 0], xy[:, 1], detail, checked=int(is_vehicle.sum()))


def lanelet_polygons(ctx) -> tuple[np.ndarray, np.ndarray]:
    """(index into lanelet_rows, valid shapely polygon) of every usable lanelet, built in one call."""
    b = _bound_geometry(ctx)
    if not len(b["ok"]):
        return b["ok"], np.zeros(0, dtype=object)
    rings = shapely.linearrings(b["ring"], indices=b["seg"])
    return b["ok"], shapely.make_valid(shapely.polygons(rings))
