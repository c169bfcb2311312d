"""The Lanelet2 primitives of a survey build: lanelets along roads, turning lanelets through junctions with
their traffic lights and right of way, and ramp merges (lanelet2's Python API, one primitive at a time).

:mod:`lanelets.survey` decides the geometry (nodes, kinds, sections, shared slots); this module makes the map.
"""
from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import numpy as np
from lanelet2.core import (AttributeMap, Lanelet, LaneletMap, LineString3d, Point3d, RightOfWay,
                           TrafficLight)

from lanelets.survey_geom import bezier, direction_at, interior
from lanelets.survey_read import ROAD_CLASSES

if TYPE_CHECKING:
    from lanelets.survey import Road

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


def _cross(a, b) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


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
