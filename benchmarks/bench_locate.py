"""Vehicle locate speed: 100,000 RTK positions from an RTKLIB .pos file (ITRF2014 at today's epoch) located on
the published (GCJ-02) pilot-zone map — read, frame transform, offset, lanelet2 matching, lane coordinates —
beside lanelet2's own matching of the same positions in the same run: matching alone (positions already in map
metres) and lanelet2 projecting the (published) lon/lat itself before matching.

Targets (issue 9): >= 20,000 positions/s, and >= 0.8x lanelet2's matching alone. The map is the bundled
Yizhuang pilot-zone road spec (no ../shared needed); positions are sampled inside its drivable lanelets.
``python -m benchmarks locate``.
"""
from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np

N = 100_000
REPEAT = 3
TARGET_RATE = 20_000
TARGET_RATIO = 0.8


def _setup(work: Path):
    """Publish-side: build and desensitise the pilot map; vehicle-side: the locator of the published map,
    the release frame, and N true positions written as an RTKLIB llh .pos file."""
    from desensitize import desensitize
    from lanelets import build
    from lanelets.frames import FrameTransform, decimal_year, declaration
    from lanelets.locate import lanelet_locator
    from lanelets.osm import read_osm
    from mapsvc.demo import roadspec_path
    from mapsvc.locate import MapFrame
    from tiles.store import DESENSITISATION

    osm = work / "pilot.osm"
    build(roadspec_path(), osm)
    res = desensitize(read_osm(osm))
    published = work / "published.osm"
    published.write_bytes(res.map.xml_bytes())
    manifest = {"release": "bench", "frame": declaration(None, offset=res.provider.describe()),
                DESENSITISATION: res.report}
    mf = MapFrame.of(manifest, providers={})
    truth = lanelet_locator(osm)          # the unpublished map: where the positions really are
    vehicle = lanelet_locator(published)  # what the vehicle has

    rng = np.random.default_rng(9)
    rows = rng.integers(0, len(truth.ids), N)
    s = rng.uniform(0.1, 0.9, N) * truth.length[rows]
    x = np.empty(N)
    y = np.empty(N)
    for r in np.unique(rows):  # points on the true centre lines, 0-30 cm to the side
        sel = np.flatnonzero(rows == r)
        c = truth.centerline(truth.ids[r])
        cum = np.r_[0, np.cumsum(np.hypot(*np.diff(c, axis=0).T))]
        x[sel] = np.interp(s[sel], cum, c[:, 0]) + rng.normal(0, 0.15, len(sel))
        y[sel] = np.interp(s[sel], cum, c[:, 1]) + rng.normal(0, 0.15, len(sel))
    from lanelets.projection import local_to_lonlat

    lon, lat = local_to_lonlat(x, y, *truth.origin)
    epoch = decimal_year()
    ilon, ilat, ih = FrameTransform("CGCS2000", "ITRF2014", epoch)(lon, lat, np.full(N, 40.0))
    t0 = np.datetime64("now", "ms")
    times = np.datetime_as_string(t0 + np.arange(N).astype("timedelta64[ms]") * 100, unit="ms")
    pos = work / "track.pos"
    with open(pos, "w") as f:
        f.write("%  GPST                  latitude(deg) longitude(deg)  height(m)   Q  ns\n")
        for t, a, b, c in zip(times.tolist(), ilat.tolist(), ilon.tolist(), ih.tolist()):
            f.write(f"{t[:10].replace('-', '/')} {t[11:]}   {a:14.9f} {b:14.9f} {c:10.4f}   1  12\n")
    return mf, vehicle, truth, pos, rows


def _locate(mf, vehicle, pos: Path):
    from cors.solutions import read_pos

    p = read_pos(pos)
    mlon, mlat = mf.to_map(p.lon, p.lat, p.height, frame="ITRF2014", epoch=p.epochs())
    return vehicle.locate(mlon, mlat), p


def _lanelet2_matching(lmap, x, y):
    """The peer: lanelet2's deterministic matching of each position, reading the matched lanelet ids."""
    from lanelet2.matching import Object2d, Pose2d, getDeterministicMatches

    obj = Object2d()
    out = []
    for xi, yi in zip(x.tolist(), y.tolist()):
        obj.pose = Pose2d(xi, yi, 0.0)
        out.append([m.lanelet.id for m in getDeterministicMatches(lmap, obj, 0.0)])
    return out


