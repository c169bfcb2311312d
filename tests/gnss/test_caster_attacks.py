"""Issue 14, caster side: hostile sources, silent stations, short frames (real RTCM from ../shared/data)."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from cors.monitor import Monitor, RtcmFramer
from cors.ntrip import crc24q
from tests.gnss.ntrip_helpers import (
    GMSD7, GMSD_ECEF, TESTGLO_ECEF, CasterThread, Pusher, basic, dechunk, epochs_of, get, read_all, read_head,
)

pytestmark = pytest.mark.shared_data

HOSTILE = b"\xd3\x03\xff"  # every third byte a frame start claiming 1023 bytes of payload


def rtcm_frame(payload: bytes) -> bytes:
    body = bytes([0xD3, len(payload) >> 8, len(payload) & 0xFF]) + payload
    return body + crc24q(body).to_bytes(3, "big")


@pytest.fixture
def caster(tmp_path):
    c = CasterThread(tmp_path, down_after=1.0, stale_after=0.5, header_timeout=1.0).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def gmsd_epochs():
    return epochs_of(GMSD7)


def wait_up(c, sid):
    c.wait(lambda: c.caster.monitor.is_up(sid) and any(m.up and m.available() for m in c.caster.mounts.values()
                                                         if m.sid == sid), what=f"{sid} up")


class Receiver(threading.Thread):
    """A rover reading a stream and noting when each byte count arrived."""

    def __init__(self, sock: socket.socket, first: bytes):
        super().__init__(daemon=True)
        self.sock, self.data, self.marks = sock, bytearray(first), [(time.monotonic(), len(first))]
        self.stop_event = threading.Event()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop_event.is_set():
            try:
                part = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not part:
                break
            self.data += part
            self.marks.append((time.monotonic(), len(self.data)))

    def latencies(self, sent: list[tuple[float, bytes]]) -> list[float]:
        """Per epoch received: arrival of its last byte minus the time it was written by the source."""
        pushed = b"".join(ep for _, ep in sent)
        start = len(pushed) - len(self.data)
        assert start >= 0 and bytes(self.data) == pushed[start:], "stream lost or corrupted"
        out, end, mi = [], 0, 0
        for t_sent, ep in sent:
            end += len(ep)
            if end - start <= 0:
                continue
            while self.marks[mi][1] < end - start:
                mi += 1
            out.append(self.marks[mi][0] - t_sent)
        return out


def hostile_source(port: int, mount: str, password: str, seconds: float, stop: threading.Event) -> int:
    """An authenticated source sending the crafted pattern as fast as the caster reads it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"SOURCE {password} /{mount}\r\n\r\n".encode())
    assert b"ICY 200 OK" in s.recv(100)
    junk, sent, until = HOSTILE * 21845, 0, time.monotonic() + seconds
    s.settimeout(0.5)
    while time.monotonic() < until and not stop.is_set():
        try:
            sent += s.send(junk)
        except socket.timeout:
            continue
        except OSError:
            break
    s.close()
    return sent


def test_hostile_source_does_not_delay_another_station(caster, gmsd_epochs):
    token = caster.tokens.create("vehicle", "car1")
    caster.add_station("GMSD", "GMSD7", GMSD_ECEF, password="src-pw")
    caster.add_station("EVIL", "EVIL0", TESTGLO_ECEF, password="evil-pw")
    pusher = Pusher(caster.port, "GMSD7", "src-pw", gmsd_epochs[:40], period=0.05, loop=True)
    pusher.start()
    wait_up(caster, "GMSD")
    s = get(caster.port, "GMSD7", user="car1", password=token)
    head, rest = read_head(s)
    assert head == b"ICY 200 OK"
    rx = Receiver(s, rest)
    rx.start()
    time.sleep(0.5)
    stop = threading.Event()
    junk_sent = hostile_source(caster.port, "EVIL0", "evil-pw", 3.0, stop)
    time.sleep(0.3)
    pusher.stop()
    time.sleep(0.5)
    rx.stop_event.set()
    rx.join(2)
    lat = rx.latencies(pusher.sent)  # also asserts: nothing lost, nothing corrupted
    evil = caster.call(lambda: caster.caster.mounts["EVIL0"].budget.throttled)
    status = caster.call(caster.caster.station_status, "EVIL")
    assert junk_sent > 256 * 1024  # more than froze every mountpoint for 7 s before
    assert len(lat) > 50
    assert max(lat) < 0.25, f"worst epoch latency {max(lat):.3f} s beside a hostile source"
    assert status["frames"] == 0 and status["bad_frames"] >= 1
    assert evil > 0  # the hostile source hit its budget, the other did not wait for it


