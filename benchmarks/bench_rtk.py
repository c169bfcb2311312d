"""RTCM encode/decode and epoch-wise RTK (pyrtklib) beside Debian RTKLIB's own tools, same data, same run.

Rows: RINEX -> RTCM 3 (ours, RTKLIB encoder; with and without the pyrtcm check of every frame);
RTCM 3 -> observations (ours: input_rtcm3 per byte, as the rover does) beside ``convbin`` (RTCM -> RINEX);
forward RTK epoch by epoch (ours: rtkpos) beside ``rnx2rtkp`` forward with the same conf.
Wall times are the median of 3 runs. Run alone: ``python -m benchmarks rtk``.
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "gnss" / "geonet3034_sept_2021265"
ECEF = (-3959400.631, 3385704.533, 3667523.111)
RUNS = 3


def _median_time(fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(RUNS):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run() -> dict:
    if not DATA.is_dir():
        return {"title": "RTK (pyrtklib) vs RTKLIB tools", "rows": [],
                "notes": ["../shared/data/gnss absent: skipped"]}
    import pyrtklib as rtk

    from cors.rtcm_encode import encode_rinex, gtime_seconds, read_rinex
    from cors.rtk import RtkEngine, Summary, copy_records, load_options

    base, rover, nav, conf = (DATA / n for n in ("3034265G.21O", "SEPT265G.21O", "SEPT2650.21P", "rnx2rtkp.conf"))
    rows = []
    work = Path(tempfile.mkdtemp())
    try:
        src = read_rinex(base, [nav])
        n_ep = len(src.epochs)
        for check in (True, False):
            t, raw = _median_time(lambda check=check: b"".join(
                e.raw for e in encode_rinex(base, station_id=3034, ecef=ECEF, check=check, source=src)))
            rows.append({"step": "RINEX->RTCM3 encode" + (" + pyrtcm check" if check else ""),
                         "tool": "ours (pyrtklib gen_rtcm3)", "epochs": n_ep, "seconds": t,
                         "ms_per_epoch": 1000 * t / n_ep})
        rtcm = work / "base.rtcm3"
        rtcm.write_bytes(raw)

        def decode():
            dec = rtk.rtcm_t()
            rtk.init_rtcm(dec)
            dec.time = src.obs.data[0].time
            n = 0
            for byte in raw:
                if rtk.input_rtcm3(dec, byte) == 1:
                    copy_records(dec.obs.data, dec.obs.n, rcv=2)
                    n += 1
            rtk.free_rtcm(dec)
            return n

        t, n = _median_time(decode)
        rows.append({"step": "RTCM3 decode", "tool": "ours (input_rtcm3 per byte)", "epochs": n,
                     "seconds": t, "ms_per_epoch": 1000 * t / n})
        if shutil.which("convbin"):
            t, _ = _median_time(lambda: subprocess.run(
                ["convbin", "-r", "rtcm3", "-tr", "2021/09/22", "06:30:00", "-o", str(work / "b.obs"),
                 str(rtcm)], capture_output=True, check=True))
            rows.append({"step": "RTCM3 decode", "tool": "convbin (-> RINEX)", "epochs": n_ep,
                         "seconds": t, "ms_per_epoch": 1000 * t / n_ep})

        rov = read_rinex(rover, [nav])
        opts = load_options(conf)
        base_times = [gtime_seconds(src.obs.data[s].time) for s, _ in src.epochs]
        for i in range(src.obs.n):
            src.obs.data[i].rcv = 2

        def forward():
            eng, summ, bi = RtkEngine(opts, rov.nav), Summary(), 0
            for s, e in rov.epochs:
                t_r = gtime_seconds(rov.obs.data[s].time)
                while bi + 1 < len(base_times) and base_times[bi + 1] <= t_r + 0.005:
                    bi += 1
                bs, be = src.epochs[bi]
                summ.add(eng.solve([rov.obs.data[k] for k in range(s, e)],
                                   [src.obs.data[k] for k in range(bs, be)]))
            eng.close()
            return summ.as_dict()

        t, summ = _median_time(forward)
        rows.append({"step": "RTK forward", "tool": "ours (rtkpos per epoch)", "epochs": summ["epochs"],
                     "seconds": t, "ms_per_epoch": 1000 * t / summ["epochs"],
                     "fix_rate": summ["fix_rate"]})
        if shutil.which("rnx2rtkp"):
            fconf = work / "fwd.conf"
            fconf.write_text(conf.read_text() + "\npos1-soltype       =forward\n")
            t, _ = _median_time(lambda: subprocess.run(
                ["rnx2rtkp", "-k", str(fconf), "-o", str(work / "f.pos"), str(rover), str(base), str(nav)],
                capture_output=True, check=True))
            lines = [ln.split() for ln in (work / "f.pos").read_text().splitlines() if not ln.startswith("%")]
            rows.append({"step": "RTK forward", "tool": "rnx2rtkp (Debian 2.4.3 b34)", "epochs": len(lines),
                         "seconds": t, "ms_per_epoch": 1000 * t / len(lines),
                         "fix_rate": sum(1 for w in lines if w[5] == "1") / len(lines)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"title": "RTCM encode/decode and RTK: pyrtklib (ours) beside RTKLIB tools (GEONET 3034 + car, 360 epochs)",
            "rows": rows,
            "notes": ["rnx2rtkp/convbin times include process start and file I/O",
                      "a 1 Hz station needs < 1000 ms per epoch; a rover < 1000 ms per epoch"]}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
