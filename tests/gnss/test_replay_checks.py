"""`mapsvc replay` checks its inputs: the station position against the data's own SPP (issue 14
item 13) and truncated or corrupt RINEX (issue 14 item 10). Real data from ../shared/data/gnss."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from cors.rinex_check import RinexBroken, check_rinex
from cors.rtcm_encode import read_rinex
from cors.station_position import position_warning, spp_position
from tests.gnss.rtk_helpers import GEONET_3034, GEONET_3040


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


# --- item 10: truncated or corrupt RINEX --------------------------------------------------------------

def _cut_inside_last_record(src, dst, marker: str):
    """Copy ``src`` and cut it in the middle of a line of its last record (starting with ``marker``)."""
    text = src.read_text(encoding="latin-1")
    last = text.rindex("\n" + marker) + 1
    cut = text.index("\n", last) + 1 + 20  # 20 characters into the record's second line
    dst.write_text(text[:cut], encoding="latin-1")
    return text[last:text.index("\n", last)]


def _corrupt_line(src, dst, line_no: int, col: int):
    lines = src.read_text(encoding="latin-1").splitlines(keepends=True)
    ln = lines[line_no]
    lines[line_no] = ln[:col] + "x#@!" + ln[col + 4:]
    dst.write_text("".join(lines), encoding="latin-1")


def _obs_line_in_the_middle(path):
    lines = path.read_text(encoding="latin-1").splitlines()
    mid = len(lines) // 2
    return next(i for i in range(mid, len(lines)) if lines[i][:1] in "G")


def test_obs_cut_in_its_last_epoch_is_replayed_with_one_warning(tmp_path):
    ds = GEONET_3034
    obs = tmp_path / ds.base
    epoch_line = _cut_inside_last_record(ds.path(ds.base), obs, ">")
    run = _replay(tmp_path, obs, "--nav", str(ds.path(ds.nav)), "--ecef",
                  ",".join(map(str, ds.base_ecef)))
    assert run.returncode == 0, run.stderr
    warnings = [ln for ln in run.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1, run.stderr
    assert str(obs) in warnings[0] and epoch_line[2:29].strip() in warnings[0]
    assert "cut off" in warnings[0]


def test_nav_cut_in_its_last_record_is_replayed_with_one_warning(tmp_path):
    ds = GEONET_3034
    nav = tmp_path / ds.nav
    text = ds.path(ds.nav).read_text(encoding="latin-1")
    last = max(text.rindex("\n" + s) for s in "GEJ") + 1
    _cut_inside_last_record(ds.path(ds.nav), nav, text[last:last + 3])
    run = _replay(tmp_path, ds.path(ds.base), "--nav", str(nav), "--ecef",
                  ",".join(map(str, ds.base_ecef)))
    assert run.returncode == 0, run.stderr
    warnings = [ln for ln in run.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and str(nav) in warnings[0]
    assert text[last:last + 23].strip() in warnings[0]


def test_obs_broken_in_the_middle_is_refused(tmp_path):
    for ds, name in ((GEONET_3034, GEONET_3034.base), (GEONET_3040, GEONET_3040.base)):
        src = ds.path(name)
        obs = tmp_path / name
        line_no = _obs_line_in_the_middle(src) if ds is GEONET_3034 else 500
        _corrupt_line(src, obs, line_no, 6)
        run = _replay(tmp_path, obs, "--ecef", ",".join(map(str, GEONET_3034.base_ecef)))
        assert run.returncode == 2, run.stderr
        assert run.stderr.count("\n") == 1 and run.stderr.startswith("mapsvc: error:")
        assert str(obs) in run.stderr and f"line {line_no + 1}" in run.stderr
        assert not (tmp_path / "out.rtcm3").exists()


def test_rinex2_obs_and_nav_cut_at_the_end(tmp_path):
    ds = GEONET_3040
    obs, nav = tmp_path / ds.base, tmp_path / ds.nav
    epoch_line = _cut_inside_last_record(ds.path(ds.base), obs, " 05  4  2")
    nav.write_bytes(ds.path(ds.nav).read_bytes()[:-100])
    warning = check_rinex(obs)
    assert "cut off" in warning and str(obs) in warning and epoch_line[1:26].strip() in warning
    assert "cut off" in check_rinex(nav)
    assert check_rinex(ds.path(ds.base)) is None and check_rinex(ds.path(ds.nav)) is None
    broken = tmp_path / ("mid_" + ds.nav)
    _corrupt_line(ds.path(ds.nav), broken, 40, 30)
    with pytest.raises(RinexBroken, match="line 41"):
        check_rinex(broken)


def test_rinex_305_glonass_records_with_a_fifth_line_are_whole(tmp_path):
    """RINEX 3.05 added a line to GLONASS records: a whole record must not read as broken."""
    value = " 1.000000000000E+00"
    first = "R01 2021 09 22 02 15 00" + value * 3 + "\n"
    body = first + ("    " + value * 4 + "\n") * 4
    nav = tmp_path / "glo305.rnx"
    nav.write_text(f"{'     3.05':<20}{'N: GNSS NAV DATA':<20}{'R: GLONASS':<20}RINEX VERSION / TYPE\n"
                   f"{'':60}END OF HEADER\n" + body + body.replace("R01", "R02"))
    assert check_rinex(nav) is None
    nav.write_text(nav.read_text()[:-len(body) + len(first) + 30])
    assert "cut off" in check_rinex(nav) and "R02" in check_rinex(nav)
