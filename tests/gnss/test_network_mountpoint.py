"""The caster's network mountpoint (VRS) on the real CatNet network (ICC, 2010-03-18): MATA, CREU and
EBRE pushed as station streams (RTKLIB's RTCM encoding of their RINEX), rovers near GARR."""
from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from pyrtcm import RTCMReader

from cors.monitor import RtcmFramer
from cors.ntrip import frame_ok, make_gga
from tests.conftest import GNSS_DIR, require_shared
from tests.gnss.ntrip_helpers import CasterThread, Pusher, dechunk, get, read_head

CATNET = GNSS_DIR / "network_catnet_2010077"
NAV = CATNET / "brdc0770.10n"
ATX = CATNET / "igs05_1525.atx"
NETWORK = ("MATA", "CREU", "EBRE")
EPOCHS = 24  # 12 minutes of 30 s data


def _site(name):
    from cors.network.sites import load_site

    return load_site(require_shared(CATNET / f"{name}0770.10o"), nav=[NAV], atx=ATX)


def _arp(site) -> np.ndarray:
    """The registry's coordinate of a station: its antenna reference point (marker + E/N/U delta)."""
    from cors.network.sites import enu_matrix

    return site.ecef + enu_matrix(site.llh).T @ np.array(site.antdel)


def _llh_deg(ecef):
    from cors.network.sites import ecef_to_llh

    lat, lon, h = ecef_to_llh(ecef)
    return float(np.degrees(lat)), float(np.degrees(lon)), float(h)


