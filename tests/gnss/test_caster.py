"""The NTRIP caster over raw sockets on 127.0.0.1: sourcetable, v1/v2 streams, auth, errors, NEAREST."""
from __future__ import annotations

import socket
import time

import pytest
from pyrtcm import RTCMReader

from cors.ntrip import make_gga
from tests.gnss.ntrip_helpers import (
    GMSD7, GMSD_ECEF, TESTGLO, TESTGLO_ECEF, CasterThread, Pusher, basic, dechunk, epochs_of, get, read_all,
    read_head, request,
)


@pytest.fixture
def caster(tmp_path):
    c = CasterThread(tmp_path, down_after=1.0, header_timeout=1.0).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def gmsd_epochs():
    return epochs_of(GMSD7)


@pytest.fixture(scope="module")
def glo_epochs():
    return epochs_of(TESTGLO)


def station_up(c, sid):
    c.wait(lambda: c.caster.monitor.is_up(sid) and c.caster.monitor.stations[sid].epochs >= 3
           and any(m.up for m in c.caster.mounts.values() if m.sid == sid), what=f"{sid} up")


def live(c, gmsd_epochs, mount="GMSD7", sid="GMSD", period=0.05, loop=True):
    c.add_station(sid, mount, GMSD_ECEF, password="src-pw", name="Tanegashima", receiver="TRIMBLE NETR9",
                  antenna="TRM59800.00", country="JPN")
    p = Pusher(c.port, mount, "src-pw", gmsd_epochs, period=period, loop=loop)
    p.start()
    station_up(c, sid)
    return p


def rtcm_frames(data: bytes) -> list:
    from cors.monitor import RtcmFramer

    from cors.ntrip import frame_ok

    return [RTCMReader.parse(f) for f in RtcmFramer().feed(data) if frame_ok(f)]


def stream_prefix_ok(received: bytes, pushed: bytes) -> bool:
    """Received bytes are exactly a run of the pushed stream (starting where the client joined)."""
    return len(received) > 0 and received in pushed and pushed.find(received) >= 0


# --- sourcetable --------------------------------------------------------------------------------------

def test_sourcetable_v1_fields_from_registry(caster, gmsd_epochs):
    p = live(caster, gmsd_epochs)
    try:
        s = request(caster.port, "GET / HTTP/1.0\r\nUser-Agent: NTRIP pytest\r\n\r\n")
        reply = read_all(s)
    finally:
        p.stop()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"SOURCETABLE 200 OK\r\n")
    assert b"Content-Type: text/plain" in head
    length = int([l for l in head.split(b"\r\n") if l.startswith(b"Content-Length:")][0].split(b":")[1])
    assert length == len(body)
    lines = body.decode().split("\r\n")
    assert lines[-2] == "ENDSOURCETABLE" and lines[-1] == ""
    records = {l.split(";")[0] + ":" + l.split(";")[1]: l.split(";") for l in lines[:-2]}
    s_gmsd = records["STR:GMSD7"]
    assert len(s_gmsd) == 19 and all(f != "" for f in s_gmsd)
    assert s_gmsd[2] == "Tanegashima" and s_gmsd[3] == "RTCM 3.3" and s_gmsd[8] == "JPN"
    assert s_gmsd[9] == "30.56" and s_gmsd[10] == "131.02"   # two decimals only: restricted ARP
    assert s_gmsd[13] == "TRIMBLE NETR9" and s_gmsd[15] == "B"
    assert "1077(1)" in s_gmsd[4] and set(s_gmsd[6].split("+")) == {"GPS", "GLO", "QZS", "BDS"}
    assert int(s_gmsd[17]) > 0
    nearest = records["STR:NEAREST"]
    assert len(nearest) == 19 and nearest[11] == "1"        # NEAREST needs GGA
    assert len(records["CAS:127.0.0.1"]) == 12 and records["CAS:127.0.0.1"][2] == str(caster.port)
    assert len([r for r in records.values() if r[0] == "NET"][0]) == 9
    assert b"3607665" not in body and b"30.556" not in body


