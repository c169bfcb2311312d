"""Epoch-wise RTKLIB rtkpos (cors.rtk) against Debian rnx2rtkp forward with the same conf (no network)."""
from __future__ import annotations

import pytest

from cors.errors import CorsError
from cors.rtcm_encode import gtime_seconds, read_rinex
from cors.rtk import RtkEngine, Summary, gpst_week_tow, load_options
from tests.gnss.rtk_helpers import DATA_SETS, fix_rate, fixed_differences, rnx2rtkp


@pytest.mark.parametrize("ds", DATA_SETS, ids=lambda d: d.name)
def test_engine_on_files_equals_rnx2rtkp_forward(ds, tmp_path):
    rover = read_rinex(ds.path(ds.rover), [ds.path(ds.nav)])
    base = read_rinex(ds.path(ds.base))
    engine = RtkEngine(load_options(ds.conf), rover.nav)
    engine.set_base_position(base.header_ecef)  # used only where the conf says rinexhead
    base_times = [gtime_seconds(base.obs.data[s].time) for s, _ in base.epochs]
    ours, summary, bi = {}, Summary(), 0
    for start, end in rover.epochs:
        t = gtime_seconds(rover.obs.data[start].time)
        while bi + 1 < len(base_times) and base_times[bi + 1] <= t + 0.005:
            bi += 1
        bs, be = base.epochs[bi]
        recs = [base.obs.data[k] for k in range(bs, be)]
        for r in recs:
            r.rcv = 2
        st = engine.solve([rover.obs.data[k] for k in range(start, end)], recs)
        summary.add(st)
        week, tow = gpst_week_tow(st.gpst)
        ours[(str(week), f"{tow:.3f}")] = (*st.ecef, st.stat)
    engine.close()
    ref = rnx2rtkp(ds.conf, ds.path(ds.rover), ds.path(ds.base), ds.path(ds.nav), tmp_path / "fwd.pos",
                   forward=True)
    assert summary.as_dict()["fix_rate"] == pytest.approx(fix_rate(ref), abs=1e-12)
    # same epochs solved (stat 0 = no output in RTKLIB) with the same quality
    assert {k: v[3] for k, v in ours.items() if v[3]} == {k: v[3] for k, v in ref.items()}
    diffs = fixed_differences(ours, ref)
    assert diffs and max(diffs) < 0.001


def test_options_errors(tmp_path):
    with pytest.raises(CorsError, match="no such RTKLIB conf"):
        load_options(tmp_path / "missing.conf")
    single = tmp_path / "single.conf"
    single.write_text("pos1-posmode       =single\n")
    with pytest.raises(CorsError, match="RTK mode"):
        load_options(single)
    opts = load_options(None)
    assert int(opts.prcopt.mode) == 2 and not opts.base_from_conf
