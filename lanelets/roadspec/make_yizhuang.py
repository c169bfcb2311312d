"""Generate yizhuang_pilot.geojson: an ILLUSTRATIVE pilot-zone road-spec (not surveyed geometry).

Run from the repo root:  python -m lanelets.roadspec.make_yizhuang
The output is deterministic (same bytes every run), so releases built from it only change when this
script changes. Layout: see README.md beside this file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pyproj import Transformer

HERE = Path(__file__).resolve().parent
OUT = HERE / "yizhuang_pilot.geojson"
# the zone is laid out in metres in UTM 50N (Beijing), then converted to WGS-84 lon/lat
TO_LL = Transformer.from_crs(32650, 4326, always_xy=True)
TO_UTM = Transformer.from_crs(4326, 32650, always_xy=True)

EXPRESSWAY = dict(lanes_forward=3, lanes_backward=3, lane_width=3.75, speed_limit=100, road_class="expressway")
RAMP = dict(lanes_forward=1, one_way=True, lane_width=3.5, speed_limit=40, road_class="ramp")
ARTERIAL = dict(lanes_forward=2, lanes_backward=2, lane_width=3.5, speed_limit=60, road_class="urban_arterial")
LOCAL = dict(lanes_forward=1, lanes_backward=1, lane_width=3.25, speed_limit=40, road_class="urban_local")

EXPRESSWAY_LAT = 39.8000
GRID_LONS = (116.494, 116.500, 116.506)
GRID_LATS = (39.792, 39.788, 39.784)  # north to south
DIVERGE_LON, MERGE_LON = 116.490, 116.510


def utm(lon, lat):
    return np.array(TO_UTM.transform(lon, lat))


def bezier(p0, h0, p3, h3, n=24):
    """Smooth centre line from p0 leaving on heading h0 to p3 arriving on heading h3 (unit vectors)."""
    k = 0.45 * np.linalg.norm(p3 - p0)
    p1, p2 = p0 + k * h0, p3 - k * h3
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3


def heading(deg):
    return np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg))])


def feature(layer, xy_utm, props, kind="LineString"):
    lon, lat = TO_LL.transform(xy_utm[:, 0], xy_utm[:, 1])
    coords = [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat)]
    geom = {"type": kind, "coordinates": coords[0] if kind == "Point" else coords}
    return {"type": "Feature", "properties": {"layer": layer, **props}, "geometry": geom}


def straight(p, q, n=5):
    return np.linspace(p, q, n)


def main() -> Path:
    feats = []
    ex = [utm(lon, EXPRESSWAY_LAT) for lon in (116.480, DIVERGE_LON, MERGE_LON, 116.520)]
    # the western piece is surveyed in two parts: a plain segment join at 116.485 E
    join = utm(116.485, EXPRESSWAY_LAT)
    for k, (a, b) in enumerate(zip([ex[0], join] + ex[1:], [join] + ex[1:])):
        feats.append(feature("roads", straight(a, b, 9), {"id": f"X{k + 1}", "name": f"Pilot Expressway {k + 1}",
                                                          **EXPRESSWAY}))
    j = [[utm(lon, lat) for lon in GRID_LONS] for lat in GRID_LATS]
    # off-ramp: leaves the eastbound carriageway at the diverge, ends at the north-west junction
    feats.append(feature("roads", bezier(ex[1], heading(-15), j[0][0], heading(-90)),
                         {"id": "R-off", "name": "Pilot Off-ramp", **RAMP}))
    # on-ramp: starts at the north-east junction, joins the eastbound carriageway at the merge
    feats.append(feature("roads", bezier(j[0][2], heading(90), ex[2], heading(15)),
                         {"id": "R-on", "name": "Pilot On-ramp", **RAMP}))
    stub = 250.0
    for r, row in enumerate(j):  # east-west arterials, digitised west to east, with stubs off the grid
        pts = [row[0] - [stub, 0]] + row + [row[-1] + [stub, 0]]
        for c, (a, b) in enumerate(zip(pts, pts[1:])):
            feats.append(feature("roads", straight(a, b, 3), {"id": f"A{r + 1}-{c}", "name": f"Pilot Road {r + 1}",
                                                              **ARTERIAL}))
    for c in range(3):  # north-south local streets, digitised north to south
        col = [j[r][c] for r in range(3)]
        pts = ([col[0] + [0, stub]] if c == 1 else []) + col + [col[-1] - [0, stub]]
        for k, (a, b) in enumerate(zip(pts, pts[1:])):
            feats.append(feature("roads", straight(a, b, 3), {"id": f"S{c + 1}-{k}", "name": f"Pilot Street {c + 1}",
                                                              **LOCAL}))
    for r in range(3):
        for c in range(3):
            feats.append(feature("junctions", j[r][c][None], {"id": f"J{r}{c}", "signalled": True}, "Point"))
    doc = {"type": "FeatureCollection", "name": "yizhuang_pilot",
           "description": "ILLUSTRATIVE road-spec near the Beijing Yizhuang pilot zone; geometry is not surveyed.",
           "features": feats}
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return OUT


if __name__ == "__main__":
    print(main())