def test_sourcetable_v2_chunked_and_filtered(caster, gmsd_epochs):
    p = live(caster, gmsd_epochs)
    try:
        s = request(caster.port, f"GET /?STR;;;;;;;;JPN HTTP/1.1\r\nHost: 127.0.0.1:{caster.port}\r\n"
                                 "Ntrip-Version: Ntrip/2.0\r\nUser-Agent: NTRIP pytest\r\n\r\n")
        head, rest = read_head(s)
        rest += read_all(s)
        s2 = request(caster.port, "GET /?STR;;;;;;;;DEU HTTP/1.1\r\nHost: x\r\nNtrip-Version: Ntrip/2.0\r\n\r\n")
        _, rest2 = read_head(s2)
        rest2 += read_all(s2)
    finally:
        p.stop()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: gnss/sourcetable" in head and b"Transfer-Encoding: chunked" in head
    assert b"Ntrip-Version: Ntrip/2.0" in head
    body, sizes = dechunk(rest)
    assert sizes[-1] == 0
    text = body.decode()
    assert text.startswith("STR;GMSD7;") and text.endswith("ENDSOURCETABLE\r\n")
    assert "CAS;" not in text and "NEAREST" not in text  # NEAREST is a network record, country XXX
    body2, _ = dechunk(rest2)
    assert body2 == b"ENDSOURCETABLE\r\n"


# --- data streams -------------------------------------------------------------------------------------

def test_v1_client_receives_exactly_the_pushed_bytes(caster, gmsd_epochs):
    token = caster.tokens.create("vehicle", "car1")
    p = live(caster, gmsd_epochs[:80], period=0.02, loop=False)
    s = get(caster.port, "GMSD7", user="car1", password=token)
    head, rest = read_head(s)
    assert head == b"ICY 200 OK"
    s.settimeout(1.5)
    received = rest + read_all(s)
    p.join(10)
    pushed = b"".join(ep for _, ep in p.sent)
    assert len(received) > 5000
    assert received == pushed[len(pushed) - len(received):]  # the tail of the stream, byte for byte
    assert rtcm_frames(received)[0].identity in {"1077", "1007", "1019", "1020"}


def test_corrupted_frame_counted_and_not_forwarded(caster, gmsd_epochs):
    token = caster.tokens.create("vehicle", "car1")
    p = live(caster, gmsd_epochs[:3], period=0.05, loop=True)
    s = get(caster.port, "GMSD7", user="car1", password=token)
    assert read_head(s)[0] == b"ICY 200 OK"
    p.stop()
    s.settimeout(0.5)
    read_all(s)  # what the first source sent
    epoch = bytearray(gmsd_epochs[10])
    epoch[200] ^= 0x55  # inside the first frame (1077, 368 bytes)
    p2 = Pusher(caster.port, "GMSD7", "src-pw", [bytes(epoch)], period=0.05)
    p2.start()
    p2.join(5)
    s.settimeout(1.0)
    received = read_all(s)
    status = caster.call(caster.caster.station_status, "GMSD")
    assert received == gmsd_epochs[10][368:]
    assert status["bad_frames"] == 1


def test_v2_client_gets_chunked_stream(caster, gmsd_epochs):
    token = caster.tokens.create("vehicle", "car2")
    p = live(caster, gmsd_epochs[:60], period=0.02, loop=False)
    s = get(caster.port, "GMSD7", user="car2", password=token, v2=True)
    head, rest = read_head(s)
    s.settimeout(1.5)
    rest += read_all(s)
    p.join(10)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"Content-Type: gnss/data" in lines and b"Transfer-Encoding: chunked" in lines
    assert b"Ntrip-Version: Ntrip/2.0" in lines
    data, sizes = dechunk(rest)
    pushed = b"".join(ep for _, ep in p.sent)
    assert len(sizes) > 5 and data == pushed[len(pushed) - len(data):]


def test_v2_post_source_and_conflicting_second_source(caster, glo_epochs):
    caster.add_station("TGLO", "TESTGLO", TESTGLO_ECEF, password="glo-pw")
    bad = Pusher(caster.port, "TESTGLO", "wrong", glo_epochs, v2=True, user="TGLO")
    bad.start(); bad.join(5)
    assert bad.reply.startswith(b"HTTP/1.1 401 Unauthorized")
    p = Pusher(caster.port, "TESTGLO", "glo-pw", glo_epochs, period=0.02, v2=True, user="TGLO", loop=True)
    p.start()
    station_up(caster, "TGLO")
    second = Pusher(caster.port, "TESTGLO", "glo-pw", glo_epochs, v2=True, user="TGLO")
    second.start(); second.join(5)
    v1 = Pusher(caster.port, "TESTGLO", "glo-pw", glo_epochs)
    v1.start(); v1.join(5)
    status = caster.call(caster.caster.station_status, "TGLO")
    p.stop()
    assert second.reply.startswith(b"HTTP/1.1 409 Conflict")
    assert v1.reply.startswith(b"ERROR - Mount Point Taken")
    assert status["message_types"]["1004"]["count"] > 5 and status["bad_frames"] == 0
    assert status["satellites"]["GPS"] > 4 and status["rtcm_station_id"] is not None


