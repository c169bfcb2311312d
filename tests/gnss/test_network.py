"""Network RTK (VRS) on the real CatNet network (ICC, 2010-03-18): short windows of the real data."""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import GNSS_DIR, REPO, require_shared

CATNET = GNSS_DIR / "network_catnet_2010077"
NAV = CATNET / "brdc0770.10n"
ATX = CATNET / "igs05_1525.atx"
CLIGHT = 299792458.0


def _site(name):
    from cors.network.sites import load_site

    return load_site(require_shared(CATNET / f"{name}0770.10o"), nav=[NAV], atx=ATX)


@pytest.fixture(scope="module")
def network():
    sites = [_site(n) for n in ("GARR", "CREU", "EBRE")]
    return sites


@pytest.fixture(scope="module")
def mata():
    return _site("MATA")


def _by_sat(records) -> dict[int, tuple]:
    return {int(r.sat): (float(r.L[0]), float(r.L[1]), float(r.P[0]), float(r.P[1])) for r in records}


def _virtual_epochs(sites, position, n_epochs, resolve=True, **kw):
    from cors.network.engine import NetworkEngine

    engine = NetworkEngine(sites, sites[0].source.nav, integrity=False, resolve=resolve)
    out = []
    try:
        for t in sites[0].times[:n_epochs]:
            ep = engine.step(float(t), {s.name: s.epoch_records(t) for s in sites})
            ve = engine.virtual(ep, position, **kw)
            out.append((float(t), _by_sat(ve.records)))
        status = engine.status()
    finally:
        engine.close()
    return out, status


@pytest.mark.shared_data
def test_geometry_only_vrs_reproduces_the_station_there(network, mata):
    """GARR's observations moved 51 km to MATA, no atmosphere: MATA's own observations, up to
    ambiguities, clocks and a slowly changing atmosphere (between-satellite, epoch-to-epoch < 2 cm)."""
    from cors.network.virtual import _dant

    vepochs, status = _virtual_epochs(network, mata.ecef, 40, components=())
    # what the network reports: every Delaunay edge, its fix state; closure of the one triangle
    assert {b["name"] for b in status["baselines"]} == {"GARR-EBRE", "GARR-CREU", "CREU-EBRE"}
    assert all(b["epochs"] == 40 and 0 <= b["fix_rate"] <= 1 for b in status["baselines"])
    assert list(status["closures_cm"]) == ["CREU-EBRE"] and status["hub"] == "GARR"
    assert set(status["leave_one_out_cm"]) == {"GARR", "CREU", "EBRE"}
    from cors.network.geometry import SatGeometry, elevation

    dd_steps, code_dd = [], []
    prev = None
    for t, virt in vepochs:
        real_recs = mata.epoch_records(t)
        geom = SatGeometry.of_records(real_recs, mata.source.nav)
        _, e, _ = geom.ranges(mata.ecef)
        az, el = elevation(e, mata.llh)
        dant = _dant(mata, az, el)  # the real antenna's offsets: the virtual one is null
        lam1 = CLIGHT / 1.57542e9
        diff = {}
        for k, r in enumerate(real_recs):
            s = int(r.sat)
            if s in virt and r.L[0] and el[k] > np.radians(15):
                diff[s] = ((virt[s][0] - r.L[0]) * lam1 + dant[k, 0], virt[s][2] - r.P[0] + dant[k, 0])
        ref = min(diff)
        dd = {s: (v[0] - diff[ref][0], v[1] - diff[ref][1]) for s, v in diff.items() if s != ref}
        code_dd += [v[1] for v in dd.values()]
        if prev is not None:
            dd_steps += [dd[s][0] - prev[s][0] for s in dd if s in prev]
        prev = dd
    dd_steps = np.array(dd_steps)
    assert len(dd_steps) > 100
    # a wrong geometric shift (no light time, no Sagnac, wrong sign) leaves metres per 30 s here
    assert np.sqrt(np.mean(dd_steps ** 2)) < 0.02
    # code: same pseudorange to within multipath and noise (the ambiguity-free check)
    assert np.median(np.abs(code_dd)) < 2.0


