"""Build a Lanelet2 HD map from survey input that GDAL reads (GeoPackage / GeoJSON).

Input schema: docs/survey-input.md. In short: `roads` centre lines with lane counts, lane width, speed
limit and road class; optional `lane_boundaries` (surveyed lines with line types) and `junctions`.

How the map is made:
 * all geometry is projected once (pyproj, whole arrays) into the UTM zone of the origin, as Lanelet2's
   UtmProjector does, and worked in metres (lane boundaries are shapely 2 offset curves, never degrees);
 * road ends within SNAP metres form a node; a node is a *continuation* (2 matching ends: the lanelets
   share their end points, so the routing graph links them), a *ramp join* (a one-way ramp attaching to
   the outer lanes of a through road: merge or diverge), or a *junction* (roads set back, turning
   lanelets connect approach lanes to exit lanes; traffic lights with stop lines when signalled);
 * neighbouring lanes share one bound LineString (inverted for the opposite direction); line types come
   from LINE_STYLE (survey_lanelets); lanelets are cut every MAX_LANELET_M metres.
Output is written atomically (lanelets.files.atomic_path).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import lanelet2
import lanelet2.io
import lanelet2.projection
import numpy as np
import shapely
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info

from lanelets.errors import MapError
from lanelets.files import atomic_path
from lanelets.projection import transformer, utm_epsg
from lanelets.survey_geom import cumlen, cut, direction_at, point_at, shift_end
from lanelets.survey_lanelets import _Builder, _build_junctions, _build_merges, _build_roads
from lanelets.survey_read import RAMP_CLASSES, read_survey

SNAP_M = 1.0             # road ends closer than this are one node
JUNCTION_SNAP_M = 15.0   # a `junctions` point marks the nearest node within this distance
JUNCTION_MARGIN_M = 6.0  # stop line this far outside the widest crossing carriageway: room for a crosswalk, and
                         # turning lanes wide enough to drive (curvature <= 0.5 1/m, as the checks require)
RAMP_FADE_M = 120.0      # a ramp's centre line is led onto the target lanes over this length
MAX_LANELET_M = 100.0    # lanelets are cut at most this long




@dataclass
class Road:
    i: int
    fid: int
    rid: str
    name: str
    lf: int
    lb: int
    width: float
    speed: float
    cls: str
    xy: np.ndarray
    signal: tuple[bool, bool]
    surveyed: list | None = None          # [(xy, tags)] left -> right, digitising direction
    node: list = field(default_factory=lambda: [None, None])
    setback: list = field(default_factory=lambda: [0.0, 0.0])
    shift: list = field(default_factory=lambda: [None, None])

    @property
    def n(self) -> int:
        return self.lf + self.lb

    def offsets(self) -> np.ndarray:
        """Left-positive offsets of the boundaries 0..n from the centre line (metres).

        Two-way: the centre line is the line between the directions; one-way: the carriageway's middle."""
        j = np.arange(self.n + 1, dtype=float)
        base = self.lb if self.lb else self.lf / 2.0
        return (base - j) * self.width

    def into(self, e: int) -> list[int]:
        """Boundary indices left -> right as seen travelling towards end e (0 start, 1 end)."""
        return list(range(self.n + 1)) if e else list(range(self.n, -1, -1))

    def entering(self, e: int) -> int:
        return self.lf if e else self.lb

    def leaving(self, e: int) -> int:
        return self.lb if e else self.lf

    def entering_bounds(self, e: int) -> list[int]:
        return self.into(e)[self.leaving(e):]

    def leaving_bounds(self, e: int) -> list[int]:
        return self.into(e)[self.leaving(e)::-1]


def _fail(path, msg):
    raise MapError(f"{path}: {msg}")