def test_v1_source_bad_password_and_bad_mountpoint(caster, gmsd_epochs):
    caster.add_station("GMSD", "GMSD7", GMSD_ECEF, password="src-pw")
    p = Pusher(caster.port, "GMSD7", "nope", gmsd_epochs)
    p.start(); p.join(5)
    assert p.reply == b"ERROR - Bad Password\r\n"
    p = Pusher(caster.port, "NOSUCH", "src-pw", gmsd_epochs)
    p.start(); p.join(5)
    assert p.reply == b"ERROR - Bad Mountpoint\r\n"


# --- auth and errors ------------------------------------------------------------------------------------

def test_auth_failures(caster, gmsd_epochs):
    good = caster.tokens.create("vehicle", "car1", mountpoints=["OTHER"])
    prod = caster.tokens.create("producer", "maker")
    revoked = caster.tokens.create("vehicle", "old")
    caster.tokens.revoke("old")
    p = live(caster, gmsd_epochs)
    try:
        replies = {}
        for name, kwargs in {
            "none": {}, "bad": {"user": "car1", "password": "x"}, "revoked": {"user": "old", "password": revoked},
            "role": {"user": "maker", "password": prod}, "mount": {"user": "car1", "password": good},
        }.items():
            replies[name] = read_all(get(caster.port, "GMSD7", **kwargs))
            replies[name + "2"] = read_all(get(caster.port, "GMSD7", v2=True, **kwargs))
    finally:
        p.stop()
    for name in ("none", "bad", "revoked", "role", "mount"):
        assert replies[name].startswith(b"HTTP/1.0 401 Unauthorized\r\n"), name
        assert b'WWW-Authenticate: Basic realm="/GMSD7"' in replies[name]
    for name in ("none2", "bad2", "revoked2"):
        assert replies[name].startswith(b"HTTP/1.1 401 Unauthorized\r\n"), name
        assert b"Ntrip-Version: Ntrip/2.0" in replies[name]
    assert replies["role2"].startswith(b"HTTP/1.1 403 Forbidden")
    assert replies["mount2"].startswith(b"HTTP/1.1 403 Forbidden")


def test_unknown_mountpoint(caster):
    token = caster.tokens.create("vehicle", "car1")
    v1 = read_all(get(caster.port, "NOPE", user="car1", password=token))
    v2 = read_all(get(caster.port, "NOPE", user="car1", password=token, v2=True))
    assert v1.startswith(b"SOURCETABLE 200 OK\r\n") and v1.endswith(b"ENDSOURCETABLE\r\n")
    assert v2.startswith(b"HTTP/1.1 404 Not Found\r\n")


@pytest.mark.parametrize("raw, status", [
    (b"HELLO\r\n\r\n", b"400"),
    (b"GET /x\r\n\r\n", b"400"),
    (b"DELETE /x HTTP/1.1\r\nNtrip-Version: Ntrip/2.0\r\n\r\n", b"405"),
    (b"GET /x HTTP/1.0\r\nAuthorization: Basic !!!notbase64\r\n\r\n", b"400"),
    (b"GET /x HTTP/1.0\r\nbad header line\r\n\r\n", b"400"),
    (b"GET /" + b"A" * 9000 + b" HTTP/1.0\r\n\r\n", b"431"),
    (b"\x00\xff\xd3\x00\x13" * 10 + b"\r\n\r\n", b"400"),
    (b"GET / HTTP/1.0\r\n", b"408"),  # never finishes its head
])
def test_bad_requests_get_errors_and_caster_survives(caster, raw, status):
    s = request(caster.port, "")
    s.sendall(raw)
    reply = read_all(s)
    assert reply.split(b" ")[1] == status, reply[:80]
    ok = read_all(request(caster.port, "GET / HTTP/1.0\r\n\r\n"))
    assert ok.startswith(b"SOURCETABLE 200 OK")


