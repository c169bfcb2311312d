"""Run a command as a child process and measure its wall time and peak RSS.

Peak RSS comes from GNU time (`/usr/bin/time -f %M`), which starts the command from its own small process:
Linux keeps a process's high-water RSS across fork and exec, so a child forked straight from this (large)
benchmark process would report at least this process's RSS.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

GNU_TIME = shutil.which("time", path="/usr/bin:/bin")


def measure(cmd: list[str], env: dict | None = None, cwd=None) -> dict:
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        full = [GNU_TIME, "-f", "%M %U %S", "-o", rss.name, *cmd] if GNU_TIME else list(cmd)
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate()
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
        if GNU_TIME:
            kb, user, system = rss.read().split()[-3:]
            peak_mb, cpu = int(kb) / 1024.0, float(user) + float(system)
        else:  # no GNU time (Debian package `time`, installed by make setup): RSS unknown
            peak_mb, cpu = float("nan"), float("nan")
    return {"wall_s": wall, "peak_rss_mb": peak_mb, "cpu_s": cpu, "stdout": out.decode(errors="replace")}


def best_of(n: int, cmd: list[str], **kw) -> dict:
    runs = [measure(cmd, **kw) for _ in range(n)]
    return min(runs, key=lambda r: r["wall_s"]) | {"runs": n, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}