def _choose_utm(path, bounds, origin) -> int:
    """UTM CRS of the data, from pyproj's CRS database; the origin's zone, as Lanelet2's UtmProjector uses it."""
    lat0, lon0 = origin
    w, s, e, n = bounds
    aoi = AreaOfInterest(min(w, lon0), min(s, lat0), max(e, lon0), max(n, lat0))
    codes = {int(c.code) for c in query_utm_crs_info(datum_name="WGS 84", area_of_interest=aoi)
             if c.auth_name == "EPSG"}
    want = utm_epsg(lat0, lon0)
    if want not in codes:
        _fail(path, f"no WGS 84 UTM zone found for origin {lat0},{lon0}")
    return want


def _roads(path, layers, to_local) -> list[Road]:
    lyr = layers["roads"]
    xy_all, idx = shapely.get_coordinates(lyr.geoms, return_index=True)
    loc = to_local(xy_all)
    roads = []
    for i, (fid, row) in enumerate(zip(lyr.fids, lyr.rows)):
        lf = row["lanes_forward"]
        one_way = row.get("one_way")
        lb = row.get("lanes_backward")
        if lb is None:
            lb = 0 if one_way else lf
        elif one_way and lb:
            _fail(path, f"layer roads feature {fid}: one_way is true but lanes_backward={lb}")
        if lf + lb < 1:
            _fail(path, f"layer roads feature {fid}: no lanes (lanes_forward + lanes_backward = 0)")
        xy = loc[idx == i]
        keep = np.concatenate([[True], np.hypot(*np.diff(xy, axis=0).T) > 1e-3])  # drop repeated vertices
        xy = xy[keep]
        if len(xy) < 2 or cumlen(xy)[-1] < 2.0:
            _fail(path, f"layer roads feature {fid}: centre line shorter than 2 m")
        roads.append(Road(i, fid, row.get("id") or str(fid), row.get("name") or "", lf, lb,
                          row["lane_width"], row["speed_limit"], row["road_class"], xy,
                          (bool(row["signal_start"]), bool(row["signal_end"]))))
    ids = [r.rid for r in roads]
    dup = {x for x in ids if ids.count(x) > 1}
    if dup:
        _fail(path, f"layer roads: duplicate id {sorted(dup)[0]!r}")
    return roads


def _attach_boundaries(path, layers, roads, to_local):
    lyr = layers["lane_boundaries"]
    if lyr is None:
        return
    by_id = {r.rid: r for r in roads}
    xy_all, idx = shapely.get_coordinates(lyr.geoms, return_index=True)
    loc = to_local(xy_all)
    groups: dict[str, dict[int, tuple]] = {}
    for k, (fid, row) in enumerate(zip(lyr.fids, lyr.rows)):
        road = by_id.get(row["road_id"])
        if road is None:
            _fail(path, f"layer lane_boundaries feature {fid}: road_id {row['road_id']!r} is not a road id")
        g = groups.setdefault(road.rid, {})
        if row["position"] in g:
            _fail(path, f"layer lane_boundaries feature {fid}: position {row['position']} given twice "
                        f"for road {road.rid}")
        xy = loc[idx == k]
        # digitised against the road? turn it round
        if np.hypot(*(xy[0] - road.xy[0])) > np.hypot(*(xy[-1] - road.xy[0])):
            xy = xy[::-1]
        tags = {"type": row["type"]}
        if row["subtype"]:
            tags["subtype"] = row["subtype"]
        g[row["position"]] = (xy, tags)
    for rid, g in groups.items():
        road = by_id[rid]
        if sorted(g) != list(range(road.n + 1)):
            _fail(path, f"layer lane_boundaries: road {rid} has {road.n} lanes, so needs boundaries at "
                        f"positions 0..{road.n}, got {sorted(g)}")
        road.surveyed = [g[p] for p in range(road.n + 1)]


