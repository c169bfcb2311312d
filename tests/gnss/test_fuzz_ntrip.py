"""Property-based fuzzers: the RTCM framer, the NTRIP request parser, the GGA parser (marker ``fuzz``)."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cors import ntrip
from cors.monitor import Monitor, RtcmFramer
from cors.ntrip import crc24q

pytestmark = pytest.mark.fuzz


def frame(payload: bytes) -> bytes:
    body = bytes([0xD3, len(payload) >> 8, len(payload) & 0xFF]) + payload
    return body + crc24q(body).to_bytes(3, "big")


payloads = st.binary(min_size=2, max_size=300)
junk = st.binary(max_size=200) | st.just(b"\xd3\x03\xff" * 50) | st.just(b"\xd3\x00")


@given(st.lists(st.tuples(junk, payloads), max_size=8), st.lists(st.integers(1, 400), max_size=20))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_framer_finds_every_frame_whatever_surrounds_it_and_however_split(parts, cuts):
    """Valid frames behind any junk come out whole and in order, however TCP splits the stream; no
    frame comes out that was not a CRC-valid frame of at least two payload bytes. (A false preamble
    holds the frames behind it until one longest frame of bytes has followed: the zero tail.)"""
    stream = b"".join(j + frame(p) for j, p in parts) + bytes(1029)
    framer, out, pos = RtcmFramer(), [], 0
    for c in cuts:
        out += framer.feed(stream[pos:pos + c])
        pos += c
    out += framer.feed(stream[pos:])
    for f in out:
        assert f[0] == 0xD3 and len(f) == 6 + (((f[1] & 3) << 8) | f[2]) and len(f) >= 8
        assert crc24q(f[:-3]) == int.from_bytes(f[-3:], "big")
    real = [frame(p) for _, p in parts]
    it = iter(out)  # every real frame appears, in order (junk may hold frames of its own)
    assert all(any(f == r for f in it) for r in real)
    assert framer.pending() <= 1029


@given(st.binary(max_size=2000))
def test_framer_and_monitor_never_raise_on_bytes(data):
    framer, mon = RtcmFramer(), Monitor()
    for f in framer.feed(data):
        mon.observe("X", f, crc_checked=True)
    assert framer.junk_bytes <= len(data)


@given(st.binary(min_size=0, max_size=40))
def test_monitor_counts_any_crc_valid_frame(payload):
    mon = Monitor()
    mon.observe("X", frame(payload))
    st_ = mon.stations["X"]
    assert st_.frames + st_.bad_frames == 1
    assert (st_.bad_frames == 1) == (len(payload) < 2)


header_name = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz-ABCNTRIP:"), min_size=0, max_size=20)
header_value = st.text(st.characters(min_codepoint=0, max_codepoint=255, exclude_characters="\r\n"), max_size=40)
request_line = st.one_of(
    st.text(st.characters(min_codepoint=0, max_codepoint=255, exclude_characters="\r\n"), max_size=80),
    st.builds(lambda m, p, v: f"{m} {p} {v}", st.sampled_from(["GET", "POST", "SOURCE", "PUT", "get"]),
              st.text(max_size=30), st.sampled_from(["HTTP/1.0", "HTTP/1.1", "HTTP/2", "x"])),
)


@given(request_line, st.lists(st.tuples(header_name, header_value), max_size=6), st.booleans())
def test_request_parser_answers_or_refuses_cleanly(line, headers, v2):
    lines = [line] + [f"{n}: {v}" if n else v for n, v in headers]
    if v2:
        lines.append("Ntrip-Version: Ntrip/2.0")
    head = "\r\n".join(lines).encode("latin-1", "replace")
    try:
        req = ntrip.parse_request(head)
    except ntrip.BadRequest as exc:
        assert 400 <= exc.status < 500
        return
    assert req.method in ("GET", "POST", "SOURCE")
    assert "\r" not in req.mountpoint or req.method != "SOURCE"


@given(st.binary(max_size=300))
def test_request_parser_on_raw_bytes(head):
    try:
        ntrip.parse_request(head)
    except ntrip.BadRequest as exc:
        assert 400 <= exc.status < 500


def nmea(body: str) -> bytes:
    cs = 0
    for b in body.encode("latin-1"):
        cs ^= b
    return b"$" + body.encode("latin-1") + b"*%02X" % cs


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**9, 10**9),
                    st.sampled_from(["nan", "inf", "-inf", "1e308", "", "-0", "9999.99999"]))


@given(numbers, st.sampled_from("NSX"), numbers, st.sampled_from("EWX"), numbers, numbers)
def test_gga_parser_returns_a_position_on_earth_or_none(lat, ns, lon, ew, alt, sep):
    line = nmea(f"GPGGA,120000.00,{lat},{ns},{lon},{ew},1,12,0.8,{alt},M,{sep},M,,")
    gga = ntrip.parse_gga(line)
    if gga is not None:
        assert all(math.isfinite(v) for v in (gga.lat, gga.lon, gga.height))
        assert -90 <= gga.lat <= 90 and -180 <= gga.lon <= 180
        assert ntrip.GGA_HEIGHT_M[0] <= gga.height <= ntrip.GGA_HEIGHT_M[1]


@given(st.floats(-90, 90), st.floats(-180, 180), st.floats(-900, 9000))
def test_gga_round_trip_of_real_positions(lat, lon, h):
    gga = ntrip.parse_gga(ntrip.make_gga(lat, lon, h))
    assert gga is not None
    assert abs(gga.lat - lat) < 1e-6 and abs(gga.height - h) < 0.01
    assert abs(gga.lon - lon) < 1e-6 or abs(abs(gga.lon - lon) - 360) < 1e-6


@given(st.binary(max_size=200))
def test_gga_parser_never_raises(data):
    ntrip.parse_gga(data)
    ntrip.parse_gga(b"$GPGGA" + data)