def test_short_crc_valid_frame_is_bad_and_not_forwarded(caster, gmsd_epochs):
    token = caster.tokens.create("vehicle", "car1")
    caster.add_station("GMSD", "GMSD7", GMSD_ECEF, password="src-pw")
    short = rtcm_frame(b"\x3e")  # CRC fine, 1 byte: no room for a message number
    epochs = [gmsd_epochs[0], gmsd_epochs[1] + short, gmsd_epochs[2]]
    p = Pusher(caster.port, "GMSD7", "src-pw", epochs, period=0.1, loop=True)
    p.start()
    wait_up(caster, "GMSD")
    s = get(caster.port, "GMSD7", user="car1", password=token)
    head, rest = read_head(s)
    assert head == b"ICY 200 OK"
    s.settimeout(0.5)
    t_end = time.monotonic() + 1.0
    received = rest
    while time.monotonic() < t_end:
        received += s.recv(65536)
    p.stop()
    status = caster.call(caster.caster.station_status, "GMSD")
    assert short not in received and len(received) > 1000
    assert status["bad_frames"] >= 1 and status["frames"] > 3


def test_monitor_counts_a_short_frame_as_bad():
    mon, framer = Monitor(), RtcmFramer()
    short = rtcm_frame(b"\x3e")
    assert framer.feed(short) == [] and framer.bad_frames == 1
    assert mon.observe("X", short) is None and mon.observe("X", short, crc_checked=True) is None
    assert mon.stations["X"].bad_frames == 2 and mon.stations["X"].frames == 0


@pytest.mark.parametrize("v2", [False, True])
def test_silent_station_refuses_new_clients_and_closes_its_own(caster, gmsd_epochs, v2):
    token = caster.tokens.create("vehicle", "car1")
    caster.add_station("GMSD", "GMSD7", GMSD_ECEF, password="src-pw")
    p = Pusher(caster.port, "GMSD7", "src-pw", gmsd_epochs[:20], period=0.05, loop=True)
    p.start()
    wait_up(caster, "GMSD")
    s = get(caster.port, "GMSD7", user="car1", password=token, v2=v2)
    head, rest = read_head(s)
    assert b" 200 OK" in head
    time.sleep(0.3)  # some epochs reach the client
    p.stop()  # the station's source goes away
    t0 = time.monotonic()
    time.sleep(0.1)
    late = get(caster.port, "GMSD7", user="car1", password=token, v2=v2)
    late_head, _ = read_head(late)
    assert late_head.startswith(b"HTTP/1.1 404") if v2 else late_head.startswith(b"SOURCETABLE 200")
    s.settimeout(5)
    body = rest + read_all(s)  # returns when the caster closes the stream
    closed_after = time.monotonic() - t0
    assert closed_after < 1.0 + 1.5  # down_after plus housekeeping slack, not "never"
    if v2:
        assert len(dechunk(body)[0]) > 1000, body[:80]
        assert body.endswith(b"0\r\n\r\n")  # a clean end of the chunked stream
    assert caster.call(lambda: caster.caster.dropped.get("station_down")) == 1


# --- GGA, NEAREST flood, per-token limits, auth back-off, v2 errors -------------------------------------

@pytest.mark.parametrize("lat,lon,h", [(95.0, 10.0, 0.0), (10.0, 200.0, 0.0), (10.0, 10.0, 1e308),
                                       (-91.0, 0.0, 0.0), (10.0, 10.0, -5000.0)])
def test_gga_out_of_range_is_refused(lat, lon, h):
    from cors.ntrip import make_gga, parse_gga

    assert parse_gga(make_gga(lat, lon, h)) is None
    assert parse_gga(make_gga(39.8, 116.4, 30.0)).lat == pytest.approx(39.8)


