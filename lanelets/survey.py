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
   from LINE_STYLE; lanelets are cut every MAX_LANELET_M metres.
Output is written atomically (lanelets.files.atomic_path).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import lanelet2
import lanelet2.io
import lanelet2.projection
import numpy as np
import shapely
from lanelet2.core import (AttributeMap, Lanelet, LaneletMap, LineString3d, Point3d, RightOfWay,
                           TrafficLight)
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info

from lanelets.errors import MapError
from lanelets.files import atomic_path
from lanelets.projection import transformer, utm_epsg
from lanelets.survey_geom import bezier, cumlen, cut, direction_at, interior, point_at, shift_end
from lanelets.survey_read import RAMP_CLASSES, ROAD_CLASSES, read_survey

SNAP_M = 1.0             # road ends closer than this are one node
JUNCTION_SNAP_M = 15.0   # a `junctions` point marks the nearest node within this distance
JUNCTION_MARGIN_M = 6.0  # stop line this far outside the widest crossing carriageway: room for a crosswalk, and
                         # turning lanes wide enough to drive (curvature <= 0.5 1/m, as the checks require)
RAMP_FADE_M = 120.0      # a ramp's centre line is led onto the target lanes over this length
MAX_LANELET_M = 100.0    # lanelets are cut at most this long
TL_HEIGHT_M = 5.0

# boundary role -> Lanelet2 line type (outer edges solid, same-direction lanes dashed, opposite directions
# double solid); connectors through junctions are virtual.
LINE_STYLE = {
    "edge": {"type": "line_thin", "subtype": "solid"},
    "lane": {"type": "line_thin", "subtype": "dashed"},
    "centre": {"type": "line_thin", "subtype": "solid_solid"},
    "connector": {"type": "virtual"},
}
# turn name -> (min angle, max angle) in degrees, left positive; U-turns are not built
TURNS = {"straight": (-30.0, 30.0), "left": (30.0, 150.0), "right": (-150.0, -30.0)}


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


def _cross(a, b) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


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


class _Builder:
    def __init__(self):
        self.ids = itertools.count(1)
        self.map = LaneletMap()
        self.slot_pts: dict[tuple, Point3d] = {}
        self.ending: dict[tuple[int, int], list] = {}
        self.counts = {"traffic_lights": 0, "right_of_way": 0, "turning_lanelets": 0}

    def point(self, xy, z=0.0):  # lanelet2's Python API makes primitives one at a time
        return Point3d(next(self.ids), float(xy[0]), float(xy[1]), z)

    def slot(self, k, xy):
        if k not in self.slot_pts:
            self.slot_pts[k] = self.point(xy)
        return self.slot_pts[k]

    def line(self, pts, tags):
        return LineString3d(next(self.ids), pts, AttributeMap(tags))

    def lanelet(self, left, right, tags):
        ll = Lanelet(next(self.ids), left, right, AttributeMap(tags))
        self.map.add(ll)
        self.ending.setdefault((left[-1].id, right[-1].id), []).append(ll)
        return ll


def _xy(p) -> np.ndarray:
    return np.array([p.x, p.y])


def _lanelet_tags(road: Road, speed: float, **extra) -> dict:
    c = ROAD_CLASSES[road.cls]
    tags = {"type": "lanelet", "subtype": c["subtype"], "location": c["location"], "one_way": "yes",
            "speed_limit": f"{speed:g}", "participant:vehicle": "yes", "road_class": road.cls}
    if road.name:
        tags["name"] = road.name
    tags.update(extra)
    return tags


def _boundary_tags(road: Road, j: int) -> dict:
    if road.surveyed is not None:
        return dict(road.surveyed[j][1])
    role = "edge" if j in (0, road.n) else ("centre" if j == road.lb else "lane")
    return dict(LINE_STYLE[role])


def _build_roads(bld: _Builder, roads, sec, key, slots):
    """Lanelets of every road; returns {(road, end): [lanelet of each entering lane, left -> right]}."""
    at_end = {}
    for r in roads:
        s = sec[r.i]
        nk = s["nk"]
        ls = []
        for j, b in enumerate(s["bounds"]):
            brk = [bld.slot(key((r.i, 0, j)), slots[key((r.i, 0, j))])]
            brk += [bld.point(p) for p in b["breaks"][1:-1]]
            brk.append(bld.slot(key((r.i, 1, j)), slots[key((r.i, 1, j))]))
            tags = _boundary_tags(r, j)
            ls.append([bld.line([brk[q]] + [bld.point(p) for p in interior(b["pieces"][q], _xy(brk[q]),
                                                                            _xy(brk[q + 1]))] + [brk[q + 1]], tags)
                       for q in range(nk)])
        tags = _lanelet_tags(r, r.speed)
        lanes = []
        for q in range(r.n):
            if q >= r.lb:
                lanes.append([bld.lanelet(ls[q][k], ls[q + 1][k], tags) for k in range(nk)])
            else:
                lanes.append([bld.lanelet(ls[q + 1][k].invert(), ls[q][k].invert(), tags) for k in range(nk)])
        for e in (0, 1):
            eb = r.entering_bounds(e)
            at_end[(r.i, e)] = [lanes[min(eb[q], eb[q + 1])][-1 if e else 0] for q in range(len(eb) - 1)]
    return at_end


def _turn(angle: float) -> str | None:
    for name, (lo, hi) in TURNS.items():
        if lo <= angle <= hi:
            return name
    return None


