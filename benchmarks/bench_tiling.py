"""Tiling speed and memory beside Lanelet2's own load + write of the same file (issue: foundation).

Targets: `mapsvc tile` at most 3x Lanelet2's load+write time and at most 1.5x its peak RSS, at 50x.
Both sides run as fresh processes in the same run; each script also reports its in-process time.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from benchmarks.mapgen import replicate
from benchmarks.proc import best_of

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "lanelet2"
LARGEST = "autoware_core_road_shoulder_lanelet2_map.osm"

LANELET2_SCRIPT = r"""
import sys, time, json
t0 = time.perf_counter()
import lanelet2
from lanelet2.io import Origin
from lanelet2.projection import UtmProjector
t1 = time.perf_counter()
proj = UtmProjector(Origin(float(sys.argv[3]), float(sys.argv[4])))
lmap, errors = lanelet2.io.loadRobust(sys.argv[1], proj)
t2 = time.perf_counter()
lanelet2.io.writeRobust(sys.argv[2], lmap, proj)
t3 = time.perf_counter()
print(json.dumps({"load_s": t2 - t1, "write_s": t3 - t2}))
"""

MAPSVC_SCRIPT = r"""
import sys, time, json
t0 = time.perf_counter()
from mapsvc.pipeline import tile_to_dir
t1 = time.perf_counter()
m = tile_to_dir(sys.argv[1], sys.argv[2], level=int(sys.argv[3]))
t2 = time.perf_counter()
print(json.dumps({"tile_s": t2 - t1, "tiles": len(m["tiles"])}))
"""


def run() -> dict:
    src = SHARED / LARGEST
    if not src.exists():
        return {"title": "tiling vs lanelet2 load+write", "rows": [], "notes": [f"skipped: {src} absent"]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for copies in (1, 50):
            path = src if copies == 1 else replicate(src, tmp / f"x{copies}.osm", copies)
            size_mb = path.stat().st_size / 1e6
            ll = best_of(3 if copies == 1 else 2, [sys.executable, "-c", LANELET2_SCRIPT, str(path),
                                                   str(tmp / "ll.osm"), "35.224076", "138.804565"])
            ll_in = json.loads(ll["stdout"])
            for level in (13, 15):
                ms = best_of(3 if copies == 1 else 2, [sys.executable, "-c", MAPSVC_SCRIPT, str(path),
                                                       str(tmp / f"tiles{copies}_{level}"), str(level)])
                ms_in = json.loads(ms["stdout"])
                rows.append({
                    "map": f"{LARGEST.split('_lanelet2')[0]} x{copies}", "MB": round(size_mb, 1), "level": level,
                    "tiles": ms_in["tiles"],
                    "lanelet2 load+write s": round(ll["wall_s"], 2),
                    "mapsvc tile s": round(ms["wall_s"], 2),
                    "time ratio": round(ms["wall_s"] / ll["wall_s"], 2),
                    "in-process ratio": round(ms_in["tile_s"] / (ll_in["load_s"] + ll_in["write_s"]), 2),
                    "lanelet2 RSS MB": round(ll["peak_rss_mb"]),
                    "mapsvc RSS MB": round(ms["peak_rss_mb"]),
                    "RSS ratio": round(ms["peak_rss_mb"] / ll["peak_rss_mb"], 2),
                })
    return {
        "title": "mapsvc tile vs lanelet2 io.loadRobust+writeRobust (whole processes, best of runs)",
        "rows": rows,
        "targets": {"time_ratio_max_at_50x": 3.0, "rss_ratio_max_at_50x": 1.5},
        "notes": ["time ratio: whole-process wall time (imports included on both sides); in-process ratio: "
                  "tiling call vs load+write calls only"],
    }


if __name__ == "__main__":
    from benchmarks.__main__ import main
    sys.exit(main(["tiling"]))
