"""GLONASS through the encoder, on real data: the legacy GLONASS stream `testglo.rtcm3` (1012 + 1020) is turned
into RINEX 3 by RTKLIB's `convbin`, then re-encoded by us as MSM7 (1087), 1230 (code-phase biases) and 1020
(GLONASS ephemerides), checked by pyrtcm and decoded back by RTKLIB."""
from __future__ import annotations

import io
import shutil
import subprocess

import pyrtklib as rtk
import pytest
from pyrtcm import RTCMReader
from pyrtcm.rtcmtypes_core import VALCKSUM

from conftest import GNSS_DIR
from cors.rtcm_encode import encode_rinex, gtime_seconds, read_rinex


@pytest.fixture(scope="module")
def glonass_rinex(tmp_path_factory):
    src = GNSS_DIR / "rtcm3" / "testglo.rtcm3"
    if not src.exists():
        pytest.skip("../shared/data/gnss/rtcm3 is absent: real GLONASS stream needed")
    if not shutil.which("convbin"):
        pytest.skip("RTKLIB convbin not installed (make setup installs Debian's rtklib)")
    d = tmp_path_factory.mktemp("glo")
    subprocess.run(["convbin", "-r", "rtcm3", "-tr", "2012/10/12 23:07:00", "-v", "3.03", "-od", "-os",
                    "-o", str(d / "glo.obs"), "-n", str(d / "glo.nav"), str(src)],
                   check=True, capture_output=True, timeout=60)
    return d / "glo.obs", d / "glo.nav"


def test_glonass_msm7_biases_and_ephemerides(glonass_rinex):
    obs, nav = glonass_rinex
    source = read_rinex(obs, [nav])
    assert source.obs.n > 0
    epochs = list(encode_rinex(obs, [nav], station_id=7, ecef=(-3869297.5138, 3436571.3345, 3717369.3757)))
    types = [f.msg_type for e in epochs for f in e.frames]
    assert 1087 in types and 1230 in types and 1020 in types  # GLONASS MSM7, biases, ephemerides
    stream = b"".join(e.raw for e in epochs)
    parsed = [m for _, m in RTCMReader(io.BytesIO(stream), validate=VALCKSUM, quitonerror=2)]
    assert [str(m.identity) for m in parsed] == [str(t) for t in types]
    # 1230 goes with every station message (1006) of a GLONASS station
    assert types.count(1230) == types.count(1006) >= 1
    # RTKLIB decodes our GLONASS observations back to the RINEX values (pseudorange within 1 mm)
    dec = rtk.rtcm_t()
    rtk.init_rtcm(dec)
    dec.time = source.obs.data[0].time
    got = {}
    for byte in stream:
        if rtk.input_rtcm3(dec, byte) == 1:
            for k in range(dec.obs.n):
                o = dec.obs.data[k]
                got[(round(gtime_seconds(o.time), 3), o.sat)] = list(o.P)
    rtk.free_rtcm(dec)
    worst, compared = 0.0, 0
    for k in range(source.obs.n):
        o = source.obs.data[k]
        p = got.get((round(gtime_seconds(o.time), 3), o.sat))
        assert p is not None
        for f in range(2):
            if o.P[f]:
                worst = max(worst, abs(p[f] - o.P[f]))
                compared += 1
    assert compared > 100 and worst <= 1e-3, worst