def test_garbage_fuzz_never_kills_the_caster(caster):
    import random

    rnd = random.Random(6)
    for _ in range(40):
        s = request(caster.port, "")
        junk = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300)))
        try:
            s.sendall(junk + rnd.choice([b"\r\n\r\n", b"\n\n", b""]))
            s.shutdown(socket.SHUT_WR)
            read_all(s)
        except OSError:
            pass
        s.close()
    assert read_all(request(caster.port, "GET / HTTP/1.0\r\n\r\n")).startswith(b"SOURCETABLE 200 OK")


# --- fan-out under load --------------------------------------------------------------------------------

def test_slow_client_dropped_without_delaying_fast_one(tmp_path, gmsd_epochs):
    c = CasterThread(tmp_path, down_after=2.0, max_backlog=65536, client_sndbuf=16384).start()
    try:
        token = c.tokens.create("vehicle", "car")
        p = live(c, gmsd_epochs, period=0.005, loop=True)  # ~200 kB/s: far more than a rover reads
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", c.port))
        slow.sendall(f"GET /GMSD7 HTTP/1.0\r\nAuthorization: {basic('car', token)}\r\n\r\n".encode())
        fast = get(c.port, "GMSD7", user="car", password=token)
        head, received = read_head(fast)
        assert head == b"ICY 200 OK"
        joined = time.monotonic()
        fast.settimeout(2)
        while time.monotonic() < joined + 2.5:
            received += fast.recv(65536)
        p.stop()
        fast.settimeout(0.5)
        received += read_all(fast)
        dropped = c.call(lambda: dict(c.caster.dropped))
        clients = c.call(lambda: len(c.caster.mounts["GMSD7"].clients))
    finally:
        c.stop()
    pushed = b"".join(ep for _, ep in p.sent)
    assert dropped.get("slow") == 1 and clients == 1
    # the fast client got every byte pushed after it joined, in order, while the slow one was dropped
    assert len(received) > 150_000
    assert received == pushed[len(pushed) - len(received):]
    slow.close()


def test_many_clients_parallel_fanout_delivers_identical_bytes(caster, gmsd_epochs):
    from cors.caster import PARALLEL_FANOUT_MIN

    token = caster.tokens.create("vehicle", "fleet")
    caster.caster.streams.limit = 0  # one fleet token for all of them: no per-token limit here
    p = live(caster, gmsd_epochs, period=0.1, loop=True)
    socks = []
    try:
        for i in range(PARALLEL_FANOUT_MIN + 44):
            socks.append([get(caster.port, "GMSD7", user="fleet", password=token, v2=(i % 10 == 0)),
                          i % 10 == 0, b""])
        for entry in socks:
            entry[2] = read_head(entry[0])[1]
        caster.wait(lambda: len(caster.caster.mounts["GMSD7"].clients) == len(socks), what="all attached")
        n0 = len(p.sent)
        caster.wait(lambda: len(p.sent) >= n0 + 4, what="4 more epochs")
    finally:
        p.stop()
    time.sleep(0.3)
    sent = b"".join(ep for _, ep in p.sent)
    try:
        for entry in socks:
            entry[0].setblocking(False)
            while True:
                try:
                    part = entry[0].recv(65536)
                except BlockingIOError:
                    break
                if not part:
                    break
                entry[2] += part
    finally:
        for entry in socks:
            entry[0].close()
    assert caster.call(lambda: caster.caster.mounts["GMSD7"].fanout_max_s) > 0
    for _s, v2, data in socks:
        payload = dechunk(data)[0] if v2 else data
        # every client holds an unbroken run of the pushed stream from the epoch it joined at
        assert len(payload) > 3000 and payload in sent


# --- health and NEAREST ---------------------------------------------------------------------------------

def test_station_down_on_silence(caster, gmsd_epochs):
    p = live(caster, gmsd_epochs, loop=True)
    assert b"STR;GMSD7;" in read_all(request(caster.port, "GET / HTTP/1.0\r\n\r\n"))
    p.stop()
    caster.wait(lambda: not caster.caster.mounts["GMSD7"].up, timeout=5, what="down")
    table = read_all(request(caster.port, "GET / HTTP/1.0\r\n\r\n"))
    status = caster.call(caster.caster.station_status, "GMSD")
    metrics = caster.call(caster.caster.metrics_text).decode()
    assert b"STR;GMSD7;" not in table and b"STR;NEAREST;" not in table
    assert status["up"] is False and status["age_s"] >= 1.0 and status["frames"] > 0
    assert 'cors_station_up{station="GMSD"} 0.0' in metrics
    assert 'cors_frames_total{station="GMSD",type="1077"}' in metrics