@pytest.mark.shared_data
@pytest.mark.parametrize("resolve,tol", [(False, 0.01), (True, 0.1)])
def test_real_time_and_post_processing_give_the_same_virtual_observations(network, mata, resolve, tol):
    """Stations streamed as RTCM 3 MSM7 (RTKLIB encoder) through the stream network = RINEX path.

    The float network agrees to 0.01 cycle. With network AR, a ratio test or a widelane at its
    threshold may pass one epoch earlier on one path (MSM and RINEX round code differently): the
    fixed and float corrections then differ by millimetres, never by a cycle.
    """
    from cors.network.engine import NetworkEngine
    from cors.network.realtime import StreamNetwork
    from cors.rtcm_encode import encode_rinex

    n = 20
    pp, _ = _virtual_epochs(network, mata.ecef, n, resolve=resolve)
    engine = NetworkEngine(network, network[0].source.nav, integrity=False, resolve=resolve)
    streams = {s.name: encode_rinex(s.source.obs_path, source=s.source, ecef=s.ecef) for s in network}
    net = StreamNetwork(engine, network[0].source.obs.data[0].time)
    rt = []
    try:
        for _ in range(n + 1):
            for name, it in streams.items():
                for ep in net.feed(name, next(it).raw):
                    rt.append((ep.gpst, _by_sat(engine.virtual(ep, mata.ecef).records)))
    finally:
        engine.close()
        net.close()
    assert [t for t, _ in rt[:n]] == [t for t, _ in pp]
    whole = {}
    for (_, a), (_, b) in zip(rt[:n], pp):
        assert set(a) == set(b)
        for s in a:
            # phase: MSM carries phase-range, so each satellite's phase may differ by whole cycles
            cyc = np.subtract(a[s][:2], b[s][:2])
            assert np.all(np.abs(cyc - np.round(cyc)) < tol)
            whole.setdefault(s, set()).add(tuple(np.round(cyc)))
            assert np.allclose(a[s][2:], b[s][2:], atol=0.01)  # code, m
    # RTKLIB's MSM codec re-anchors a phase by whole cycles when the source steps 1 ms (NetRS clock
    # steering): rare, never a fraction of a cycle
    assert sum(len(v) - 1 for v in whole.values()) <= 2


@pytest.mark.shared_data
def test_cli_rinex_and_rtcm_output_agree(tmp_path, network, mata):
    """`mapsvc vrs` writes RINEX 3 (virtual position, null antenna) and RTCM MSM7 + 1006 that pyrtcm
    decodes to the same observations (phase up to RTKLIB's whole-cycle roll-over adjustment)."""
    import pyrtklib as rtk
    from pyrtcm import RTCMReader
    from pyrtcm.rtcmhelpers import parse_msm

    from cors.network.sites import ecef_to_llh

    out, rtcm = tmp_path / "vrs.obs", tmp_path / "vrs.rtcm3"
    lat, lon, h = ecef_to_llh(mata.ecef)
    bases = [f"--base={s.source.obs_path}@{','.join(f'{v:.4f}' for v in s.ecef)}" for s in network]
    cmd = [sys.executable, "-m", "mapsvc", "vrs", *bases, "--nav", str(NAV), "--atx", str(ATX),
           "--at", f"{np.degrees(lat):.9f},{np.degrees(lon):.9f},{h:.4f}", "--out", str(out),
           "--from", "2010-03-18T03:00:00", "--to", "2010-03-18T03:05:00", "--rtcm", str(rtcm)]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    head = out.read_text().split("END OF HEADER")[0]
    approx = [ln for ln in head.splitlines() if ln.endswith("APPROX POSITION XYZ")][0]
    assert np.allclose([float(v) for v in approx.split()[:3]], mata.ecef, atol=1e-3)
    ant = [ln for ln in head.splitlines() if "ANT # / TYPE" in ln][0]
    assert ant[:60].strip() == ""
    delta = [ln for ln in head.splitlines() if "ANTENNA: DELTA H/E/N" in ln][0]
    assert [float(v) for v in delta.split()[:3]] == [0.0, 0.0, 0.0]

    from cors.rtcm_encode import read_rinex
    from cors.rtk import gpst_week_tow

    src = read_rinex(out, [NAV])
    assert len(src.epochs) == 11
    rinex = {}
    for s, e in src.epochs:
        for k in range(s, e):
            r = src.obs.data[k]
            t = round(gpst_week_tow(float(r.time.time) + float(r.time.sec))[1])
            rinex[(t, int(r.sat))] = (float(r.P[0]), float(r.P[1]), float(r.L[0]), float(r.L[1]))
    decoded, n1006 = {}, 0
    for raw, msg in RTCMReader(io.BytesIO(rtcm.read_bytes())):
        if msg.identity == "1006":
            n1006 += 1
            xyz = [msg.DF025, msg.DF026, msg.DF027]
            assert np.allclose(xyz, mata.ecef, atol=1e-4) and msg.DF028 == 0
        elif msg.identity == "1077":
            meta, sats, cells = parse_msm(msg)
            t = round(meta["epoch"] / 1000)
            rough = {int(s["PRN"]): s["DF397"] + s["DF398"] for s in sats}
            for c in cells:
                prn = int(c["CELLPRN"])
                f = 0 if c["CELLSIG"] == "1C" else 1
                ms = rough[prn]
                decoded.setdefault((t, prn), [0.0] * 4)
                decoded[(t, prn)][f] = (ms + c["DF405"]) * CLIGHT / 1000
                decoded[(t, prn)][2 + f] = (ms + c["DF406"]) * CLIGHT / 1000
    assert n1006 >= 1 and len(decoded) == len(rinex)
    lam = (CLIGHT / 1.57542e9, CLIGHT / 1.2276e9)
    offsets = {}
    for (t, prn), d in decoded.items():
        r = rinex[(t, prn)]
        assert abs(d[0] - r[0]) < 0.002 and abs(d[1] - r[1]) < 0.002
        for f in range(2):
            cyc = d[2 + f] / lam[f] - r[2 + f]
            assert abs(cyc - round(cyc)) < 0.005  # same phase but for whole cycles
            offsets.setdefault((prn, f), set()).add(round(cyc))
    assert all(len(v) == 1 for v in offsets.values())  # and the same whole cycles all along


