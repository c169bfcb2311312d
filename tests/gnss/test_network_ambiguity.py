"""Widelane-first network ambiguity resolution on the real CatNet network (2010-03-18, GPS L1/L2, 30 s).

Three stations 131-288 km apart (GARR, CREU, EBRE) and MATA, 51 km from GARR, as a station the network
does not see. The first hours of the day (night: the ionosphere is quiet, so float and fixed differ by
the ambiguities, not by interpolation).
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.gnss.test_network import _site  # the CatNet stations, as test_network loads them

HOURS = 3


@pytest.fixture(scope="module")
def network():
    return [_site(n) for n in ("GARR", "CREU", "EBRE")]


@pytest.fixture(scope="module")
def mata():
    return _site("MATA")


def _times(sites):
    t = sites[0].times
    return t[t < t[0] + HOURS * 3600]


def _sd_integers(fix, which):
    """Fixed DD integers as single differences of one datum (the reference at 0)."""
    d = dict(getattr(fix, which))
    if d:
        for ref in fix.refs.values():
            d.setdefault(ref, 0)
    return d


@pytest.fixture(scope="module")
def fixed_run(network):
    """Per epoch: the three baselines' fixes, and the float DD widelanes of their filters."""
    from cors.network.engine import NetworkEngine

    engine = NetworkEngine(network, network[0].source.nav, integrity=False)
    epochs, agree = [], []
    try:
        for t in _times(network):
            engine.step(float(t), {s.name: s.epoch_records(t) for s in network})
            fixes = {k: bl.last_fix for k, bl in engine.baselines.items()}
            epochs.append(fixes)
            for bl in engine.baselines.values():
                fix, ar = bl.last_fix, bl.ar
                for sat, n in (fix.wl if fix else {}).items():
                    ref = fix.refs[int(bl.rtk.ssat[sat - 1].sys)]
                    ks = [ar.ib(s, f) for s in (sat, ref) for f in (0, 1)]
                    row = np.array([1.0, -1.0, -1.0, 1.0])
                    x = np.array([bl.rtk.x[k] for k in ks])
                    sig = float(np.sqrt(row @ ar._cov(ks) @ row))
                    if sig < 0.15:  # the float filter (known coordinates) has its own widelane
                        agree.append(abs(row @ x - n) < 0.5)
        status = engine.status()
    finally:
        engine.close()
    return epochs, np.array(agree), status


@pytest.mark.shared_data
def test_widelanes_and_l1_close_around_the_triangle(network, fixed_run):
    epochs, _, status = fixed_run
    wl_clos, l1_clos = [], []
    for fixes in epochs:
        if len(fixes) < 3 or any(f is None for f in fixes.values()):
            continue
        for which, out in (("wl", wl_clos), ("l1", l1_clos)):
            # edges (i, j) run master i -> aux j: SD(0->2) = SD(0->1) + SD(1->2)
            a, b, c = (_sd_integers(fixes[e], which) for e in ((0, 1), (1, 2), (0, 2)))
            common = sorted(set(a) & set(b) & set(c))
            for s in common[1:]:
                out.append((a[s] - a[common[0]]) + (b[s] - b[common[0]]) - (c[s] - c[common[0]]))
    assert len(wl_clos) > 1000 and len(l1_clos) > 500
    assert not np.any(wl_clos) and not np.any(l1_clos)
    # the widelanes of all three baselines fix most of the time after a few minutes
    for b in status["baselines"]:
        assert b["wl_fix_rate"] > 0.7 and b["fix_rate"] > 0.4, b
        assert b["fix_rate"] <= b["wl_fix_rate"]  # L1 only ever given the widelanes


@pytest.mark.shared_data
def test_widelanes_agree_with_the_float_filter_on_known_coordinates(fixed_run):
    """Melbourne-Wuebbena widelanes (geometry-free) vs the float filter's (positions held known)."""
    _, agree, _ = fixed_run
    assert len(agree) > 500
    assert agree.mean() > 0.99


@pytest.mark.shared_data
def test_fixed_network_ionosphere_predicts_a_left_out_station_better(network, mata):
    """The network's DD ionosphere interpolated at MATA (left out) against MATA's own 51 km baseline
    to GARR: with the network's ambiguities fixed, it is closer than with the float network."""
    from cors.network.baseline import Baseline, iono_mapf
    from cors.network.engine import MAXSAT, NetworkEngine

    garr = network[0]
    engines = {r: NetworkEngine(network, network[0].source.nav, integrity=False, resolve=r) for r in (True, False)}
    truth = Baseline(garr, mata, engines[True].nav)
    err = {True: [], False: []}
    try:
        for t in _times(network):
            recs = {s.name: s.epoch_records(t) for s in network}
            eps = {r: e.step(float(t), recs) for r, e in engines.items()}
            st = truth.step(float(t), mata.epoch_records(t), recs[garr.name])
            if st is None or not st.fixed or garr.name not in eps[True].sites:
                continue
            se = eps[True].sites[garr.name]
            ref = np.full(MAXSAT, np.nan)
            good = st.sats[st.iono_fixed] - 1
            ref[good] = st.iono_vert[st.iono_fixed] * iono_mapf(se.llh[2], se.el[good])
            for r, ep in eps.items():
                disp, _, _ = engines[r].corrections_at(ep, garr, mata.ecef, "plane")
                d = disp - ref
                ok = ~np.isnan(d) & (se.el > np.radians(15))
                if ok.sum() > 2:
                    dd = d[ok] - d[ok][np.argmax(se.el[ok])]
                    err[r].append(np.sqrt(np.mean(dd ** 2)))
    finally:
        truth.close()
        for e in engines.values():
            e.close()
    fixed, flt = np.array(err[True]), np.array(err[False])
    assert len(fixed) > 200
    rms_fixed, rms_float = np.sqrt(np.mean(fixed ** 2)), np.sqrt(np.mean(flt ** 2))
    assert rms_fixed < 0.85 * rms_float, (rms_fixed, rms_float)
    assert rms_fixed < 0.03
