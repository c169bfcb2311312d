"""The final scan of the tiles about to be published (SEC-16): read back every tile and look again.

It checks what leaves the producer, not the intermediate map: every tag of every element (free text
included) against every rule whose result must be absent, metric position copies, every point's
coordinates against the offset result, and (with the provider's inverse) geometry against the restricted
areas. Any finding stops publication.
"""
from __future__ import annotations

import numpy as np
import shapely

from desensitize.engine import AREA, LANELET, LINE, NODE, REGELEM, RELATION, Restricted, match_tags
from desensitize.errors import DesensitizeError
from desensitize.operations import CHECK_OPS
from desensitize.rules import RuleSet
from lanelets.errors import MapError
from lanelets.osm import read_osm

_REL_CLASS = {"lanelet": LANELET, "multipolygon": AREA, "regulatory_element": REGELEM}


def _parse_tiles(tiles, findings: list[str]):
    """Unique elements over all tiles: per element (kind, id) its class, tags, coords and way refs. Tiles are
    read by the project's one hardened reader; a tile it refuses is a finding (it cannot be checked)."""
    seen = {}
    node_pos = {}
    way_refs = {}
    where = {}
    for tile in tiles:
        try:
            m = read_osm(tile.data, name=f"tile {tile.id}", validate=False)
        except MapError as exc:
            findings.append(f"unreadable: {exc}")
            continue
        ids = {"node": m.node_id.astype(str).tolist(), "way": m.way_id.astype(str).tolist(),
               "relation": m.rel_id.astype(str).tolist()}
        lon, lat = m.node_lon.tolist(), m.node_lat.tolist()
        for kind, tags_of in (("node", m.node_tags), ("way", m.way_tags), ("relation", m.rel_tags)):
            for row, (eid, tags) in enumerate(zip(ids[kind], tags_of)):
                key = (kind, eid)
                if key in seen:
                    continue
                if kind == "node":
                    cls = NODE
                    node_pos[eid] = (lon[row], lat[row])
                elif kind == "way":
                    cls = LINE
                    refs = m.way_nodes[m.way_ptr[row]:m.way_ptr[row + 1]]
                    way_refs[eid] = [ids["node"][r] for r in refs.tolist() if r >= 0]
                else:
                    cls = _REL_CLASS.get(tags.get("type", ""), RELATION)
                seen[key] = (cls, tags)
                where[key] = tile.id
    return seen, node_pos, way_refs, where


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def scan_tiles(tiles, rules: RuleSet, *, expected_nodes=None, provider=None,
               restricted: Restricted | None = None) -> list[str]:
    """Findings (empty = clean). ``expected_nodes``: (ids, lon, lat) of the offset map."""
    findings = []
    seen, node_pos, way_refs, where = _parse_tiles(tiles, findings)
    keys = list(seen)
    cls = np.array([seen[k][0] for k in keys], np.int8)
    tg, tk, tv = [], [], []
    for g, k in enumerate(keys):
        for kk, vv in seen[k][1].items():
            tg.append(g)
            tk.append(kk)
            tv.append(vv)
    tg = np.array(tg, np.int64)
    tk = np.array(tk, dtype=object)
    tv = np.array(tv, dtype=object)

    def report(what, gs):
        for g in np.unique(gs)[:5].tolist():
            kind, eid = keys[g]
            findings.append(f"tile {where[keys[g]]}: {kind} {eid}: {what}")

    for rule in rules.rules:
        if not rule.removing or CHECK_OPS[rule.check["op"]].geometry:
            continue
        sel = match_tags(rule, tg, tk, tv, cls)
        if sel.any():
            report(f"still matches rule {rule.id} ({rule.description})", tg[sel])
    copies = np.isin(tk, np.array(rules.position_copies, dtype=object)) & (cls[tg] == NODE if len(tg) else False)
    if np.any(copies):
        report("carries a metric copy of its position", tg[copies])

    ids = np.array(list(node_pos), dtype=np.int64)
    lon = np.array([_num(v[0]) for v in node_pos.values()])
    lat = np.array([_num(v[1]) for v in node_pos.values()])
    bad = np.isnan(lon) | np.isnan(lat)
    if bad.any():
        findings.append(f"{int(bad.sum())} points have no readable lat/lon (e.g. node {ids[bad][0]})")
    if expected_nodes is not None and len(ids):
        e_ids, e_lon, e_lat = expected_nodes
        order = np.argsort(e_ids)
        pos = np.searchsorted(e_ids[order], ids)
        pos = np.minimum(pos, len(order) - 1)
        known = e_ids[order][pos] == ids
        if not known.all():
            findings.append(f"{int((~known).sum())} points in the tiles are not in the desensitised map "
                            f"(e.g. node {ids[~known][0]})")
        row = order[pos[known]]
        off = (e_lon[row] != lon[known]) | (e_lat[row] != lat[known])
        if off.any():
            findings.append(f"{int(off.sum())} points differ from their offset position "
                            f"(e.g. node {ids[known][off][0]})")
    if restricted is not None and provider is not None and len(ids):
        try:
            t_lon, t_lat = provider.inverse(lon, lat)
        except DesensitizeError:  # a provider without an inverse: the id checks above still hold
            return findings
        index = {i: j for j, i in enumerate(ids.tolist())}
        tree = shapely.STRtree(restricted.polygons)
        pts = shapely.points(t_lon, t_lat)
        hit, _ = tree.query(pts, predicate="intersects")
        if len(hit):
            findings.append(f"{len(np.unique(hit))} points lie in a restricted area (e.g. node {ids[hit[0]]})")
        lines, names = [], []
        for wid, refs in way_refs.items():
            rows = [index[r] for r in refs if r in index]
            if len(rows) >= 2:
                lines.append(shapely.linestrings(np.column_stack([t_lon[rows], t_lat[rows]])))
                names.append(wid)
        if lines:
            hit, _ = tree.query(np.array(lines, dtype=object), predicate="intersects")
            if len(hit):
                findings.append(f"{len(np.unique(hit))} line strings cross a restricted area "
                                f"(e.g. way {names[hit[0]]})")
    return findings


def require_clean(tiles, rules: RuleSet, **kw) -> None:
    findings = scan_tiles(tiles, rules, **kw)
    if findings:
        more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
        raise DesensitizeError(f"final scan: publication stopped: {findings[0]}{more}")
