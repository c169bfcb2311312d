"""All quality checks on the largest shared map and on a 50x replicated copy, beside Lanelet2's own
``io.loadRobust`` of the same file (the peer: every run of the checks includes one such load).

Targets (issue 5): under 2 s at x1 and under 60 s at x50, with no check quadratic in map size.
Each side runs as a fresh process (wall time, and peak RSS from GNU time); the checks' script also
reports read time, per-check times and finding counts.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from benchmarks.mapgen import replicate
from benchmarks.proc import best_of

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "lanelet2"
TARGETS_S = {1: 2.0, 50: 60.0}

CHECKS_SCRIPT = r"""
import sys, time, json
t0 = time.perf_counter()
from standards.runner import read_map, run_checks
from standards.context import Context
t1 = time.perf_counter()
m = read_map(sys.argv[1])
t2 = time.perf_counter()
res = run_checks(Context(m))
t3 = time.perf_counter()
print(json.dumps({"read_s": t2 - t1, "checks_s": t3 - t2,
                  "per_check": {c.id: round(s, 4) for c, h, s in res},
                  "findings": sum(len(h) for c, h, s in res if h is not None)}))
"""

LANELET2_SCRIPT = r"""
import sys, time, json
import lanelet2
from lanelet2.io import Origin
from lanelet2.projection import UtmProjector
t1 = time.perf_counter()
lmap, errors = lanelet2.io.loadRobust(sys.argv[1], UtmProjector(Origin(float(sys.argv[2]), float(sys.argv[3]))))
print(json.dumps({"load_s": time.perf_counter() - t1}))
"""


def largest_map() -> Path | None:
    maps = sorted(SHARED.glob("*.osm"), key=lambda p: p.stat().st_size) if SHARED.is_dir() else []
    return maps[-1] if maps else None


def run() -> dict:
    title = "quality checks (all registered) vs lanelet2 loadRobust"
    src = largest_map()
    if src is None:
        return {"title": title, "rows": [], "notes": [f"skipped: {SHARED} absent"]}
    from lanelets.model import default_origin
    from lanelets.osm import read_osm

    lat0, lon0 = default_origin(read_osm(src))
    rows, slowest = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for copies in (1, 50):
            path = src if copies == 1 else replicate(src, tmp / f"x{copies}.osm", copies)
            n = 3 if copies == 1 else 1
            ck = best_of(n, [sys.executable, "-c", CHECKS_SCRIPT, str(path)])
            inner = json.loads(ck["stdout"])
            ll = best_of(n, [sys.executable, "-c", LANELET2_SCRIPT, str(path), str(lat0), str(lon0)])
            rows.append({
                "map": f"{src.name} x{copies}", "mb": round(path.stat().st_size / 1e6, 1),
                "checks_wall_s": round(ck["wall_s"], 2), "read_s": round(inner["read_s"], 2),
                "checks_s": round(inner["checks_s"], 2), "peak_rss_mb": round(ck["peak_rss_mb"], 1),
                "findings": inner["findings"],
                "lanelet2_load_s": round(json.loads(ll["stdout"])["load_s"], 2),
                "lanelet2_wall_s": round(ll["wall_s"], 2), "lanelet2_rss_mb": round(ll["peak_rss_mb"], 1),
                "target_s": TARGETS_S[copies], "meets_target": ck["wall_s"] < TARGETS_S[copies],
            })
            slowest[f"x{copies}"] = dict(sorted(inner["per_check"].items(), key=lambda kv: -kv[1])[:5])
    scale = rows[1]["checks_s"] / max(rows[0]["checks_s"], 1e-9)
    return {"title": title, "rows": rows, "slowest_checks": slowest,
            "notes": [f"x50 / x1 check time ratio {scale:.1f} for 50x the data (linear would be ~50)",
                      "wall time is the whole process: interpreter start, imports, XML read, Lanelet2 load "
                      "(inside the checks), routing graph, every check"]}


if __name__ == "__main__":
    from benchmarks.__main__ import print_table

    result = run()
    print_table(result["title"], result["rows"])
    for note in result.get("notes", []):
        print(f"- {note}")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_checks.json").write_text(json.dumps(result, indent=1))
