"""Position files on real data: RTKLIB rnx2rtkp's own llh, xyz and NMEA output of the GEONET car rover,
read by cors.solutions, agree with each other (llh vs ECEF through pyproj, GGA via pynmeagps)."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from pyproj import Geod

from conftest import GNSS_DIR, require_shared
from cors.solutions import SolutionFileError, decimal_years, read_gga, read_pos

SET = GNSS_DIR / "geonet3034_sept_2021265"
GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def rtklib_outputs(tmp_path_factory):
    require_shared(SET / "SEPT265G.21O")
    if shutil.which("rnx2rtkp") is None:
        pytest.skip("Debian rtklib (rnx2rtkp) absent")
    out = tmp_path_factory.mktemp("rtk")
    conf = (SET / "rnx2rtkp.conf").read_text()
    conf = conf.replace("out-solformat      =xyz", "out-solformat      =llh")
    conf = conf.replace("out-timeform       =tow", "out-timeform       =hms")
    assert "=llh" in conf and "=hms" in conf
    (out / "llh.conf").write_text(conf)
    inputs = [str(SET / f) for f in ("SEPT265G.21O", "3034265G.21O", "SEPT2650.21P")]
    for name, extra in (("llh.pos", []), ("gga.nmea", ["-n"])):
        subprocess.run(["rnx2rtkp", "-k", str(out / "llh.conf"), *extra, "-o", str(out / name), *inputs],
                       check=True, capture_output=True, timeout=300)
    return out


@pytest.mark.slow
@pytest.mark.shared_data
def test_llh_xyz_and_gga_of_one_rtk_run_agree(rtklib_outputs):
    llh = read_pos(rtklib_outputs / "llh.pos")
    xyz = read_pos(SET / "reference_rnx2rtkp.pos")  # same conf, xyz-ecef and GPS week/tow
    assert len(llh) == len(xyz) == 360 and llh.time_system == xyz.time_system == "GPST"
    assert np.array_equal(llh.time, xyz.time)
    assert str(llh.time[0]) == "2021-09-22T06:30:00.000" and (llh.quality == 1).mean() > 0.5
    d = GEOD.inv(llh.lon, llh.lat, xyz.lon, xyz.lat)[2]
    assert d.max() < 1e-3 and np.abs(llh.height - xyz.height).max() < 1e-3
    assert abs(llh.lat[0] - 35.342058) < 1e-6 and abs(llh.lon[0] - 139.521986) < 1e-6  # README start point

    gga = read_gga(rtklib_outputs / "gga.nmea")
    assert gga.time_system == "UTC" and len(gga) == len(llh)
    # NMEA time is UTC: GPST - 18 s in 2021
    assert np.array_equal(gga.time + np.timedelta64(18, "s"), llh.time)
    d = GEOD.inv(gga.lon, gga.lat, llh.lon, llh.lat)[2]
    assert d.max() < 2e-3 and np.abs(gga.height - llh.height).max() < 2e-3
    years = llh.epochs()
    assert abs(years[0] - (2021 + (264 + (6.5 / 24)) / 365)) < 1e-6


def test_bad_files(tmp_path):
    p = tmp_path / "x.pos"
    p.write_text("% nothing\n")
    with pytest.raises(SolutionFileError, match="no solution lines"):
        read_pos(p)
    p.write_text("%  GPST latitude(deg) longitude(deg) height(m)\n2026/01/01 00:00:00.000 91.0 10.0 1.0 1 9\n")
    with pytest.raises(SolutionFileError, match="outside"):
        read_pos(p)
    p.write_text("%  GPST latitude(deg) longitude(deg) height(m)\n2026/01/01 00:00:00.000 abc 10.0 1.0 1 9\n")
    with pytest.raises(SolutionFileError, match="not an RTKLIB solution file"):
        read_pos(p)
    n = tmp_path / "x.nmea"
    n.write_text("$GPGGA,000000.00,,,,,0,00,99.99,,,,,,*66\n")
    with pytest.raises(SolutionFileError, match="no GGA sentence with a fix"):
        read_gga(n)
    assert decimal_years(np.array(["2026-07-02T12:00:00"], dtype="datetime64[ms]"))[0] == pytest.approx(2026.5, abs=2e-3)
