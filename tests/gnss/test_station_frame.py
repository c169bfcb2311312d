"""Station coordinates in the caster's one service frame: a station registered in ITRF2014 at 2020.0 pushes its
real stream (testglo: 1005 every 10 s); a rover on the caster decodes 1005 (pyrtcm) and gets the ARP in the
service frame, ITRF2014@2026.9 or CGCS2000, checked against transformations built here straight from PROJ's
init files. The sourcetable and the status (/v1/stations) declare the frame."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from pyproj import Transformer
from pyrtcm import RTCMReader

from cors.caster import CasterInfo
from tests.gnss.ntrip_helpers import TESTGLO, TESTGLO_ECEF, CasterThread, Pusher, epochs_of, get, read_head, request

def expected(ecef, steps: str, t: float) -> np.ndarray:
    tr = Transformer.from_pipeline(f"+proj=pipeline {steps}")
    x, y, z, _ = tr.transform(*ecef, t)
    return np.array([x, y, z])


# plate motion 2020.0 -> 2026.9 in ITRF2014 (PROJ's ITRF2014:EURA), and on to CGCS2000 by PROJ's own
# ITRF2014 -> ITRF2008 -> ITRF97 lines (an independent route from lanelets.frames)
TO_2026_9 = ("+step +inv +proj=helmert +init=ITRF2014:EURA +t_epoch=2020.0 "
             "+step +proj=set +v_4=2026.9 +step +proj=helmert +init=ITRF2014:EURA +t_epoch=2020.0")
TO_CGCS2000 = ("+step +inv +proj=helmert +init=ITRF2014:EURA +t_epoch=2000.0 +step +proj=set +v_4=2000.0 "
               "+step +proj=helmert +init=ITRF2014:ITRF2008 +step +proj=helmert +init=ITRF2008:ITRF97")


def _arp_received(port, mount, user, token, seconds=8.0) -> list:
    from cors.monitor import RtcmFramer

    s = get(port, mount, user=user, password=token)
    head, rest = read_head(s)
    assert b"200" in head.split(b"\r\n")[0]
    framer = RtcmFramer()
    got = [RTCMReader.parse(f) for f in framer.feed(rest)]
    end = time.monotonic() + seconds
    s.settimeout(0.5)
    while time.monotonic() < end and not any(m.identity in ("1005", "1006") for m in got):
        try:
            data = s.recv(65536)
        except TimeoutError:
            continue
        if not data:
            break
        got += [RTCMReader.parse(f) for f in framer.feed(data)]
    s.close()
    return [m for m in got if m.identity in ("1005", "1006")]


@pytest.mark.parametrize("service, steps, tol", [("ITRF2014@2026.9", TO_2026_9, 2e-4),
                                                   ("CGCS2000", TO_CGCS2000, 5e-3)])
def test_station_in_itrf2014_2020_served_in_the_service_frame(tmp_path, service, steps, tol):
    epochs = epochs_of(TESTGLO)
    original = [RTCMReader.parse(f) for f in _frames(epochs) if (f[3] << 4 | f[4] >> 4) == 1005][0]
    registered = (original.DF025, original.DF026, original.DF027)  # the station's own ARP, as registered
    c = CasterThread(tmp_path, info=CasterInfo(frame=service), status_path=tmp_path / "cors_status.json",
                     status_every_s=0.2).start()
    try:
        c.add_station("TGLO", "TESTGLO", registered, password="pw", frame="ITRF2014@2020.0")
        p = Pusher(c.port, "TESTGLO", "pw", epochs, period=0.02, loop=True)
        p.start()
        try:
            c.wait(lambda: any(m.up for m in c.caster.mounts.values()), what="station up")
            token = c.tokens.create("vehicle", "rover1")
            arps = _arp_received(c.port, "TESTGLO", "rover1", token)
            s = request(c.port, "GET / HTTP/1.0\r\nUser-Agent: NTRIP pytest\r\n\r\n")
            head, table = read_head(s)
            while not table.endswith(b"ENDSOURCETABLE\r\n"):
                table += s.recv(65536)
            s.close()
            c.wait(lambda: (tmp_path / "cors_status.json").exists(), what="status file")
        finally:
            p.stop()
    finally:
        c.stop()
    assert arps, "no 1005/1006 reached the rover"
    want = expected(registered, steps, 2020.0)
    moved = np.linalg.norm(want - np.array(registered))
    assert moved > 0.05  # the frames differ here (plate motion and/or Helmert)
    for m in arps:
        got = np.array([m.DF025, m.DF026, m.DF027])
        assert np.abs(got - want).max() < tol + 1e-4, (got - want, moved)
        assert m.DF003 == original.DF003  # observations and ARP still match
    frame_tag = f"frame={service}".encode()
    assert any(line.startswith(b"CAS;") and frame_tag in line for line in table.split(b"\r\n"))
    assert any(line.startswith(b"NET;") and frame_tag in line for line in table.split(b"\r\n"))
    doc = json.loads((tmp_path / "cors_status.json").read_text())
    assert doc["service_frame"] == service
    assert doc["stations"][0]["frame"] == "ITRF2014@2020"


def _frames(epochs):
    from cors.monitor import RtcmFramer

    return RtcmFramer().feed(b"".join(epochs))


def test_station_frame_errors(tmp_path):
    from cors.errors import CorsError
    from cors.stations import Station, StationRegistry

    reg = StationRegistry(tmp_path / "s.sqlite")
    try:
        with pytest.raises(CorsError, match="needs the epoch"):
            reg.add(Station("A", "A", TESTGLO_ECEF, frame="ITRF2014"), password="pw")
        with pytest.raises(CorsError, match="unknown frame"):
            reg.add(Station("B", "B", TESTGLO_ECEF, frame="NAD83"), password="pw")
        st = reg.add(Station("C", "C", TESTGLO_ECEF, frame="cgcs2000"), password="pw")
        assert reg.get("C").frame_spec == "CGCS2000" and st.public()["frame"] == "CGCS2000"
    finally:
        reg.close()
    with pytest.raises(CorsError, match="service frame"):
        from cors.arp import ServiceFrame

        ServiceFrame("ITRF2014")


def test_network_sites_are_in_the_service_frame(tmp_path):
    """Stations registered in ITRF2014@2020 under a CGCS2000 caster: the network mountpoint computes (and its
    virtual stations' 1006 are) in CGCS2000, from the same service-frame ARPs the stations' own 1005 carry."""
    from cors.caster.kinds.network import NetworkConfig

    config = NetworkConfig(stations=["A", "B", "C"], integrity=False)
    c = CasterThread(tmp_path, info=CasterInfo(frame="CGCS2000"), network=config).start()
    try:
        arps = {"A": (4789000.0, 176000.0, 4194000.0), "B": (4790000.0, 226000.0, 4191000.0),
                "C": (4830000.0, 190000.0, 4150000.0)}
        for sid, ecef in arps.items():
            c.add_station(sid, sid + "0", ecef, password="pw", frame="ITRF2014@2020.0")
        vrs = c.call(lambda: c.caster.mountpoint("VRS"))
        c.wait(lambda: vrs.sites is not None and len(vrs.sites) == 3, what="network sites")
        for site in c.call(lambda: list(vrs.sites)):
            want = expected(arps[site.name], TO_CGCS2000, 2020.0)
            assert np.abs(site.ecef - want).max() < 5e-3 + 1e-4
            assert np.linalg.norm(site.ecef - np.array(arps[site.name])) > 0.05  # the frames differ here
    finally:
        c.stop()