def test_gga_nan_is_refused():
    from pynmeagps import NMEAMessage

    from cors.ntrip import parse_gga

    line = b"$GPGGA,120000.00,nan,N,11624.00000,E,1,12,0.8,nan,M,0.0,M,,*"
    cs = 0
    for b in line[1:-1]:
        cs ^= b
    assert parse_gga(line + b"%02X" % cs) is None
    assert NMEAMessage  # pynmeagps is what parses it


def test_gga_flood_switches_at_most_once(tmp_path, gmsd_epochs):
    from cors.ntrip import make_gga
    from cors.geodesy import ecef_to_geodetic

    c = CasterThread(tmp_path, down_after=2.0, nearest_min_dwell_s=30.0).start()
    try:
        token = c.tokens.create("vehicle", "car1")
        c.add_station("GMSD", "GMSD7", GMSD_ECEF, password="a")
        c.add_station("GLOS", "GLO1", TESTGLO_ECEF, password="b")
        pa = Pusher(c.port, "GMSD7", "a", gmsd_epochs[:20], period=0.05, loop=True)
        pb = Pusher(c.port, "GLO1", "b", gmsd_epochs[:20], period=0.05, loop=True)
        pa.start(), pb.start()
        wait_up(c, "GMSD"), wait_up(c, "GLOS")
        near_a = make_gga(*ecef_to_geodetic(*GMSD_ECEF))
        near_b = make_gga(*ecef_to_geodetic(*TESTGLO_ECEF))
        s = get(c.port, "NEAREST", user="car1", password=token)
        assert read_head(s)[0] == b"ICY 200 OK"
        s.sendall(near_a)
        c.wait(lambda: any(cl.mount is not None for cl in c.caster.nearest_clients), what="assigned")
        switches = c.call(lambda: c.caster.switches)
        for _ in range(200):  # a flood alternating between the two bases
            s.sendall(near_b + near_a)
        time.sleep(1.5)
        s.sendall(near_b)
        time.sleep(0.5)
        # one move to the other base, then no way back within the dwell time
        assert c.call(lambda: c.caster.switches) - switches <= 1
        pa.stop(), pb.stop()
    finally:
        c.stop()


def test_per_token_stream_limit(tmp_path, gmsd_epochs):
    c = CasterThread(tmp_path, down_after=2.0, max_streams_per_token=3).start()
    try:
        token = c.tokens.create("vehicle", "car1")
        other = c.tokens.create("vehicle", "car2")
        c.add_station("GMSD", "GMSD7", GMSD_ECEF, password="a")
        p = Pusher(c.port, "GMSD7", "a", gmsd_epochs[:20], period=0.05, loop=True)
        p.start()
        wait_up(c, "GMSD")
        socks = [get(c.port, "GMSD7", user="car1", password=token) for _ in range(3)]
        assert all(read_head(x)[0] == b"ICY 200 OK" for x in socks)
        fourth = get(c.port, "GMSD7", user="car1", password=token, v2=True)
        head, _ = read_head(fourth)
        assert head.startswith(b"HTTP/1.1 429") and b"Ntrip-Version: Ntrip/2.0" in head
        s2 = get(c.port, "GMSD7", user="car2", password=other)
        assert read_head(s2)[0] == b"ICY 200 OK"  # another token is not affected
        socks[0].close()
        c.wait(lambda: c.caster.streams.open.get("car1") == 2, what="stream released")
        again = get(c.port, "GMSD7", user="car1", password=token)
        assert read_head(again)[0] == b"ICY 200 OK"
        p.stop()
    finally:
        c.stop()


def test_failed_auth_backs_off(tmp_path):
    c = CasterThread(tmp_path, down_after=2.0, auth_free_failures=3, auth_backoff_s=30.0).start()
    try:
        c.add_station("GMSD", "GMSD7", GMSD_ECEF, password="right")
        answers = []
        for i in range(5):
            s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
            s.sendall(b"SOURCE wrong%d /GMSD7\r\n\r\n" % i)
            answers.append(read_all(s))
        assert answers[:3] == [b"ERROR - Bad Password\r\n"] * 3
        assert all(b"too many failed logins" in a for a in answers[3:])
        s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
        s.sendall(b"SOURCE right /GMSD7\r\n\r\n")
        assert b"too many failed logins" in read_all(s)  # even the right one waits: no oracle
        assert c.call(lambda: c.caster.auth_throttle.refused) >= 3
    finally:
        c.stop()


