"""Network RTK (VRS) on CatNet: a rover beside its nearest and farthest real base, and ablations.

Honest protocol (docs/network-rtk.md): the rover station is left out of all network processing;
the virtual station sits at the rover's own single-point position (mean of its first 10 minutes of
RTKLIB single solutions); the network runs causally, forward only; every arm runs the same rover:
Debian ``rnx2rtkp`` with the shared reference conf in forward mode (broadcast ionosphere,
Saastamoinen, no atmosphere estimation). Wrong fix = horizontal error > 5 cm vs the header
coordinate. TTFF = median over 24 one-hour cold starts (60 min when an hour never fixes).
Run alone: ``python -m benchmarks vrs`` (a few minutes: the full day, two rovers).
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "gnss" / "network_catnet_2010077"
SCENARIOS = {  # rover: (network stations, nearest base, farthest base)
    "MATA": (("GARR", "CREU", "EBRE"), "GARR", "EBRE"),
    "GARR": (("MATA", "CREU", "EBRE"), "MATA", "CREU"),
}
ARMS = {  # name: (interpolation, corrections)
    "VRS plane": ("plane", ("iono", "tropo")),
    "VRS idw": ("idw", ("iono", "tropo")),
    "VRS geometry only": ("plane", ()),
    "VRS iono only": ("plane", ("iono",)),
    "VRS tropo only": ("plane", ("tropo",)),
}
DAY = (7, 18)  # GPST hours [7, 18)


def _conf(work: Path) -> Path:
    text = (DATA / "rnx2rtkp.conf").read_text()
    lines = []
    for ln in text.splitlines():
        if ln.startswith("pos1-soltype"):
            ln = "pos1-soltype       =forward"
        elif ln.startswith("file-rcvantfile"):
            ln = f"file-rcvantfile    ={DATA / 'igs05_1525.atx'}"
        lines.append(ln)
    conf = work / "forward.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _rnx2rtkp(conf: Path, base_pos, rover: Path, base: Path, out: Path, span=None) -> list[list[str]]:
    cmd = ["rnx2rtkp", "-k", str(conf), "-r", *(f"{v:.4f}" for v in base_pos), "-o", str(out)]
    if span:
        cmd += ["-ts", *span[0], "-te", *span[1]]
    subprocess.run(cmd + [str(rover), str(base), str(DATA / "brdc0770.10n")],
                   capture_output=True, check=True)
    return [ln.split() for ln in out.read_text().splitlines() if ln and not ln.startswith("%")]


def _single_point(rover: Path, work: Path) -> np.ndarray:
    conf = work / "single.conf"
    conf.write_text("pos1-posmode=single\npos1-navsys=1\npos1-elmask=15\npos1-ionoopt=brdc\n"
                    "pos1-tropopt=saas\nout-solformat=xyz\nout-timeform=tow\n")
    out = work / "spp.pos"
    subprocess.run(["rnx2rtkp", "-k", str(conf), "-te", "2010/03/18", "00:09:30", "-o", str(out),
                    str(rover), str(DATA / "brdc0770.10n")], capture_output=True, check=True)
    rows = [ln.split() for ln in out.read_text().splitlines() if ln and not ln.startswith("%")]
    return np.mean([[float(r[2]), float(r[3]), float(r[4])] for r in rows], axis=0)


def _metrics(rows, truth, enu_m) -> dict:
    if not rows:
        return {"fix_%": 0.0}
    q = np.array([int(r[5]) for r in rows])
    tow = np.array([float(r[1]) for r in rows])
    hour = (tow % 86400) / 3600
    xyz = np.array([[float(r[2]), float(r[3]), float(r[4])] for r in rows])
    enu = (xyz - truth) @ enu_m.T
    h = np.hypot(enu[:, 0], enu[:, 1])
    fix = q == 1

    def part(mask) -> dict:
        f = fix & mask
        if not mask.any():
            return {}
        out = {"fix": float(f.sum() / mask.sum())}
        if f.any():
            out.update(wrong=float(np.mean(h[f] > 0.05)), hrms=float(np.sqrt(np.mean(h[f] ** 2))),
                       hp95=float(np.percentile(h[f], 95)), up=float(np.mean(enu[f, 2])))
        return out

    day = (hour >= DAY[0]) & (hour < DAY[1])
    return {"all": part(np.ones_like(fix)), "day": part(day), "night": part(~day)}


def _ttff(conf, base_pos, rover, base, work) -> tuple[float, int]:
    """Median minutes to first fix over 24 one-hour cold starts; hours that never fix count 60."""
    minutes, never = [], 0
    for hh in range(24):
        span = (("2010/03/18", f"{hh:02d}:00:00"), ("2010/03/18", f"{hh:02d}:59:30"))
        rows = _rnx2rtkp(conf, base_pos, rover, base, work / "w.pos", span)
        first = next((float(r[1]) for r in rows if r[5] == "1"), None)
        if first is None:
            minutes.append(60.0)
            never += 1
        else:
            minutes.append(((first % 86400) - hh * 3600) / 60 + 0.5)  # +1 epoch: fixed at its end
    return statistics.median(minutes), never


def run() -> dict:
    title = "Network RTK (VRS) vs real bases, CatNet 2010-03-18, forward rnx2rtkp rover"
    if not DATA.is_dir() or not shutil.which("rnx2rtkp"):
        return {"title": title, "rows": [], "notes": ["CatNet data or rnx2rtkp absent: skipped"]}
    from cors.network.engine import NetworkEngine
    from cors.network.postprocess import Output, virtual_rinex_set
    from cors.network.sites import enu_matrix, load_site

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    nav, atx = DATA / "brdc0770.10n", DATA / "igs05_1525.atx"
    rows, notes, speed = [], [], []
    work = Path(tempfile.mkdtemp(prefix="bench-vrs-"))
    try:
        conf = _conf(work)
        for rover, (network, nearest, farthest) in SCENARIOS.items():
            rover_path = DATA / f"{rover}0770.10o"
            rsite = load_site(rover_path, nav=[nav])
            truth, enu_m = rsite.ecef, enu_matrix(rsite.llh)
            sites = [load_site(DATA / f"{n}0770.10o", nav=[nav], atx=atx) for n in network]
            engine = NetworkEngine(sites, sites[0].source.nav)
            position = _single_point(rover_path, work)
            outputs = [Output(work / f"{rover}-{i}.obs", m, c) for i, (m, c) in enumerate(ARMS.values())]
            summary = virtual_rinex_set(engine, position, outputs)
            engine.close()
            tm = summary["timing"]
            speed.append({"rover": rover, "baselines": len(summary["baselines"]),
                          "ms_per_epoch_per_baseline": 1000 * tm["network_s"] / max(tm["baseline_epochs"], 1),
                          "ms_per_virtual_epoch": 1000 * tm["virtual_s"] / max(tm["virtual_epochs"], 1)})
            notes.append(f"{rover}: VRS {np.linalg.norm(position - truth):.1f} m from the truth (single point); "
                         "network baselines fixed (L1, widelane): " + ", ".join(
                             f"{k} {v['km']} km {100 * v['fix_rate']:.0f} % (WL {100 * v['wl_fix_rate']:.0f} %)" for k, v in summary["baselines"].items()))
            arms = [(f"base {nearest} (nearest)", sites[network.index(nearest)].ecef if nearest in network else None,
                     DATA / f"{nearest}0770.10o"),
                    (f"base {farthest} (farthest)", None, DATA / f"{farthest}0770.10o")]
            arms = [(n, load_site(p).ecef, p) for n, _, p in arms]
            arms += [(name, position, o.path) for name, o in zip(ARMS, outputs)]
            for name, base_pos, base_path in arms:
                full = _rnx2rtkp(conf, base_pos, rover_path, base_path, work / "full.pos")
                m = _metrics(full, truth, enu_m)
                ttff, never = _ttff(conf, base_pos, rover_path, base_path, work)
                a, d, n = m.get("all", {}), m.get("day", {}), m.get("night", {})
                rows.append({
                    "rover": rover, "arm": name,
                    "km": round(float(np.linalg.norm(np.asarray(base_pos) - truth)) / 1000, 1),
                    "fix_%": round(100 * a.get("fix", 0), 1), "wrong_%": round(100 * a.get("wrong", 0), 1),
                    "hrms_cm": round(100 * a.get("hrms", np.nan), 1), "hp95_cm": round(100 * a.get("hp95", np.nan), 1),
                    "up_bias_cm": round(100 * a.get("up", np.nan), 1),
                    "ttff_med_min": round(ttff, 1), "hours_never_fixed": never,
                    "day_fix_%": round(100 * d.get("fix", 0), 1), "day_wrong_%": round(100 * d.get("wrong", 0), 1),
                    "day_hrms_cm": round(100 * d.get("hrms", np.nan), 1),
                    "night_fix_%": round(100 * n.get("fix", 0), 1), "night_wrong_%": round(100 * n.get("wrong", 0), 1),
                    "night_hrms_cm": round(100 * n.get("hrms", np.nan), 1)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    notes += ["targets (MATA): fix >= 90 %, wrong <= 1 %, hrms <= 2 cm, TTFF median <= 3 min",
              "speed: " + "; ".join(f"{s['rover']}: {s['ms_per_epoch_per_baseline']:.1f} ms per epoch per baseline, "
                                    f"{s['ms_per_virtual_epoch']:.2f} ms per virtual station epoch" for s in speed)]
    return {"title": title, "rows": rows, "notes": notes, "speed": speed}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