def _lane_pairs(turn: str, k_in: int, k_out: int) -> list[tuple[int, int]]:
    if turn == "left":
        return [(0, 0)]
    if turn == "right":
        return [(k_in - 1, k_out - 1)]
    n = min(k_in, k_out)
    return [(k_in - n + t, k_out - n + t) for t in range(n)]  # straight: aligned from the right


def _build_junctions(bld: _Builder, roads, sec, kinds, node_ends, key, at_end):
    conn_cache: dict[tuple[int, int], LineString3d] = {}

    def pts_of(r, e, bounds):
        return [bld.slot_pts[key((r.i, e, j))] for j in bounds]

    def travel_in(r, e):
        s0, s1 = sec[r.i]["s"]
        c = sec[r.i]["centre"]
        return direction_at(c, s1) if e else -direction_at(c, s0)

    def connector(p0, t0, p3, t3):
        k = (p0.id, p3.id)
        if k not in conn_cache:
            a = np.array([p0.x, p0.y])
            b = np.array([p3.x, p3.y])
            straight = abs(_cross(t0, t3)) < 0.05 and float(t0 @ t3) > 0
            xy = bezier(a, t0, b, t3, 2 if straight else 12)
            conn_cache[k] = bld.line([p0] + [bld.point(p) for p in interior(xy, a, b)] + [p3],
                                     LINE_STYLE["connector"])
        return conn_cache[k]

    for n, kind in enumerate(kinds):
        if kind["kind"] != "junction":
            continue
        ends = [(roads[r], e) for r, e in node_ends[n]]
        for ra, ea in ends:
            if ra.entering(ea) == 0:
                continue
            eb = ra.entering_bounds(ea)
            a_pts = pts_of(ra, ea, eb)
            t_in = travel_in(ra, ea)
            for rx, ex in ends:
                if (rx.i, ex) == (ra.i, ea) or rx.leaving(ex) == 0:
                    continue
                t_out = -travel_in(rx, ex)
                angle = math.degrees(math.atan2(_cross(t_in, t_out), float(t_in @ t_out)))
                turn = _turn(angle)
                if turn is None:
                    continue
                lvb = rx.leaving_bounds(ex)
                x_pts = pts_of(rx, ex, lvb)
                for qa, qx in _lane_pairs(turn, ra.entering(ea), rx.leaving(ex)):
                    left = connector(a_pts[qa], t_in, x_pts[qx], t_out)
                    right = connector(a_pts[qa + 1], t_in, x_pts[qx + 1], t_out)
                    bld.lanelet(left, right, _lanelet_tags(ra, min(ra.speed, rx.speed), turn_direction=turn))
                    bld.counts["turning_lanelets"] += 1
            if kind["signalled"]:
                _traffic_light(bld, a_pts, t_in, kind["setback"], at_end[(ra.i, ea)])
        if not kind["signalled"]:
            _priority(bld, [(ra, ea) for ra, ea in ends if ra.entering(ea)], at_end)


def _traffic_light(bld: _Builder, stop_pts, t_in, setback, approach_lanelets):
    """One traffic-light element per approach: stop line across its lanes' ends, signal head across the junction."""
    stop = bld.line(stop_pts, {"type": "stop_line"})
    mid = np.mean([[p.x, p.y] for p in stop_pts], axis=0)
    right_n = np.array([t_in[1], -t_in[0]])
    far = mid + t_in * (2.0 * setback + 2.0)
    light = bld.line([bld.point(far - 0.5 * right_n, TL_HEIGHT_M), bld.point(far + 0.5 * right_n, TL_HEIGHT_M)],
                     {"type": "traffic_light", "subtype": "red_yellow_green", "height": "1.2"})
    re = TrafficLight(next(bld.ids), AttributeMap({"type": "regulatory_element", "subtype": "traffic_light"}),
                      [light], stop)
    for ll in approach_lanelets:
        ll.addRegulatoryElement(re)
    bld.map.add(re)  # lanelets already in the map don't pull in elements added later
    bld.counts["traffic_lights"] += 1


def _priority(bld: _Builder, approaches, at_end):
    """Junction without lights: approaches of lower road classes yield to those of the highest class."""
    rank = {(r.i, e): ROAD_CLASSES[r.cls]["rank"] for r, e in approaches}
    if len(set(rank.values())) < 2:
        return  # all alike: the traffic rules' default (e.g. right before left) applies
    top = max(rank.values())
    row = [ll for k, v in rank.items() if v == top for ll in at_end[k]]
    yields = [ll for k, v in rank.items() if v < top for ll in at_end[k]]
    _right_of_way(bld, row, yields)


def _right_of_way(bld: _Builder, row, yields) -> None:
    """A RightOfWay element on the lanelets that have way (`row`) and those that yield."""
    re = RightOfWay(next(bld.ids), AttributeMap({"type": "regulatory_element", "subtype": "right_of_way"}),
                    row, yields)
    for ll in row + yields:
        ll.addRegulatoryElement(re)
    bld.map.add(re)
    bld.counts["right_of_way"] += 1


def _build_merges(bld: _Builder, roads, kinds, key, at_end):
    """At a merge the ramp yields to the through lanes it joins (a RightOfWay element on both)."""
    for kind in kinds:
        if kind["kind"] != "ramp" or not kind["merge"]:
            continue
        ri, e = kind["ramp"]
        yields = at_end[(ri, e)]
        ends = {(ll.leftBound[-1].id, ll.rightBound[-1].id) for ll in yields}
        row = [ll for k in ends for ll in bld.ending.get(k, []) if all(ll.id != y.id for y in yields)]
        if row:
            _right_of_way(bld, row, yields)


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
