"""Run a command as a child process and measure its wall time and peak RSS (from wait4's rusage)."""
from __future__ import annotations

import os
import subprocess
import time


def measure(cmd: list[str], env: dict | None = None, cwd=None) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = b"", b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024.0, "cpu_s": usage.ru_utime + usage.ru_stime,
            "stdout": out.decode(errors="replace")}


def best_of(n: int, cmd: list[str], **kw) -> dict:
    runs = [measure(cmd, **kw) for _ in range(n)]
    return min(runs, key=lambda r: r["wall_s"]) | {"runs": n, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}
