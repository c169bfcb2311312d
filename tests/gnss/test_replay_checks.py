"""`mapsvc replay` checks its inputs: the station position against the data's own SPP (issue 14
item 13) and truncated or corrupt RINEX (issue 14 item 10). Real data from ../shared/data/gnss."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from cors.rtcm_encode import read_rinex
from cors.station_position import position_warning, spp_position
from tests.gnss.rtk_helpers import GEONET_3034


def _replay(tmp_path, obs, *args):
    env = dict(os.environ, MAPSVC_HOME=str(tmp_path / "home"))
    out = tmp_path / "out.rtcm3"
    return subprocess.run([sys.executable, "-m", "mapsvc", "replay", str(obs), "--to", f"file:{out}",
                           "--speed", "1000", "--epochs", "3", *args],
                          env=env, capture_output=True, text=True, timeout=120)


def _shifted(ecef, dx):
    return (ecef[0] + dx, ecef[1], ecef[2])


# --- item 13: station position vs the data's own single-point solution ----------------------------

def test_spp_of_real_cors_data_is_metre_level_near_the_gsi_coordinate():
    ds = GEONET_3034
    src = read_rinex(ds.path(ds.base), [ds.path(ds.nav)])
    spp = spp_position(src)
    assert spp is not None
    assert sum((a - b) ** 2 for a, b in zip(spp, ds.base_ecef)) ** 0.5 < 10.0
    assert position_warning(src, ds.base_ecef) is None
    warn = position_warning(src, _shifted(ds.base_ecef, 5000.0))
    assert warn and "5000." in warn and str(ds.base) in warn


def test_cli_warns_on_a_station_position_5_km_off(tmp_path):
    ds = GEONET_3034
    obs, nav = ds.path(ds.base), ds.path(ds.nav)
    true = ",".join(str(v) for v in ds.base_ecef)
    off = ",".join(str(v) for v in _shifted(ds.base_ecef, 5000.0))
    good = _replay(tmp_path, obs, "--nav", str(nav), "--ecef", true)
    assert good.returncode == 0, good.stderr
    assert "warning" not in good.stderr
    bad = _replay(tmp_path, obs, "--nav", str(nav), "--ecef", off)
    assert bad.returncode == 0, bad.stderr
    lines = [ln for ln in bad.stderr.splitlines() if "warning" in ln]
    assert len(lines) == 1 and "station position" in lines[0]
    assert 4990 < float(re.search(r"is ([0-9.]+) m", lines[0]).group(1)) < 5010
    loose = _replay(tmp_path, obs, "--nav", str(nav), "--ecef", off, "--position-tolerance-m", "6000")
    assert loose.returncode == 0 and "warning" not in loose.stderr
