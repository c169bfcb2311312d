"""Lanelet2's own validators (lanelet2_validation 1.2.3), which the Python wheel lacks, re-done on arrays.

Semantics follow the C++ sources (``src/validators/*.cpp``) so counts compare one to one: one issue per
lanelet bound vertex for curvature, one per point for close points, one per line string for duplicates,
one per tag for the tag checks. Tag tables are data: ``standards/config/lanelet2_schema.yaml``.
"""
from __future__ import annotations

import re

import numpy as np
import shapely

from standards.registry import Hits, check

_PRIMITIVE = re.compile(r"primitive (-?\d+)")
KIND_POINT, KIND_LS, KIND_POLY, KIND_LL, KIND_AREA, KIND_RE = (
    "point", "line_string", "polygon", "lanelet", "area", "regulatory_element")


@check("general.parser_errors", element="logical_consistency", severity="C",
       description="Errors Lanelet2's loader reports (unknown regulatory elements, broken references).")
def parser_errors(ctx) -> Hits:
    _lmap, errors = ctx.lanelet2
    errors = [e.strip().lstrip("- ").strip() for e in errors if not e.startswith("Errors ocurred")]
    ids = np.array([int(mt.group(1)) if (mt := _PRIMITIVE.search(e)) else 0 for e in errors], np.int64)
    m = ctx.m
    order = np.argsort(m.rel_id)
    pos = np.minimum(np.searchsorted(m.rel_id[order], ids), max(len(order) - 1, 0))
    xy = np.full((len(ids), 2), np.nan)
    if len(order):
        found = m.rel_id[order][pos] == ids
        xy[found] = ctx.relation_centroid[order[pos[found]]]
    return Hits("relation", ids, xy[:, 0], xy[:, 1], errors, checked=max(1, m.n_relations))


@check("mapping.duplicated_points", element="logical_consistency", severity="B",
       description="A line string or polygon holds the same point twice in succession.")
def duplicated_points(ctx) -> Hits:
    m = ctx.m
    owner = m.way_of_position()
    same = (m.way_nodes[1:] == m.way_nodes[:-1]) & (owner[1:] == owner[:-1]) & (m.way_nodes[1:] >= 0)
    pos = np.flatnonzero(same)
    ways, first = np.unique(owner[pos], return_index=True)  # one issue per way (Lanelet2 stops at the first)
    node = m.way_nodes[pos[first]]
    kind = np.where(ctx.way_is_polygon[ways], KIND_POLY, KIND_LS).astype(object)
    return Hits(kind, m.way_id[ways], ctx.xy[node, 0], ctx.xy[node, 1],
                [f"point {i} twice in succession" for i in m.node_id[node].tolist()], checked=m.n_ways)


@check("mapping.points_too_close", element="logical_consistency", severity="D",
       description="A point's nearest other point is closer than 5 cm.")
def points_too_close(ctx) -> Hits:
    limit = ctx.rules["geometry"]["close_points_m"]
    xy, z = ctx.xy, ctx.z
    ok = np.flatnonzero(~np.isnan(xy).any(axis=1))
    pts = shapely.points(xy[ok])
    i, j = shapely.STRtree(pts).query(pts, predicate="dwithin", distance=limit)
    keep = i != j
    i, j = ok[i[keep]], ok[j[keep]]
    if not len(i):
        return Hits.none(checked=len(ok))
    d2 = ((xy[i] - xy[j]) ** 2).sum(axis=1)
    # Lanelet2 takes the 2D nearest other point, then tests the 3D distance.
    order = np.lexsort((d2, i))
    i, j = i[order], j[order]
    first = np.r_[True, i[1:] != i[:-1]]
    i, j = i[first], j[first]
    dz = (z[i] - z[j]) if ctx.rules["geometry"].get("close_points_3d") else 0.0
    d3 = np.sqrt(((xy[i] - xy[j]) ** 2).sum(axis=1) + dz ** 2)
    hit = d3 < limit
    i, j = i[hit], j[hit]
    ids = ctx.m.node_id
    return Hits(KIND_POINT, ids[i], xy[i, 0], xy[i, 1],
                [f"{d * 100:.1f} cm from point {o}" for d, o in zip(d3[hit].tolist(), ids[j].tolist())],
                checked=len(ok))


