"""The vehicle loop over NTRIP (our caster, a replayed real base) equals RTKLIB's forward solution."""
from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from cors.demo import DEMO_FILES, GEONET_3034_ECEF, Pair, rtk_session, run_rtk_demo
from cors.errors import CorsError
from cors.rover import RoverConfig, parse_caster
from cors.rtk import DEFAULT_CONF, gpst_week_tow
from tests.gnss.rtk_helpers import (
    DATA_SETS,
    GEONET_3034,
    fix_rate,
    fixed_differences,
    rnx2rtkp,
)

MAPSVC = str(Path(sys.executable).with_name("mapsvc"))


def _as_pos(statuses) -> dict:
    out = {}
    for st in statuses:
        if st.stat:
            week, tow = gpst_week_tow(st.gpst)
            out[(str(week), f"{tow:.3f}")] = (*st.ecef, st.stat)
    return out


@pytest.mark.parametrize("ds, push_version, rover_version",
                         [(DATA_SETS[0], 1, 2), (DATA_SETS[1], 2, 1)], ids=lambda v: getattr(v, "name", str(v)))
def test_rover_over_caster_equals_rnx2rtkp_forward(ds, push_version, rover_version, tmp_path):
    """Replay base -> our caster -> `mapsvc rover` (CLI) and the rover API, beside rnx2rtkp forward."""
    pair = Pair(ds.path(ds.base), ds.path(ds.rover), [ds.path(ds.nav)], ds.base_ecef, ds.conf,
                ds.station_id, ds.mountpoint)
    speed = 100.0 if ds is GEONET_3034 else 3000.0
    cli: dict = {}

    async def start_cli(port, mount, user, token):
        cli["proc"] = await asyncio.create_subprocess_exec(
            MAPSVC, "rover", str(pair.rover_obs), "--nav", str(pair.nav[0]), "--conf", str(ds.conf),
            "--caster", f"ntrip://{user}:{token}@127.0.0.1:{port}/{mount}", "--ntrip-version",
            str(rover_version), "--json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ, MAPSVC_HOME=str(tmp_path / "cli-home")))

    async def main():
        summary = await rtk_session(tmp_path / "home", pair, speed=speed, push_version=push_version,
                                    rover_version=rover_version, on_up=start_cli, extra_clients=1)
        out, err = await asyncio.wait_for(cli["proc"].communicate(), 60)
        return summary, out.decode(), err.decode(), cli["proc"].returncode

    summary, out, err, rc = asyncio.run(main())
    ref = rnx2rtkp(ds.conf, ds.path(ds.rover), ds.path(ds.base), ds.path(ds.nav), tmp_path / "fwd.pos",
                   forward=True)
    ours = _as_pos(summary["statuses"])
    assert summary["epochs"] == len(summary["statuses"]) > 0
    assert summary["fix_rate"] == pytest.approx(fix_rate(ref), abs=1e-12)
    assert {k: v[3] for k, v in ours.items()} == {k: v[3] for k, v in ref.items()}
    diffs = fixed_differences(ours, ref)
    assert diffs and max(diffs) < 0.001
    assert rc == 0, err
    cli_summary = json.loads(out.strip().splitlines()[-1])
    assert cli_summary["fix_rate"] == summary["fix_rate"] and cli_summary["epochs"] == summary["epochs"]


def test_rover_on_nearest_mountpoint_sends_gga(tmp_path):
    """NTRIP 1.0 rover on NEAREST: its GGA (from the RINEX header) gets it the replayed station."""
    ds = DATA_SETS[1]
    pair = Pair(ds.path(ds.base), ds.path(ds.rover), [ds.path(ds.nav)], ds.base_ecef, ds.conf,
                ds.station_id, ds.mountpoint)
    summary = asyncio.run(rtk_session(tmp_path / "home", pair, speed=3000.0, rover_version=1,
                                      rover_mountpoint="NEAREST"))
    ref = rnx2rtkp(ds.conf, ds.path(ds.rover), ds.path(ds.base), ds.path(ds.nav), tmp_path / "fwd.pos",
                   forward=True)
    assert summary["fix_rate"] == pytest.approx(fix_rate(ref), abs=1e-12) and summary["fix"] > 0


def test_demo_with_cssrlib_data_prints_fixes(tmp_path, capsys):
    """`make demo`'s RTK part: the GEONET base shipped in cssrlib, rover over our caster."""
    summary = run_rtk_demo(tmp_path, speed=60.0)
    printed = capsys.readouterr().out
    assert summary["epochs"] == 60 and printed.count(" fix ") >= summary["fix"] > 0
    # the same answer as RTKLIB's forward solution with the rover's default options
    from cors.demo import cssrlib_data

    files = cssrlib_data()
    conf = tmp_path / "default.conf"
    conf.write_text(DEFAULT_CONF.replace("ant2-postype       =rtcm", "ant2-postype       =xyz")
                    + "".join(f"ant2-pos{i + 1}          ={v}\n" for i, v in enumerate(GEONET_3034_ECEF)))
    ref = rnx2rtkp(conf, files["rover"], files["base"], files["nav"], tmp_path / "demo.pos", forward=True)
    assert summary["fix_rate"] == pytest.approx(fix_rate(ref), abs=1e-12)
    assert set(DEMO_FILES) == {"base", "rover", "nav"}


def test_rover_refuses_bad_credentials_and_urls(tmp_path):
    with pytest.raises(CorsError):
        parse_caster("http://h/M")
    with pytest.raises(CorsError):
        parse_caster("ntrip://h:2101/")
    ds = GEONET_3034
    pair = Pair(ds.path(ds.base), ds.path(ds.rover), [ds.path(ds.nav)], ds.base_ecef, ds.conf,
                ds.station_id, ds.mountpoint)
    seen = {}

    async def wrong_token(port, mount, user, token):
        cfg = RoverConfig(pair.rover_obs, f"ntrip://{user}:not-the-token@127.0.0.1:{port}/{mount}",
                          pair.nav, ds.conf, connect_timeout=5)
        from cors.rover import run_rover

        with pytest.raises(CorsError, match="401"):
            await run_rover(cfg)
        seen["refused"] = True
        raise _Stop

    class _Stop(Exception):
        pass

    with pytest.raises(_Stop):
        asyncio.run(rtk_session(tmp_path / "home", pair, speed=1000.0, on_up=wrong_token))
    assert seen["refused"]
