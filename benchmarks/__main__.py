"""`make bench`: run every benchmarks/bench_*.py module's ``run()``, print tables, write JSON.

Each module returns ``{"title": str, "rows": [dict, ...], "notes": [str, ...]}`` (any extra keys are kept).
Results go to benchmarks/results/<name>.json. ``python -m benchmarks NAME ...`` runs only those.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n## {title}")
    if not rows:
        print("(no rows)")
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def main(argv: list[str]) -> int:
    names = argv or sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(HERE)])
                           if m.name.startswith("bench_"))
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    failed = 0
    for name in names:
        mod_name = name if name.startswith("bench_") else f"bench_{name}"
        t0 = time.time()
        try:
            result = importlib.import_module(f"benchmarks.{mod_name}").run()
        except Exception:
            traceback.print_exc()
            failed += 1
            continue
        result.setdefault("seconds", round(time.time() - t0, 1))
        print_table(result.get("title", mod_name), result.get("rows", []))
        for note in result.get("notes", []):
            print(f"  - {note}")
        (out_dir / f"{mod_name}.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"\nJSON written to {out_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
