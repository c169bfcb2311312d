"""Which lanelet is the vehicle in: lanelet2 matching, then the lane's own coordinates there.

Positions come in the map's own lon/lat (for a published map: already in the release frame and offset);
they are projected as lanelet2's ``UtmProjector`` does (pyproj, whole arrays), matched one by one with
``lanelet2.matching.getDeterministicMatches``, and restricted to lanelets a vehicle may drive on under
lanelet2's traffic rules (so crosswalks, walkways, bicycle lanes and rails never come back).

Lateral offset, along-track distance and lane heading are computed for all (position, lanelet) pairs at once
(numpy, grouped by lanelet), which costs a fraction of the per-point lanelet2 calls;
``lanelet2.geometry.toArcCoordinates`` would do the same one point per call.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lanelets.projection import local_to_lonlat, lonlat_to_local, utm_epsg

TRACK_MIN_STEP_M = 0.3     # consecutive positions closer than this give no usable track heading
HEADING_WEIGHT_M = 5.0
HEADING_BASE_M = 0.25      # half the chord the lane heading is measured over     # a lanelet 90° off the track heading costs as much as 5 m of lateral offset


@dataclass
class Located:
    """One row per position. ``lanelet`` is -1 where no drivable lanelet is under the position."""

    lanelet: np.ndarray        # int64
    lateral_m: np.ndarray      # + left of the driving direction
    along_m: np.ndarray
    heading_deg: np.ndarray    # lane direction there, clockwise from true north
    candidates: list           # per position: the other drivable lanelets there (junction overlaps)

    def __len__(self) -> int:
        return len(self.lanelet)

    def row(self, i: int) -> dict:
        if self.lanelet[i] < 0:
            return {"lanelet": None, "lateral_m": None, "along_m": None, "heading_deg": None, "candidates": []}
        return {"lanelet": int(self.lanelet[i]), "lateral_m": round(float(self.lateral_m[i]), 3),
                "along_m": round(float(self.along_m[i]), 3), "heading_deg": round(float(self.heading_deg[i]), 2),
                "candidates": [int(c) for c in self.candidates[i]]}


def drivable_ids(lmap) -> set[int]:
    """Lanelets a vehicle may use under lanelet2's traffic rules (German rules: lanelet2's reference set)."""
    from lanelet2.traffic_rules import Locations, Participants, create

    rules = create(Locations.Germany, Participants.Vehicle)
    return {ll.id for ll in lmap.laneletLayer if rules.canPass(ll)}


class LaneletLocator:
    """Built once per map; :meth:`locate` takes whole arrays of map lon/lat.

    ``origin``: (lat, lon) of the projector the map was loaded with (lanelet2 UtmProjector convention)."""

    def __init__(self, lmap, origin: tuple[float, float]):
        self.lmap = lmap
        self.origin = (float(origin[0]), float(origin[1]))
        self.drivable = drivable_ids(lmap)
        self._row: dict[int, int] = {}
        starts, vecs, s0 = [], [], []
        first = [0]
        for ll in lmap.laneletLayer:
            if ll.id not in self.drivable:
                continue
            c = np.array([(p.x, p.y) for p in ll.centerline], dtype=np.float64)
            if len(c) < 2:
                continue
            self._row[ll.id] = len(first) - 1
            d = np.diff(c, axis=0)
            starts.append(c[:-1])
            vecs.append(d)
            s0.append(np.r_[0.0, np.cumsum(np.hypot(d[:, 0], d[:, 1]))[:-1]])
            first.append(first[-1] + len(d))
        self.ids = np.fromiter(self._row, dtype=np.int64, count=len(self._row))
        # centre lines as one segment table (CSR: lanelet row -> segments first[row]:first[row+1])
        self._first = np.array(first, dtype=np.int64)
        self._a = np.concatenate(starts) if starts else np.empty((0, 2))
        self._d = np.concatenate(vecs) if vecs else np.empty((0, 2))
        self._s0 = np.concatenate(s0) if s0 else np.empty(0)
        self._dd = np.einsum("ij,ij->i", self._d, self._d)
        self._dd[self._dd == 0] = np.inf
        # 1-D copies: gathers from contiguous arrays are what the per-pair pass spends its time on
        self._ax, self._ay = self._a[:, 0].copy(), self._a[:, 1].copy()
        self._dx, self._dy = self._d[:, 0].copy(), self._d[:, 1].copy()
        self._seg_len = np.sqrt(np.einsum("ij,ij->i", self._d, self._d))
        self.length = np.add.reduceat(self._seg_len, self._first[:-1]) if starts else np.empty(0)
        # every segment's start on one increasing axis (lanelets end to end): a searchsorted finds the
        # segment at any (lanelet, along) without a per-lanelet loop
        self._base = np.r_[0.0, np.cumsum(self.length)[:-1]] + np.arange(len(self.length)) if starts \
            else np.empty(0)
        self._g = self._s0 + np.repeat(self._base, np.diff(self._first)) if starts else np.empty(0)
        # meridian convergence of the UTM grid per lanelet (varies < 0.01° along one lanelet)
        self._epsg = utm_epsg(*self.origin)
        if starts:
            mid = self._a[self._first[:-1]]
            lon, lat = local_to_lonlat(mid[:, 0], mid[:, 1], *self.origin)
            from pyproj import Proj

            self._conv = np.asarray(Proj(self._epsg).get_factors(lon, lat).meridian_convergence)
        else:
            self._conv = np.empty(0)

    def centerline(self, lanelet_id: int) -> np.ndarray:
        r = self._row[int(lanelet_id)]
        a = self._a[self._first[r]:self._first[r + 1]]
        return np.vstack([a, a[-1] + self._d[self._first[r + 1] - 1]])

    def to_local(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        return lonlat_to_local(lon, lat, *self.origin)

    # -- matching -----------------------------------------------------------------------------------------
    def match_xy(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position index, lanelet row) pairs: the drivable lanelets containing each point, from lanelet2's
        deterministic matching (one call per point)."""
        from lanelet2.matching import Object2d, Pose2d, getDeterministicMatches

        lmap, row = self.lmap, self._row
        obj = Object2d()
        rows: list[int] = []
        counts: list[int] = []
        for xi, yi in zip(x.tolist(), y.tolist()):
            obj.pose = Pose2d(xi, yi, 0.0)
            got = [row.get(m.lanelet.id, -1) for m in getDeterministicMatches(lmap, obj, 0.0)]
            rows += got
            counts.append(len(got))
        point_of = np.repeat(np.arange(len(counts)), counts)
        rows_a = np.array(rows, dtype=np.int64)
        keep = rows_a >= 0
        # a lanelet and its inverse both match: one pair each
        key = np.unique(point_of[keep] * (len(self._first) + 1) + rows_a[keep])
        return key // (len(self._first) + 1), key % (len(self._first) + 1)

    def locate(self, lon, lat, *, track: bool = False) -> Located:
        """Locate map lon/lat arrays. ``track``: the positions are consecutive fixes of one vehicle, so the
        direction of travel breaks ties where lanelets overlap (junctions)."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        x, y = self.to_local(lon, lat)
        point_of, rows = self.match_xy(x, y)
        return self.lane_coordinates(x, y, point_of, rows, track=track)

    def _project(self, px, py, rows):
        """Foot point on each pair's centre line: (along, signed lateral, grid heading deg).

        Written here rather than with shapely's line_locate_point/interpolate: one flat numpy pass over all
        (pair, segment) combinations (CSR) costs far less than per-pair geometry calls."""
        first = self._first
        nseg = first[rows + 1] - first[rows]
        starts = np.cumsum(nseg) - nseg
        seg = np.arange(int(nseg.sum())) - np.repeat(starts - first[rows], nseg)
        dx, dy = self._dx[seg], self._dy[seg]
        rx = np.repeat(px, nseg) - self._ax[seg]
        ry = np.repeat(py, nseg) - self._ay[seg]
        t = rx * dx
        t += ry * dy
        t /= self._dd[seg]
        np.clip(t, 0.0, 1.0, out=t)
        ex = rx - t * dx
        ey = ry - t * dy
        d2 = ex * ex
        d2 += ey * ey
        # nearest segment of each pair: the first segment reaching the pair's minimum (runs are contiguous)
        at_min = np.flatnonzero(d2 == np.repeat(np.minimum.reduceat(d2, starts), nseg))
        pair_of = np.repeat(np.arange(len(rows)), nseg)[at_min]
        best = at_min[np.r_[True, pair_of[1:] != pair_of[:-1]]]
        k = seg[best]
        dk = self._d[k]
        along = self._s0[k] + t[best] * self._seg_len[k]
        dist = np.sqrt(d2[best])
        # + left of the lane direction: z of (direction x offset)
        left = dk[:, 0] * ry[best] - dk[:, 1] * rx[best] >= 0
        lateral = np.where(left, dist, -dist)
        # lane heading: the chord over +-HEADING_BASE_M along the centre line (smooth across vertices)
        x0, y0 = self._point_at(rows, along - HEADING_BASE_M)
        x1, y1 = self._point_at(rows, along + HEADING_BASE_M)
        heading = np.degrees(np.arctan2(x1 - x0, y1 - y0)) + self._conv[rows]
        return along, lateral, heading

    def _point_at(self, rows, s):
        """Points at along-distance ``s`` (clipped to the lanelet) on the centre lines of ``rows``."""
        s = np.clip(s, 0.0, self.length[rows])
        g = self._base[rows] + s
        k = np.clip(np.searchsorted(self._g, g, side="right") - 1, self._first[rows], self._first[rows + 1] - 1)
        seg_len = self._seg_len[k]
        f = np.divide(g - self._g[k], seg_len, out=np.zeros_like(g), where=seg_len > 0)
        return self._ax[k] + f * self._dx[k], self._ay[k] + f * self._dy[k]

    def lane_coordinates(self, x, y, point_of, rows, *, track: bool = False) -> Located:
        """Lane coordinates of the best pair per position; ``point_of``/``rows`` sorted by position, as
        :meth:`match_xy` returns them."""
        n = len(x)
        lanelet = np.full(n, -1, dtype=np.int64)
        lateral = np.full(n, np.nan)
        along = np.full(n, np.nan)
        heading = np.full(n, np.nan)
        candidates = [()] * n
        if len(rows) == 0:
            return Located(lanelet, lateral, along, heading, candidates)
        s, lat_pair, head_pair = self._project(x[point_of], y[point_of], rows)
        score = np.abs(lat_pair)
        if track and n > 1:
            vx, vy = np.gradient(x), np.gradient(y)
            moving = np.hypot(vx, vy) >= TRACK_MIN_STEP_M / 2
            travel = np.degrees(np.arctan2(vx, vy))[point_of]
            off = 1 - np.cos(np.radians(head_pair - travel))
            score = score + np.where(moving[point_of], HEADING_WEIGHT_M * off, 0.0)
        # best pair per position (pairs come sorted by position): the first reaching its position's minimum
        starts = np.flatnonzero(np.r_[True, point_of[1:] != point_of[:-1]])
        counts = np.diff(np.r_[starts, len(point_of)])
        at_min = np.flatnonzero(score == np.repeat(np.minimum.reduceat(score, starts), counts))
        best = at_min[np.r_[True, point_of[at_min][1:] != point_of[at_min][:-1]]]
        is_best = np.zeros(len(point_of), dtype=bool)
        is_best[best] = True
        p = point_of[best]
        lanelet[p] = self.ids[rows[best]]
        lateral[p] = lat_pair[best]
        along[p] = s[best]
        heading[p] = head_pair[best] % 360.0
        others = np.flatnonzero(~is_best)  # the other drivable lanelets at the same place (junction overlaps)
        for i, lid in zip(point_of[others].tolist(), self.ids[rows[others]].tolist()):
            candidates[i] = (*candidates[i], lid)
        return Located(lanelet, lateral, along, heading, candidates)


def lanelet_locator(path_or_map, origin: tuple[float, float] | None = None) -> LaneletLocator:
    """Load a Lanelet2 map (robustly) and build its locator."""
    from lanelets.model import default_origin, load_lanelet2
    from lanelets.osm import OsmMap, read_osm

    m = path_or_map if isinstance(path_or_map, OsmMap) else read_osm(path_or_map)
    origin = origin or default_origin(m)
    lmap, _projector, _errors = load_lanelet2(m, origin)
    return LaneletLocator(lmap, origin)


__all__ = ["Located", "LaneletLocator", "drivable_ids", "lanelet_locator"]