def _nodes(roads):
    """Cluster road ends within SNAP_M into nodes; snap the ends onto the node position."""
    ends = np.array([r.xy[-1 if e else 0] for r in roads for e in (0, 1)])
    pts = shapely.points(ends)
    tree = shapely.STRtree(pts)
    a, b = tree.query(pts, predicate="dwithin", distance=SNAP_M)
    parent = list(range(len(ends)))

    def root(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for x, y in zip(a.tolist(), b.tolist()):  # union-find over the (few) close pairs
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    roots = [root(k) for k in range(len(ends))]
    ids = {r: n for n, r in enumerate(sorted(set(roots)))}
    node_of = np.array([ids[r] for r in roots])
    pos = np.zeros((len(ids), 2))
    np.add.at(pos, node_of, ends)
    pos /= np.bincount(node_of)[:, None]
    node_ends: list[list[tuple[int, int]]] = [[] for _ in ids]
    for k, n in enumerate(node_of):
        r, e = divmod(k, 2)
        roads[r].node[e] = int(n)
        roads[r].xy[-1 if e else 0] = pos[n]
        node_ends[n].append((r, e))
    return pos, node_ends


def _out_dir(road: Road, e: int, s0: float = 0.0, s1: float | None = None) -> np.ndarray:
    """Unit vector pointing away from the node along the road at end e."""
    L = cumlen(road.xy)[-1]
    if e:
        return -direction_at(road.xy, L if s1 is None else s1)
    return direction_at(road.xy, s0)


def _continues(roads, x, y) -> bool:
    rx, ry = roads[x[0]], roads[y[0]]
    return rx.n == ry.n and rx.leaving(x[1]) == ry.entering(y[1]) and rx.entering(x[1]) == ry.leaving(y[1])


def _classify(path, roads, pos, node_ends, layers):
    """Node kinds: {'kind': continuation|ramp|junction|end, ...}."""
    flagged: dict[int, bool] = {}
    for r in roads:
        for e in (0, 1):
            if r.signal[e]:
                flagged[r.node[e]] = True
    jl = layers["junctions"]
    if jl is not None and len(pos):
        tree = shapely.STRtree(shapely.points(pos))
        jxy = jl.local
        got = tree.query_nearest(shapely.points(jxy), max_distance=JUNCTION_SNAP_M, all_matches=False)
        found = np.full(len(jxy), -1)
        found[got[0]] = got[1]
        for k, (fid, row) in enumerate(zip(jl.fids, jl.rows)):
            if found[k] < 0:
                _fail(path, f"layer junctions feature {fid}: no road end within {JUNCTION_SNAP_M:g} m "
                            f"(split the roads at the junction)")
            n = int(found[k])
            flagged[n] = flagged.get(n, False) or row["signalled"]
    kinds = []
    for n, ends in enumerate(node_ends):
        if n in flagged:
            kinds.append({"kind": "junction", "signalled": flagged[n]})
            continue
        if len(ends) == 1:
            kinds.append({"kind": "end"})
            continue
        if len(ends) == 2 and _continues(roads, *ends):
            kinds.append({"kind": "continuation", "pair": ends})
            continue
        kinds.append(_ramp_join(roads, ends) or {"kind": "junction", "signalled": False})
    return kinds


def _ramp_join(roads, ends):
    if len(ends) != 3:
        return None
    for k, (ri, e) in enumerate(ends):
        ramp = roads[ri]
        x, y = [ends[m] for m in range(3) if m != k]
        if ramp.cls not in RAMP_CLASSES or ramp.lb or not _continues(roads, x, y):
            continue
        m = ramp.lf
        # travel direction of the ramp away from (diverge) / on through (merge) the node
        want = _out_dir(ramp, e) if e == 0 else -_out_dir(ramp, e)
        cands = [t for t in (x, y) if roads[t[0]].leaving(t[1]) >= m]
        if not cands:
            continue
        target = max(cands, key=lambda t: float(_out_dir(roads[t[0]], t[1]) @ want))
        return {"kind": "ramp", "ramp": (ri, e), "target": target, "pair": (x, y), "merge": bool(e)}
    return None


def _setbacks(path, roads, kinds, node_ends):
    for n, k in enumerate(kinds):
        if k["kind"] != "junction":
            continue
        sb = max(float(np.abs(roads[r].offsets()).max()) for r, _ in node_ends[n]) + JUNCTION_MARGIN_M
        k["setback"] = sb
        for r, e in node_ends[n]:
            roads[r].setback[e] = sb
    for r in roads:
        if cumlen(r.xy)[-1] - sum(r.setback) < 2.0:
            _fail(path, f"layer roads feature {r.fid}: too short ({cumlen(r.xy)[-1]:.1f} m) for the junction "
                        f"set-backs at its ends ({r.setback[0]:.1f} m + {r.setback[1]:.1f} m)")


def _centre(r: Road) -> np.ndarray:
    xy = r.xy
    L = cumlen(xy)[-1]
    for e in (0, 1):
        if r.shift[e] is not None:
            xy = shift_end(xy, r.shift[e], bool(e), min(RAMP_FADE_M, 0.45 * L))
    return xy


def _sections(roads: list[Road]) -> dict[int, dict]:
    """Per road: centre, trimmed span, and per boundary the break coordinates and the pieces between them."""
    centres = {r.i: _centre(r) for r in roads}
    todo = [r for r in roads if r.surveyed is None]
    lines, dists = [], []
    for r in todo:
        lines += [shapely.linestrings(centres[r.i])] * (r.n + 1)
        dists.append(r.offsets())
    offs = shapely.offset_curve(np.array(lines, dtype=object), np.concatenate(dists) if dists else [],
                                join_style="mitre", mitre_limit=5.0) if todo else []
    bounds, k = {}, 0
    for r in todo:
        bounds[r.i] = [shapely.get_coordinates(g) for g in offs[k:k + r.n + 1]]
        k += r.n + 1
    for r in roads:
        if r.surveyed is not None:
            L = cumlen(r.xy)[-1]
            sh = [(e, r.shift[e]) for e in (0, 1) if r.shift[e] is not None]
            bounds[r.i] = []
            for xy, _ in r.surveyed:
                for e, d in sh:
                    xy = shift_end(xy, d, bool(e), min(RAMP_FADE_M, 0.45 * L))
                bounds[r.i].append(xy)
    out = {}
    for r in roads:
        c = centres[r.i]
        L = cumlen(c)[-1]
        s0, s1 = r.setback[0], L - r.setback[1]
        nk = max(1, math.ceil((s1 - s0) / MAX_LANELET_M))
        d = np.linspace(s0, s1, nk + 1)
        brk = shapely.points(point_at(c, d))
        per = []
        for j, b in enumerate(bounds[r.i]):
            bl = shapely.linestrings(b)
            t = shapely.line_locate_point(bl, brk)
            lb = cumlen(b)[-1]
            if s0 == 0.0:
                t[0] = 0.0
            if r.setback[1] == 0.0:
                t[-1] = lb
            t = np.maximum.accumulate(np.clip(t, 0.0, lb))
            pieces = [cut(b, t[q], t[q + 1]) for q in range(nk)]
            per.append({"breaks": point_at(b, t), "pieces": pieces})
        out[r.i] = {"centre": c, "s": (s0, s1), "nk": nk, "bounds": per}
    return out


def _slot_keys(roads, kinds):
    """Which (road, end, boundary) end points are one shared point; and which ends are led onto others."""
    alias: dict[tuple, tuple] = {}

    def key(t):
        while t in alias:
            t = alias[t]
        return t

    attached = set()
    for k in kinds:
        if k["kind"] in ("continuation", "ramp"):
            x, y = k["pair"]
            ix, iy = roads[x[0]].into(x[1]), roads[y[0]].into(y[1])
            n = len(ix) - 1
            for p in range(n + 1):
                a, b = key((x[0], x[1], ix[p])), key((y[0], y[1], iy[n - p]))
                if a != b:
                    alias[b] = a
    for k in kinds:
        if k["kind"] == "ramp":
            (ri, e), (ti, te) = k["ramp"], k["target"]
            ramp, tgt = roads[ri], roads[ti]
            rb = ramp.leaving_bounds(e) if e == 0 else ramp.entering_bounds(e)
            tb = tgt.leaving_bounds(te)[-len(rb):]
            for a, b in zip(rb, tb):
                alias[(ri, e, a)] = key((ti, te, b))
            attached.add((ri, e))
    return key, attached


def _slot_coords(roads, sec, key, attached):
    acc: dict[tuple, list] = {}
    for r in roads:
        for e in (0, 1):
            if (r.i, e) in attached:
                continue
            for j, b in enumerate(sec[r.i]["bounds"]):
                acc.setdefault(key((r.i, e, j)), []).append(b["breaks"][-1 if e else 0])
    return {k: np.mean(v, axis=0) for k, v in acc.items()}


def build_from_survey(path, out_osm, origin: tuple[float, float] | None = None) -> dict:
    """Build a Lanelet2 map from survey input (.gpkg / .geojson) and write it to out_osm; returns a summary."""
    path, out = Path(path), Path(out_osm)
    layers = read_survey(path)
    roads_ll = layers["roads"].geoms
    if origin is None:
        c = shapely.centroid(shapely.multilinestrings(roads_ll))
        origin = (round(c.y, 7), round(c.x, 7))
    lat0, lon0 = float(origin[0]), float(origin[1])
    if not (-84.0 <= lat0 <= 84.0 and -180.0 <= lon0 <= 180.0):
        _fail(path, f"origin {lat0},{lon0} outside WGS-84/UTM ranges")
    bounds = shapely.total_bounds(roads_ll)
    epsg = _choose_utm(path, bounds, (lat0, lon0))
    tf = transformer(4326, epsg)
    e0, n0 = tf.transform(lon0, lat0)

    def to_local(xy):  # Lanelet2's UtmProjector frame: UTM metres minus the origin's
        x, y = tf.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([np.asarray(x) - e0, np.asarray(y) - n0])

    roads = _roads(path, layers, to_local)
    _attach_boundaries(path, layers, roads, to_local)
    if layers["junctions"] is not None:
        layers["junctions"].local = to_local(shapely.get_coordinates(layers["junctions"].geoms))
    pos, node_ends = _nodes(roads)
    kinds = _classify(path, roads, pos, node_ends, layers)
    _setbacks(path, roads, kinds, node_ends)
    key, attached = _slot_keys(roads, kinds)

    sec = _sections(roads)
    slots = _slot_coords(roads, sec, key, attached)
    led = sorted({ri for ri, _ in attached})
    if led:  # lead ramps onto their target lanes, then recompute their geometry
        for ri, e in attached:
            r = roads[ri]
            own = np.mean([b["breaks"][-1 if e else 0] for b in sec[ri]["bounds"]], axis=0)
            rb = r.leaving_bounds(e) if e == 0 else r.entering_bounds(e)
            tgt = np.mean([slots[key((ri, e, j))] for j in rb], axis=0)
            r.shift[e] = tgt - own
        sec.update(_sections([roads[i] for i in led]))
        slots = _slot_coords(roads, sec, key, attached)

    bld = _Builder()
    at_end = _build_roads(bld, roads, sec, key, slots)
    _build_junctions(bld, roads, sec, kinds, node_ends, key, at_end)
    _build_merges(bld, roads, kinds, key, at_end)

    with atomic_path(out, suffix=".osm") as tmp:  # lanelet2 writes to a file name
        lanelet2.io.write(str(tmp), bld.map, lanelet2.projection.UtmProjector(lanelet2.io.Origin(lat0, lon0)))
    m = bld.map
    jk = [k for k in kinds if k["kind"] == "junction"]
    return {
        "input": str(path), "output": str(out), "origin": [lat0, lon0], "utm_crs": f"EPSG:{epsg}",
        "roads": len(roads), "surveyed_roads": sum(r.surveyed is not None for r in roads),
        "nodes": len(kinds), "junctions": len(jk), "signalled_junctions": sum(k["signalled"] for k in jk),
        "merges": sum(k["kind"] == "ramp" and k["merge"] for k in kinds),
        "diverges": sum(k["kind"] == "ramp" and not k["merge"] for k in kinds),
        "segment_joins": sum(k["kind"] == "continuation" for k in kinds),
        "lanelets": len(m.laneletLayer), "line_strings": len(m.lineStringLayer), "points": len(m.pointLayer),
        "regulatory_elements": len(m.regulatoryElementLayer), **bld.counts,
    }