def _station_ids(data: bytes) -> list[int]:
    return [getattr(m, "DF003") for m in rtcm_frames(data) if hasattr(m, "DF003")]


def test_nearest_switches_with_position_and_on_station_down(caster, gmsd_epochs, glo_epochs):
    token = caster.tokens.create("vehicle", "rover")
    caster.add_station("GMSD", "GMSD7", GMSD_ECEF, password="a")
    caster.add_station("TGLO", "TESTGLO", TESTGLO_ECEF, password="b")
    pa = Pusher(caster.port, "GMSD7", "a", gmsd_epochs, period=0.05, loop=True)
    pb = Pusher(caster.port, "TESTGLO", "b", glo_epochs, period=0.05, loop=True)
    pa.start(); pb.start()
    station_up(caster, "GMSD"); station_up(caster, "TGLO")
    gmsd_id = RTCMReader.parse(gmsd_epochs[0][:368]).DF003
    try:
        # NTRIP 2.0: position in the Ntrip-GGA header, near GMSD (Tanegashima)
        s = get(caster.port, "NEAREST", user="rover", password=token, v2=True,
                extra="Ntrip-GGA: " + make_gga(30.6, 131.0, 50).decode().strip() + "\r\n")
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 200 OK")
        s.settimeout(0.3)
        first = rest
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            try:
                first += s.recv(65536)
            except socket.timeout:
                pass
        ids_a = set(_station_ids(dechunk(first[:first.rfind(b"\r\n") + 2])[0]))
        assert ids_a == {gmsd_id}
        # the rover drives to central Honshu: GGA in the stream moves it to testglo
        s.sendall(make_gga(35.8, 138.4, 1000))
        caster.wait(lambda: caster.caster.switches >= 1, what="switch to TESTGLO")
        assert caster.call(lambda: {c.mount.name for c in caster.caster.nearest_clients}) == {"TESTGLO"}
        time.sleep(0.2)
        s.settimeout(0.3)
        after = b""
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            try:
                after += s.recv(65536)
            except socket.timeout:
                pass
        glo_id = _station_ids(glo_epochs[0])[0]
        # chunks carry whole frames, so frames can be found in the chunked stream itself
        assert glo_id in _station_ids(after[-4000:]) and glo_id != gmsd_id
        # testglo goes silent: the rover is moved back to the nearest healthy station
        pb.stop()
        caster.wait(lambda: caster.caster.switches >= 2, what="switch back after down")
        mounts = caster.call(lambda: {c.mount.name for c in caster.caster.nearest_clients if c.mount})
        assert mounts == {"GMSD7"}
        v1 = get(caster.port, "NEAREST", user="rover", password=token)
        assert read_head(v1)[0] == b"ICY 200 OK"
        v1.sendall(make_gga(35.87, 138.39, 1000))  # NTRIP 1.0: GGA in the stream; testglo is down
        caster.wait(lambda: len([c for c in caster.caster.nearest_clients if c.mount]) == 2, what="v1 assigned")
        assert caster.call(lambda: {c.mount.name for c in caster.caster.nearest_clients}) == {"GMSD7"}
    finally:
        pa.stop(); pb.stop()


# --- protocol parsing never raises anything but BadRequest ------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from cors import ntrip  # noqa: E402

_HEADS = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda m, p, v, h: f"{m} {p} {v}\r\n{h}".encode("latin-1", "replace"),
              st.sampled_from(["GET", "POST", "SOURCE", "get", "PUT", ""]),
              st.text(max_size=40), st.sampled_from(["HTTP/1.0", "HTTP/1.1", "HTTP/2", "", "x"]),
              st.text(max_size=200)),
)


@settings(max_examples=300, deadline=None)
@given(_HEADS)
def test_parse_request_only_raises_bad_request(head):
    try:
        req = ntrip.parse_request(head)
    except ntrip.BadRequest as exc:
        assert 400 <= exc.status < 500
    else:
        assert req.method in ("GET", "POST", "SOURCE")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=50), max_size=10))
def test_chunk_decoder_only_raises_bad_request(parts):
    dec = ntrip.ChunkDecoder()
    try:
        for p in parts:
            dec.feed(p)
    except ntrip.BadRequest:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_gga_parser_never_raises(line):
    ntrip.parse_gga(b"$GPGGA," + line)
    ntrip.parse_gga(line)