@pytest.mark.parametrize("head", [
    b"GET /GMSD7 HTTP/1.1\r\nNtrip-Version: Ntrip/2.0\r\nbad header line\r\n\r\n",
    b"GET GMSD7 HTTP/1.1\r\nNtrip-Version: Ntrip/2.0\r\n\r\n",
    b"GET /GMSD7 HTTP/1.1\r\nNtrip-Version: Ntrip/2.0\r\nAuthorization: Basic !!!\r\n\r\n",
])
def test_v2_parse_errors_are_v2_shaped(caster, head):
    s = socket.create_connection(("127.0.0.1", caster.port), timeout=5)
    s.sendall(head)
    reply = read_all(s)
    assert reply.startswith(b"HTTP/1.1 400") and b"\r\nNtrip-Version: Ntrip/2.0\r\n" in reply


def test_v1_parse_errors_stay_v1(caster):
    s = socket.create_connection(("127.0.0.1", caster.port), timeout=5)
    s.sendall(b"GET GMSD7 HTTP/1.0\r\n\r\n")
    reply = read_all(s)
    assert reply.startswith(b"HTTP/1.0 400") and b"Ntrip-Version" not in reply


@pytest.mark.slow
def test_chaos_station_restart_junk_flood_and_slow_sockets(tmp_path, gmsd_epochs):
    """A station replay and its clients while the station restarts, another source floods junk and
    slow sockets hang around: every client gets every frame, byte for byte, with bounded latency."""
    c = CasterThread(tmp_path, down_after=3.0, stale_after=0.5, header_timeout=2.0).start()
    stop = threading.Event()
    slow = []
    try:
        token = c.tokens.create("vehicle", "fleet")
        c.add_station("GMSD", "GMSD7", GMSD_ECEF, password="src-pw")
        c.add_station("EVIL", "EVIL0", TESTGLO_ECEF, password="evil-pw")
        p1 = Pusher(c.port, "GMSD7", "src-pw", gmsd_epochs[:60], period=0.05, loop=True)
        p1.start()
        wait_up(c, "GMSD")
        rovers = []
        for i in range(6):
            s = get(c.port, "GMSD7", user="fleet", password=token, v2=False)
            head, rest = read_head(s)
            assert head == b"ICY 200 OK"
            rovers.append(Receiver(s, rest))
        for r in rovers:
            r.start()
        auth = basic("fleet", token)
        for i in range(20):  # slowloris heads, and clients that never read
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", c.port))
            s.sendall(b"GET /GMSD7 HTTP/1.1\r\nNtrip-Version: Ntrip/2.0\r\n" if i % 2 else
                      f"GET /GMSD7 HTTP/1.0\r\nAuthorization: {auth}\r\n\r\n".encode())
            slow.append(s)
        flood = threading.Thread(target=hostile_source, args=(c.port, "EVIL0", "evil-pw", 4.0, stop), daemon=True)
        flood.start()
        time.sleep(1.5)
        p1.stop()  # the station dies ...
        time.sleep(0.5)
        p2 = Pusher(c.port, "GMSD7", "src-pw", gmsd_epochs[60:120], period=0.05, loop=True)
        p2.start()  # ... and comes back within down_after: its clients stay
        time.sleep(2.5)
        p2.stop()
        flood.join(10)
        time.sleep(0.5)
        for r in rovers:
            r.stop_event.set()
            r.join(2)
        sent = p1.sent + p2.sent
        for r in rovers:
            lat = r.latencies(sent)  # asserts nothing lost or corrupted across the restart
            assert len(lat) > 60 and max(lat) < 0.3, f"worst latency {max(lat):.3f} s"
        assert c.call(lambda: c.caster.requests.get(408, 0)) >= 10  # the slowloris heads were closed
    finally:
        stop.set()
        for s in slow:
            s.close()
        c.stop()