def _lanelet2_project_and_match(lmap, origin, lon, lat):
    """The same with lanelet2 also doing the projection: its UtmProjector, one GPSPoint per position (what
    a lanelet2 user matching geographic positions writes)."""
    from lanelet2.core import GPSPoint
    from lanelet2.io import Origin
    from lanelet2.matching import Object2d, Pose2d, getDeterministicMatches
    from lanelet2.projection import UtmProjector

    projector = UtmProjector(Origin(*origin))
    obj = Object2d()
    out = []
    for la, lo in zip(lat.tolist(), lon.tolist()):
        p = projector.forward(GPSPoint(la, lo, 0.0))
        obj.pose = Pose2d(p.x, p.y, 0.0)
        out.append([m.lanelet.id for m in getDeterministicMatches(lmap, obj, 0.0)])
    return out


def run() -> dict:
    from mapsvc.commands.locate import write_rows

    with tempfile.TemporaryDirectory() as tmp:
        mf, vehicle, truth, pos, rows = _setup(Path(tmp))
        located, p = _locate(mf, vehicle, pos)
        mlon, mlat = mf.to_map(p.lon, p.lat, p.height, frame="ITRF2014", epoch=p.epochs())
        x, y = vehicle.to_local(mlon, mlat)
        best_locate = best_peer = best_peer2 = best_json = float("inf")
        for _ in range(REPEAT):  # interleaved, so both sides see the same machine load
            t0 = time.perf_counter()
            located, p = _locate(mf, vehicle, pos)
            best_locate = min(best_locate, time.perf_counter() - t0)
            t0 = time.perf_counter()
            _lanelet2_matching(vehicle.lmap, x, y)
            best_peer = min(best_peer, time.perf_counter() - t0)
            t0 = time.perf_counter()
            _lanelet2_project_and_match(vehicle.lmap, vehicle.origin, mlon, mlat)
            best_peer2 = min(best_peer2, time.perf_counter() - t0)
            t0 = time.perf_counter()
            write_rows(located, p.time_strings(), io.StringIO())
            best_json = min(best_json, time.perf_counter() - t0)
    right = float((located.lanelet == truth.ids[rows]).mean())
    rate, peer_rate, peer2_rate = N / best_locate, N / best_peer, N / best_peer2
    ratio = rate / peer_rate
    ratio2 = rate / peer2_rate
    rows_out = [
        {"case": "mapsvc locate (read .pos, ITRF2014->CGCS2000, GCJ-02, lanelet2 match, lane coords)",
         "positions": N, "seconds": round(best_locate, 3), "positions_per_s": round(rate),
         "right_lanelet": round(right, 4)},
        {"case": "peer: lanelet2 getDeterministicMatches alone (positions already in map metres)",
         "positions": N, "seconds": round(best_peer, 3), "positions_per_s": round(peer_rate)},
        {"case": "peer: lanelet2 UtmProjector.forward + getDeterministicMatches (positions in map lon/lat)",
         "positions": N, "seconds": round(best_peer2, 3), "positions_per_s": round(peer2_rate)},
        {"case": "JSON lines output of the located positions (not in the locate time)",
         "positions": N, "seconds": round(best_json, 3), "positions_per_s": round(N / best_json)},
    ]
    return {"title": "vehicle locate vs lanelet2 matching alone", "rows": rows_out,
            "ratio_vs_lanelet2": round(ratio, 3), "ratio_vs_lanelet2_with_projection": round(ratio2, 3),
            "positions_per_s": round(rate),
            "targets": {"positions_per_s": TARGET_RATE, "ratio_vs_lanelet2": TARGET_RATIO},
            "notes": [f"locate/lanelet2 matching alone = {ratio:.2f} (target >= {TARGET_RATIO}); locate/lanelet2 "
                      f"projection + matching = {ratio2:.2f}; {rate:,.0f} positions/s (target >= {TARGET_RATE:,}); "
                      f"best of {REPEAT}, interleaved, one process",
                      f"{right:.1%} of the positions (0-30 cm off the true centre line) got their true lanelet"]}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