@pytest.mark.shared_data
def test_integrity_names_and_excludes_a_station_whose_coordinate_moved():
    """MATA's coordinate shifted 10 cm: its two edges fail, GARR-CREU does not; MATA is excluded."""
    from cors.network.engine import NetworkEngine, network_edges
    from cors.network.integrity import IntegrityMonitor
    from cors.network.sites import enu_matrix

    sites = [_site(n) for n in ("GARR", "MATA", "CREU")]
    mata_site = sites[1]
    mata_site.ecef = mata_site.ecef + enu_matrix(mata_site.llh).T @ np.array([0.08, 0.06, 0.0])
    mon = IntegrityMonitor(sites, network_edges(sites), sites[0].source.nav)
    try:
        for t in sites[0].times[:200]:
            mon.step(float(t), {s.name: s.epoch_records(t) for s in sites})
        verdict = mon.verdict()
    finally:
        mon.close()
    assert set(verdict) == {"MATA"}
    # the engine acts on it: MATA leaves the network, the others stay
    engine = NetworkEngine(sites, sites[0].source.nav, integrity=False)
    try:
        engine.exclude("MATA", verdict["MATA"])
        t = float(sites[0].times[0])
        ep = engine.step(t, {s.name: s.epoch_records(t) for s in sites})
        assert "MATA" not in ep.sites and set(ep.sites) == {"GARR", "CREU"}
        st = engine.status()
        assert [s["excluded"] for s in st["stations"] if s["name"] == "MATA"][0].startswith("coordinate")
    finally:
        engine.close()


@pytest.mark.shared_data
def test_integrity_passes_the_true_coordinates():
    from cors.network.engine import network_edges
    from cors.network.integrity import IntegrityMonitor

    sites = [_site(n) for n in ("GARR", "MATA", "CREU")]
    mon = IntegrityMonitor(sites, network_edges(sites), sites[0].source.nav)
    try:
        for t in sites[0].times[:200]:
            mon.step(float(t), {s.name: s.epoch_records(t) for s in sites})
        assert mon.verdict() == {}
    finally:
        mon.close()


def test_interpolation_weights_reproduce_planes_and_fall_back_outside():
    from cors.network import interpolate

    st = np.array([[0.0, 0.0], [50e3, 10e3], [-20e3, 60e3]])
    vals = (3.0 + 2e-5 * st[:, 0] - 1e-5 * st[:, 1])[:, None]
    at = np.array([10e3, 20e3])
    assert np.allclose(interpolate.interpolate("plane", st, vals, at), 3.0 + 2e-1 - 2e-1)
    w, used = interpolate.weights("plane", st, np.array([900e3, 0.0]))  # far outside: weights blow up
    assert used == "idw" and np.all(w >= 0) and abs(w.sum() - 1) < 1e-12
    w, used = interpolate.weights("plane", st[:2], at)  # two stations span no plane
    assert used == "idw"
    # three stations: the low-order surface is the plane
    assert np.allclose(interpolate.weights("surface", st, at)[0], interpolate.weights("plane", st, at)[0])