def vertex_curvature(ctx) -> np.ndarray:
    """Menger curvature (4 * triangle area / product of sides, as lanelet2::geometry::curvature2d) at every
    interior vertex of every way, over the CSR arrays at once; inf for a degenerate triple, NaN at ends."""
    m, xy = ctx.m, ctx.way_xy
    owner = m.way_of_position()
    k = np.full(len(xy), np.nan)
    if len(xy) < 3:
        return k
    p1, p2, p3 = xy[:-2], xy[1:-1], xy[2:]
    interior = (owner[:-2] == owner[1:-1]) & (owner[2:] == owner[1:-1])
    area = 0.5 * ((p2[:, 0] - p1[:, 0]) * (p3[:, 1] - p1[:, 1]) - (p2[:, 1] - p1[:, 1]) * (p3[:, 0] - p1[:, 0]))
    prod = np.hypot(*(p2 - p1).T) * np.hypot(*(p3 - p1).T) * np.hypot(*(p3 - p2).T)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(prod < 1e-20, np.inf, np.abs(4 * area / prod))
    k[1:-1] = np.where(interior, c, np.nan)
    return k


@check("mapping.curvature_too_big", element="logical_consistency", severity="D",
       description="A lanelet bound bends more sharply than 0.5 1/m (radius under 2 m) at a point.")