class Rover:
    """An NTRIP 2.0 client of the network mountpoint, reading in the background of the test."""

    def __init__(self, port, token, lat, lon, h):
        self.sock = get(port, "VRS", user="car", password=token, v2=True,
                        extra="Ntrip-GGA: " + make_gga(lat, lon, h).decode().strip() + "\r\n")
        self.head, self.body = read_head(self.sock)
        self.sock.settimeout(0.1)

    def read(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                part = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not part:
                break
            self.body += part

    def frames(self) -> list:
        data, _ = dechunk(self.body[:self.body.rfind(b"\r\n") + 2]) if self.body else (b"", [])
        return [RTCMReader.parse(f) for f in RtcmFramer().feed(data) if frame_ok(f)]


def _gga_ecef(lat, lon, h) -> np.ndarray:
    """The position a GGA sentence carries (its own resolution, about a centimetre)."""
    from cors.network.sites import llh_to_ecef
    from cors.ntrip import parse_gga

    fix = parse_gga(make_gga(lat, lon, h))
    return llh_to_ecef(fix.lat, fix.lon, fix.height)


def _arps(frames) -> list[tuple[int, np.ndarray]]:
    return [(m.DF003, np.array([m.DF025, m.DF026, m.DF027])) for m in frames if m.identity == "1006"]


def _decoded_epochs(data: bytes, time_hint) -> list[tuple[float, dict]]:
    """A client's RTCM stream through RTKLIB's decoder: (GPS time, {sat: (L1, L2, P1, P2)}) per epoch."""
    import pyrtklib as rtk

    from cors.rtcm_encode import gtime_seconds

    dec = rtk.rtcm_t()
    rtk.init_rtcm(dec)
    dec.time = time_hint
    out = []
    try:
        for byte in data:
            if rtk.input_rtcm3(dec, byte) == 1 and dec.obs.n > 0:
                recs = [dec.obs.data[k] for k in range(dec.obs.n)]
                out.append((round(gtime_seconds(recs[0].time), 3),
                            {int(r.sat): (float(r.L[0]), float(r.L[1]), float(r.P[0]), float(r.P[1]))
                             for r in recs}))
    finally:
        rtk.free_rtcm(dec)
    return out


def _same_as_post_processing(sites: dict, position, rover: "Rover") -> None:
    """The caster's virtual observations = the post-processing engine's (RINEX in, same station
    order) at the same position, epoch for epoch: up to whole cycles (MSM phase-range) and the
    MSM7 resolution of two encodings."""
    from cors.network.engine import NetworkEngine
    from cors.rtcm_encode import gtime_seconds

    ordered = [sites[n] for n in sorted(sites)]  # the caster orders its network by station id
    data, _ = dechunk(rover.body[:rover.body.rfind(b"\r\n") + 2])
    rt = dict(_decoded_epochs(data, ordered[0].source.obs.data[0].time))
    assert len(rt) >= 3
    engine = NetworkEngine(ordered, ordered[0].source.nav, integrity=False)
    compared = 0
    try:
        for t in ordered[0].times[:EPOCHS]:
            ep = engine.step(float(t), {s.name: s.epoch_records(t) for s in ordered})
            got = rt.get(round(float(t), 3))
            if got is None:
                continue
            ve = engine.virtual(ep, position)
            want = {int(r.sat): (float(r.L[0]), float(r.L[1]), float(r.P[0]), float(r.P[1]))
                    for r in ve.records}
            assert set(got) == set(want), gtime_seconds(ve.records[0].time)
            for sat in got:
                cyc = np.subtract(got[sat][:2], want[sat][:2])
                assert np.all(np.abs(cyc - np.round(cyc)) < 0.02), (t, sat, cyc)
                assert np.allclose(got[sat][2:], want[sat][2:], atol=0.02), (t, sat)
            compared += 1
    finally:
        engine.close()
    assert compared == len(rt)


@pytest.mark.shared_data
@pytest.mark.slow
def test_network_mountpoint_serves_virtual_stations_by_cell(tmp_path):
    from cors.caster import read_status
    from cors.caster.kinds.network import NetworkConfig
    from cors.rtcm_encode import encode_rinex

    sites = {n: _site(n) for n in NETWORK}
    garr = _site("GARR")
    lat, lon, h = _llh_deg(garr.ecef)
    status_path = tmp_path / "cors_status.json"
    config = NetworkConfig(stations=NETWORK, cell_m=5000, move_m=5000, atx=str(ATX), integrity=False)
    c = CasterThread(tmp_path, network=config, status_path=status_path, status_every_s=0.3,
                     down_after=30.0).start()
    pushers = []
    try:
        token = c.tokens.create("vehicle", "car")
        for i, (name, s) in enumerate(sites.items()):
            c.add_station(name, name + "0", list(_arp(s)), password="pw", antenna=s.antenna)
        for i, (name, s) in enumerate(sites.items()):
            epochs = [e.raw for e, _ in zip(encode_rinex(s.source.obs_path, source=s.source,
                                                         station_id=100 + i, ecef=s.ecef), range(EPOCHS))]
            pushers.append(Pusher(c.port, name + "0", "pw", epochs, period=0.4))
        for p in pushers:
            p.start()
        c.wait(lambda: c.caster.mountpoint("VRS").available(), what="network mountpoint available")

        # the sourcetable lists it: solution 1 = network, nmea 1
        s = get(c.port, "", v2=True)
        _, rest = read_head(s)
        table = dechunk(rest + b"".join(iter(lambda: s.recv(65536), b"")))[0].decode()
        row = next(r for r in table.split("\r\n") if r.startswith("STR;VRS;")).split(";")
        assert (row[11], row[12]) == ("1", "1"), row

        # two rovers 300 m apart near GARR: one cell, one virtual station at the first GGA
        a = Rover(c.port, token, lat, lon, h)
        assert a.head.startswith(b"HTTP/1.1 200 OK")
        b = Rover(c.port, token, lat + 0.0027, lon, h)
        a.read(3.0)
        b.read(0.1)
        net = c.call(lambda: c.caster.mountpoint("VRS").service)
        assert c.call(lambda: (len(net.cells()), net.status()["clients"])) == (1, 2)
        # the network work is done by its own process, not on the caster's loop
        import os

        import psutil

        worker = psutil.Process(c.call(lambda: net.proc.pid))
        assert worker.pid != os.getpid() and worker.cmdline()[-1] == "cors.network.worker"
        c.wait(lambda: net.status()["epochs"] >= 1, what="epochs counted by the network process")
        fa, fb = a.frames(), b.frames()
        arps_a, arps_b = _arps(fa), _arps(fb)
        assert arps_a and arps_b, "no 1006 from the network mountpoint"
        at_a = _gga_ecef(lat, lon, h)
        assert np.linalg.norm(arps_a[0][1] - at_a) < 0.001
        assert {sid for sid, _ in arps_a} == {sid for sid, _ in arps_b}
        assert np.linalg.norm(arps_b[0][1] - at_a) < 0.001  # b shares a's station
        msm = [m for m in fa if m.identity == "1077"]
        assert len(msm) >= 3 and all(m.DF003 == arps_a[0][0] for m in msm)
        assert min(m.NSat for m in msm) >= 5

        _same_as_post_processing(sites, _gga_ecef(lat, lon, h), a)

        # rover a drives 8 km north: beyond the move distance, it gets a new station and 1006
        moved = (lat + 0.072, lon, h)
        a.sock.sendall(make_gga(*moved))
        c.wait(lambda: len(net.cells()) == 2, what="a second cell")
        a.read(3.0)
        after = _arps(a.frames())
        new = [p for sid, p in after if sid != arps_a[0][0]]
        assert new, "no new 1006 after the move"
        assert np.linalg.norm(new[0] - _gga_ecef(*moved)) < 0.001

        # the status file (GET /v1/network, Prometheus) carries the live baselines
        c.wait(lambda: "network" in read_status(status_path), what="network block in the status file")
        block = read_status(status_path)["network"]
        assert {b["name"] for b in block["baselines"]} and block["cells"] == 2 and block["epochs"] >= 3
        text = c.call(c.caster.metrics_text).decode()
        assert "cors_network_baseline_fix_ratio{" in text and "cors_network_virtual_stations 2.0" in text
    finally:
        for p in pushers:
            p.stop_event.set()
        c.stop()


@pytest.mark.parametrize("args, field", [
    (["--network-stations", "MATA"], "--network-stations"),
    (["--network-stations", "MATA,CREU", "--network-mountpoint", "NEAREST"], "NEAREST"),
    (["--network-stations", "MATA,CREU", "--network-mountpoint", "MATA0"], "MATA0"),
    (["--network-stations", "all", "--network-move-m", "0"], "move"),
])
def test_serve_rejects_a_bad_network_configuration(tmp_path, args, field):
    import subprocess
    import sys

    from tests.conftest import REPO

    r = subprocess.run([sys.executable, "-m", "mapsvc", "serve", "--no-http", "--ntrip-port", "0", *args],
                       capture_output=True, text=True, cwd=REPO, env={"MAPSVC_HOME": str(tmp_path),
                                                                     "PATH": "/usr/bin:/bin",
                                                                     "PYTHONPATH": str(REPO)},
                       timeout=60)
    assert r.returncode == 2 and field in r.stderr.strip().splitlines()[-1], r.stderr