def test_cli_rejects_bad_input(tmp_path):
    for args, word in ((["--base", "x.obs@1,2", "--nav", "n", "--at", "1,2,3"], "--base"),
                       (["--base", "x.obs@1,2,3", "--nav", "n", "--at", "91,2,3"], "--at"),
                       (["--base", f"{tmp_path}/none.obs@4e6,1e5,4e6", "--nav", "n", "--at", "41,2,3"], "none.obs")):
        res = subprocess.run([sys.executable, "-m", "mapsvc", "vrs", *args, "--out", str(tmp_path / "o.obs")],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and word in res.stderr and len(res.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "o.obs").exists()


def test_clients_in_one_cell_share_a_virtual_station_and_move_when_far():
    from cors.network.cells import VirtualStationPool
    from cors.network.sites import enu_matrix, llh_to_ecef

    centre = llh_to_ecef(41.5, 2.4, 100.0)
    m = enu_matrix(np.radians([41.5, 2.4, 0.0])).T

    def at(e, n):
        return centre + m @ np.array([e, n, 0.0])

    pool = VirtualStationPool(centre, cell_m=5000, move_m=3000)
    a = pool.place("car1", at(1000, 1000))
    b = pool.place("car2", at(3500, 200))
    assert a is b and len(pool) == 1 and a.clients == {"car1", "car2"}
    assert pool.place("car1", at(2500, 1000)) is a  # 1.5 km: keeps its station
    c = pool.place("car1", at(9000, 1000))  # 8 km from the station, next cell: moves
    assert c is not a and c.cell == (1, 0) and len(pool) == 2
    pool.leave("car2")
    assert len(pool) == 1 and a.key not in pool.stations
    assert np.allclose(c.position, at(9000, 1000))
    # within one cell but farther than move_m from the cell's station (still used by another client): a station
    # of its own, never the far one back; a newcomer joins the nearest station within move_m
    d = pool.place("car3", at(500, 500))
    e = pool.place("car4", at(500, 800))
    assert d is e
    f = pool.place("car4", at(4800, 4800))  # same cell (0, 0), 6 km from d
    assert f is not d and f.cell == d.cell == (0, 0) and np.linalg.norm(f.position - d.position) > 3000
    assert pool.place("car5", at(4500, 4000)) is f and pool.place("car6", at(900, 0)) is d
    assert len({st.key for st in pool.stations.values()}) == len(pool) == 3
    for car in ("car3", "car6"):
        pool.leave(car)
    assert d.key not in pool.stations and f.key in pool.stations and len(pool) == 2


@pytest.mark.shared_data
def test_network_status_over_http_and_prometheus(tmp_path, network):
    """GET /v1/network serves the network block of the caster's status document; 404 without one;
    the Prometheus families carry baselines, closures, leave-one-out residuals and exclusions."""
    import json
    import time

    import requests
    from prometheus_client import CollectorRegistry, generate_latest

    from cors.network.engine import NetworkEngine
    from cors.network.metrics import metric_families
    from mapsvc.tokens import TokenStore
    from tests.api.conftest import LiveServer

    engine = NetworkEngine(network, network[0].source.nav, integrity=False)
    try:
        for t in network[0].times[:5]:
            engine.step(float(t), {s.name: s.epoch_records(t) for s in network})
        engine.exclude("EBRE", "test: coordinate disagrees")
        status = engine.status()
    finally:
        engine.close()

    class _Collector:
        def collect(self):
            return metric_families(status, virtual_stations=3)

    reg = CollectorRegistry()
    reg.register(_Collector())
    text = generate_latest(reg).decode()
    assert 'cors_network_baseline_fix_ratio{baseline="GARR-CREU"}' in text
    assert 'cors_network_station_excluded{reason="test: coordinate disagrees",station="EBRE"} 1.0' in text
    assert "cors_network_virtual_stations 3.0" in text

    home = tmp_path / "home"
    home.mkdir()
    tokens = TokenStore(home / "tokens.sqlite")
    tok = tokens.create("vehicle", "car")
    tokens.close()
    srv = LiveServer({"HOME": str(home)})
    try:
        hdr = {"Authorization": f"Bearer {tok}"}
        assert requests.get(srv.url + "/v1/network", headers=hdr, timeout=10).status_code == 404
        (home / "cors_status.json").write_text(json.dumps(
            {"generated": time.time(), "stations": [], "network": status}))
        r = requests.get(srv.url + "/v1/network", headers=hdr, timeout=10)
        assert r.status_code == 200
        body = r.json()
        assert body["caster_running"] is True
        assert [s["excluded"] for s in body["stations"] if s["name"] == "EBRE"] == ["test: coordinate disagrees"]
        assert {b["name"] for b in body["baselines"]} >= {"GARR-CREU"}
        assert requests.get(srv.url + "/v1/network", timeout=10).status_code == 401
    finally:
        srv.close()


@pytest.mark.shared_data
def test_network_service_serves_one_stream_per_cell_with_the_virtual_position(network, mata):
    """Station RTCM in, per-cell RTCM out: two rovers near MATA share one virtual station whose 1006
    is their first GGA position; a rover 60 km away gets its own; RTKLIB decodes the streams."""
    import pyrtklib as rtk

    from cors.network.engine import NetworkEngine
    from cors.network.service import NetworkService
    from cors.network.sites import ecef_to_llh, llh_to_ecef
    from cors.ntrip import make_gga
    from cors.rtcm_encode import encode_rinex

    engine = NetworkEngine(network, network[0].source.nav, integrity=False)
    svc = NetworkService(engine, network[0].source.obs.data[0].time, cell_m=5000, move_m=5000)
    lat, lon, h = ecef_to_llh(mata.ecef)
    lat, lon = np.degrees(lat), np.degrees(lon)
    try:
        assert svc.position("car1", b"$GPGGA,garbage*00") is None
        c1 = svc.position("car1", make_gga(lat, lon, h))
        c2 = svc.position("car2", make_gga(lat + 0.005, lon + 0.005, h))
        c3 = svc.position("car3", make_gga(lat + 0.55, lon, h))  # ~60 km north
        assert c1 == c2 and c3 != c1
        streams = {s.name: encode_rinex(s.source.obs_path, source=s.source, ecef=s.ecef) for s in network}
        got: dict = {}
        for _ in range(6):
            for name, it in streams.items():
                for cell, data in svc.feed_station(name, next(it).raw).items():
                    got[cell] = got.get(cell, b"") + data
        assert set(got) == {c1, c3}
        st = svc.status()
        assert st["virtual_stations"] == 2 and st["clients"] == 3 and st["epochs"] >= 5
        dec = rtk.rtcm_t()
        rtk.init_rtcm(dec)
        dec.time = network[0].source.obs.data[0].time
        epochs, pos = 0, None
        for byte in got[c1]:
            ret = rtk.input_rtcm3(dec, byte)
            epochs += ret == 1
            if ret == 5:
                pos = np.array([dec.sta.pos[i] for i in range(3)])
        rtk.free_rtcm(dec)
        assert epochs >= 5
        assert np.linalg.norm(pos - llh_to_ecef(lat, lon, h)) < 0.01
    finally:
        svc.close()
        engine.close()


def test_network_edges_and_spanning_tree_of_four_stations():
    """CatNet's four marker coordinates: Delaunay edges, tree = shortest connecting edges."""
    from cors.network.engine import network_edges, spanning_tree
    from cors.network.sites import Site

    xyz = {"EBRE": (4833520.1197, 41537.2015, 4147461.6263), "GARR": (4796983.5767, 160309.1177, 4187340.3773),
           "CREU": (4715420.3054, 273177.8809, 4271946.7957), "MATA": (4776835.5870, 202618.9947, 4207574.6304)}
    sites = [Site(n, np.array(v)) for n, v in xyz.items()]
    edges = network_edges(sites)
    names = [{sites[i].name, sites[j].name} for i, j in edges]
    assert names[0] == {"GARR", "MATA"}  # shortest first (51 km)
    assert 3 < len(edges) <= 5
    tree = spanning_tree(len(sites), edges)
    assert len(tree) == 3
    assert {sites[i].name for e in tree for i in e} == set(xyz)
    assert {"EBRE", "CREU"} not in [{sites[i].name, sites[j].name} for i, j in tree]  # 288 km: never


@pytest.mark.shared_data
def test_wet_residual_is_not_carried_above_the_stations(network, mata):
    """The wet residual w.r.t. the standard atmosphere is interpolated at a station's height, never
    extrapolated 700 m above the network (CatNet stations: 108-635 m)."""
    from cors.network.engine import NetworkEngine
    from cors.network.sites import ecef_to_llh, llh_to_ecef

    engine = NetworkEngine(network, network[0].source.nav, integrity=False)
    try:
        for t in network[0].times[:20]:
            ep = engine.step(float(t), {s.name: s.epoch_records(t) for s in network})
        master = engine.master_for(ep, mata.ecef)
        _, wet_here, _ = engine.corrections_at(ep, master, mata.ecef)
        lat, lon, h = ecef_to_llh(mata.ecef)
        top = max(s.llh[2] for s in network)
        above = llh_to_ecef(np.degrees(lat), np.degrees(lon), top + 700.0)
        _, wet_above, _ = engine.corrections_at(ep, master, above)
    finally:
        engine.close()
    seen = ~np.isnan(wet_here)
    assert np.sum(np.abs(wet_here[seen]) > 1e-4) >= 4
    assert np.array_equal(np.isnan(wet_above), ~seen) and np.all(wet_above[seen] == 0.0)