def curvature_too_big(ctx) -> Hits:
    limit = ctx.rules["geometry"]["max_curvature"]
    m = ctx.m
    k = vertex_curvature(ctx)
    bad_pos = np.flatnonzero(k > limit)
    owner = m.way_of_position()
    # Per lanelet: its left and right bound (Lanelet2 checks both bounds of each lanelet, shared or not).
    rows, ways = [], []
    for bound in (ctx.lanelet_left, ctx.lanelet_right):
        sel = bound >= 0
        rows.append(ctx.lanelet_rows[sel])
        ways.append(bound[sel])
    ll_row, ll_way = np.concatenate(rows), np.concatenate(ways)
    # Join lanelet bounds to flagged vertices by way row: sort both by way, expand with repeat.
    bad_way = owner[bad_pos]
    order = np.argsort(bad_way, kind="stable")
    bad_way, bad_pos = bad_way[order], bad_pos[order]
    lo = np.searchsorted(bad_way, ll_way, side="left")
    hi = np.searchsorted(bad_way, ll_way, side="right")
    n = hi - lo
    rep_row = np.repeat(ll_row, n)
    idx = np.repeat(lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    pos = bad_pos[idx]
    node = m.way_nodes[pos]
    return Hits(KIND_LL, m.rel_id[rep_row], ctx.way_xy[pos, 0], ctx.way_xy[pos, 1],
                [f"at point {p}: {c:.2f} 1/m" for p, c in zip(m.node_id[node].tolist(), k[pos].tolist())],
                checked=int(len(ll_row)))


def _elements(ctx):
    """(kind, id, tags) of line strings, lanelets, areas and regulatory elements (as Lanelet2's layers)."""
    m = ctx.m
    out = []
    for w in np.flatnonzero(~ctx.way_is_polygon).tolist():
        out.append((KIND_LS, w, m.way_tags[w]))
    kinds = {"lanelet": KIND_LL, "multipolygon": KIND_AREA, "regulatory_element": KIND_RE}
    for r, t in enumerate(ctx.rel_type.tolist()):
        if t in kinds:
            out.append((kinds[t], r, m.rel_tags[r]))
    return out


def _tag_table(ctx):
    """Flat arrays over all tags of non-point elements: kind, row, key, value; plus per-element lists."""
    els = _elements(ctx)
    kind, row, key, val = [], [], [], []
    for k, r, tags in els:  # per element, not per point: tags live in dicts on OsmMap
        for kk, vv in tags.items():
            kind.append(k)
            row.append(r)
            key.append(kk)
            val.append(vv)
    return els, np.array(kind, dtype=object), np.array(row, np.int64), np.array(key, dtype=object), \
        np.array(val, dtype=object)


def _prefix_known(keys: np.ndarray, prefixes: list[str]) -> np.ndarray:
    if not len(keys):
        return np.zeros(0, bool)
    s = keys.astype(str)
    ok = np.zeros(len(s), bool)
    for p in prefixes:
        ok |= np.char.startswith(s, p)
    return ok


def _place(ctx, kind: np.ndarray, row: np.ndarray) -> np.ndarray:
    xy = np.full((len(row), 2), np.nan)
    w = np.isin(kind, [KIND_LS, KIND_POLY])
    xy[w] = ctx.way_centroid[row[w]]
    r = np.isin(kind, [KIND_LL, KIND_AREA, KIND_RE])
    xy[r] = ctx.relation_centroid[row[r]]
    p = kind == KIND_POINT
    xy[p] = ctx.xy[row[p]]
    return xy


def _ids(ctx, kind: np.ndarray, row: np.ndarray) -> np.ndarray:
    ids = np.zeros(len(row), np.int64)
    w = np.isin(kind, [KIND_LS, KIND_POLY])
    ids[w] = ctx.m.way_id[row[w]]
    r = np.isin(kind, [KIND_LL, KIND_AREA, KIND_RE])
    ids[r] = ctx.m.rel_id[row[r]]
    p = kind == KIND_POINT
    ids[p] = ctx.m.node_id[row[p]]
    return ids


def _all_tags(ctx):
    if "_all_tags" not in ctx.__dict__:
        els, kind, row, key, val = _tag_table(ctx)
        prow, pkey, pval = ctx.node_tags
        ctx.__dict__["_all_tags"] = (
            els,
            np.concatenate([np.full(len(prow), KIND_POINT, dtype=object), kind]),
            np.concatenate([prow, row]), np.concatenate([pkey, key]), np.concatenate([pval, val]))
    return ctx.__dict__["_all_tags"]


def _hits(ctx, kind, row, detail, checked) -> Hits:
    xy = _place(ctx, kind, row)
    return Hits(kind, _ids(ctx, kind, row), xy[:, 0], xy[:, 1], detail, checked=checked)


@check("mapping.unknown_tags", element="attribute_accuracy", severity="info",
       description="A tag that is not a known Lanelet2 tag (reported as information).")
def unknown_tags(ctx) -> Hits:
    els, kind, row, key, val = _all_tags(ctx)
    bad = np.zeros(len(key), bool)
    for k, prefixes in ctx.schema["known_tags"].items():
        sel = kind == k
        bad[sel] = ~_prefix_known(key[sel], prefixes)
    idx = np.flatnonzero(bad)
    return _hits(ctx, kind[idx], row[idx], [f"tag {k}" for k in key[idx].tolist()], len(key))


@check("mapping.unknown_tag_value", element="attribute_accuracy", severity="D",
       description="A tag value Lanelet2 does not know (type, subtype, location).")
def unknown_tag_value(ctx) -> Hits:
    els, kind, row, key, val = _all_tags(ctx)
    bad = np.zeros(len(key), bool)
    for k, table in ctx.schema["known_values"].items():
        for tag, values in table.items():
            sel = (kind == k) & (key == tag)
            bad[sel] = ~np.isin(val[sel].astype(str), values)
    idx = np.flatnonzero(bad)
    return _hits(ctx, kind[idx], row[idx],
                 [f"{k}={v}" for k, v in zip(key[idx].tolist(), val[idx].tolist())], len(key))


@check("mapping.mandatory_tags", element="attribute_accuracy", severity="C",
       description="An element lacks a tag Lanelet2 requires (type; subtype and location on lanelets and areas).")
def mandatory_tags(ctx) -> Hits:
    els = _all_tags(ctx)[0]
    req = ctx.schema["mandatory_tags"]
    kind, row, detail = [], [], []
    for k, r, tags in els:
        for tag in req.get(k, ()):
            if tag not in tags:
                kind.append(k)
                row.append(r)
                detail.append(f"no {tag}")
    return _hits(ctx, np.array(kind, dtype=object), np.array(row, np.int64), detail, len(els))


@check("mapping.bool_tags", element="attribute_accuracy", severity="D",
       description="A boolean tag (one_way, lane_change, participant, ...) whose value is not a boolean.")
def bool_tags(ctx) -> Hits:
    els, kind, row, key, val = _all_tags(ctx)
    sel = (kind != KIND_POINT) & _prefix_known(key, ctx.schema["bool_tags"])
    bad = sel & ~np.isin(val.astype(str), ctx.schema["bool_values"])
    idx = np.flatnonzero(bad)
    return _hits(ctx, kind[idx], row[idx],
                 [f"{k}={v}" for k, v in zip(key[idx].tolist(), val[idx].tolist())], int(sel.sum()))


@check("routing_graph.is_valid", element="logical_consistency", severity="B",
       description="Lanelet2's RoutingGraph.checkValidity finds the routing graph inconsistent.")
def routing_graph_valid(ctx) -> Hits:
    errors = [str(e) for e in ctx.routing_graph.checkValidity(False)]
    return Hits("map", np.zeros(len(errors), np.int64), np.nan, np.nan, errors, checked=len(ctx.lanelet_rows))
