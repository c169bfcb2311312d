"""End to end: a real base replayed through a caster, captured by a client, turned back into RINEX by
RTKLIB's convbin and post-processed by rnx2rtkp with the reference conf: the fix rate and the fixed
positions must match the reference solution in ../shared/data/gnss.

Casters: ours (in-process, NTRIP 1.0 SOURCE and 2.0 POST uploads) and RTKLIB's str2str. str2str's
caster can only listen on all interfaces, so that chain runs inside a private network namespace
(``unshare -n``) that has nothing but loopback.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cors.demo import Pair, rtk_session
from tests.gnss.rtk_helpers import (
    DATA_SETS,
    GEONET_3034,
    REPO,
    convbin,
    fix_rate,
    fixed_differences,
    need_tool,
    read_pos,
    rnx2rtkp,
)


def _check_against_reference(ds, capture: Path, tmp_path: Path) -> dict:
    obs = convbin(capture, ds.approx_time, tmp_path / "base_from_rtcm.obs")
    sol = rnx2rtkp(ds.conf, ds.path(ds.rover), obs, ds.path(ds.nav), tmp_path / "replayed.pos")
    ref = read_pos(ds.reference)
    diffs = fixed_differences(sol, ref)
    assert set(sol) == set(ref)
    assert fix_rate(sol) == pytest.approx(fix_rate(ref), abs=1e-12)
    assert diffs and max(diffs) <= 0.01, max(diffs)
    return {"fix_rate": fix_rate(sol), "max_diff_m": max(diffs), "common_fixes": len(diffs)}


@pytest.mark.parametrize("ds, push_version", [(DATA_SETS[0], 2), (DATA_SETS[1], 1)],
                         ids=lambda v: getattr(v, "name", f"ntrip{v}"))
def test_replay_through_our_caster_reproduces_reference(ds, push_version, tmp_path):
    need_tool("str2str")
    pair = Pair(ds.path(ds.base), ds.path(ds.rover), [ds.path(ds.nav)], ds.base_ecef, ds.conf,
                ds.station_id, ds.mountpoint)
    capture = tmp_path / "capture.rtcm3"
    procs = []

    def start_capture(port, mount, user, token):
        # Debian RTKLIB str2str as the NTRIP 1.0 client that records what a vehicle receives
        procs.append(subprocess.Popen(["str2str", "-in", f"ntrip://{user}:{token}@127.0.0.1:{port}/{mount}",
                                       "-out", f"file://{capture}"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))

    speed = 100.0 if ds is GEONET_3034 else 3000.0
    try:
        asyncio.run(rtk_session(tmp_path / "home", pair, speed=speed, push_version=push_version,
                                on_up=start_capture, extra_clients=1))
        time.sleep(0.3)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    _check_against_reference(ds, capture, tmp_path)


# --- str2str as the caster, inside a private network namespace ------------------------------------

def _netns_available() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    r = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True)
    return r.returncode == 0


def _chain(folder: str, work: str) -> None:
    """Runs inside the namespace: str2str caster fed by our replay (tcp), str2str capture, our rover."""
    from cors.replay import ReplayConfig, replay
    from cors.rover import RoverConfig, run_rover
    from cors.rtcm_encode import read_rinex

    ds = next(d for d in DATA_SETS if d.folder == folder)
    work_dir = Path(work)
    caster = subprocess.Popen(["str2str", "-in", "tcpsvr://:2102", "-out", "ntripc://:2101/BASE"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    capture = None
    try:
        time.sleep(0.5)
        capture = subprocess.Popen(["str2str", "-in", "ntrip://127.0.0.1:2101/BASE", "-out",
                                    f"file://{work_dir / 'capture.rtcm3'}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        async def main():
            rover_cfg = RoverConfig(ds.path(ds.rover), "ntrip://car:pw@127.0.0.1:2101/BASE",
                                    [ds.path(ds.nav)], ds.conf, ntrip_version=1)
            rover_task = asyncio.create_task(run_rover(rover_cfg))
            await asyncio.sleep(1.0)  # both clients attached before the first epoch
            ecef = ds.base_ecef or read_rinex(ds.path(ds.base)).header_ecef
            speed = 100.0 if ds is GEONET_3034 else 3000.0
            stats = await replay(ReplayConfig(ds.path(ds.base), [ds.path(ds.nav)], ecef, speed=speed,
                                              station_id=int(ds.station_id)), "tcp://127.0.0.1:2102")
            result = await rover_task
            return stats.as_dict(), result

        stats, result = asyncio.run(main())
        time.sleep(0.3)
        statuses = [[s.gpst, s.stat, *s.ecef] for s in result.statuses]
        (work_dir / "chain.json").write_text(json.dumps({"replay": stats, "rover": result.summary,
                                                         "statuses": statuses}))
    finally:
        for p in (capture, caster):
            if p is not None:
                p.terminate()
                p.wait(10)


@pytest.mark.parametrize("ds", DATA_SETS, ids=lambda d: d.name)
def test_replay_through_str2str_caster_reproduces_reference(ds, tmp_path):
    need_tool("str2str")
    ds.path(ds.base)
    if not _netns_available():
        pytest.skip("unshare -n not permitted here: str2str's caster cannot be kept off real interfaces")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                          sys.executable, str(Path(__file__)), ds.folder, str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=150, cwd=str(REPO))
    assert run.returncode == 0, run.stderr[-3000:]
    chain = json.loads((tmp_path / "chain.json").read_text())
    _check_against_reference(ds, tmp_path / "capture.rtcm3", tmp_path)
    # the rover fed by str2str equals RTKLIB's forward solution
    fwd = rnx2rtkp(ds.conf, ds.path(ds.rover), ds.path(ds.base), ds.path(ds.nav), tmp_path / "fwd.pos",
                   forward=True)
    assert chain["rover"]["fix_rate"] == pytest.approx(fix_rate(fwd), abs=1e-12)


if __name__ == "__main__":
    _chain(sys.argv[1], sys.argv[2])
