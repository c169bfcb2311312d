"""The sans-I/O NTRIP client side (cors.ntrip) against our own server side and RTKLIB-style replies,
the reconnect policy, geodesy, and the names every validator must refuse (trailing newline)."""
from __future__ import annotations

import base64

import numpy as np
import pytest

from cors import ntrip
from cors.errors import CorsError
from cors.geodesy import ecef_to_geodetic, geodetic_to_ecef
from cors.stations import Station, StationRegistry
from tokens import TokenError, TokenStore

ARP = (-3959400.631, 3385704.533, 3667523.111)  # GEONET 3034 (GSI)


def test_parse_url_schemes_and_errors():
    u = ntrip.parse_url("ntrip://car:t%40k@caster.example:2102/MOUNT1", what="--caster")
    assert (u.scheme, u.host, u.port, u.mountpoint, u.user, u.password) == (
        "ntrip", "caster.example", 2102, "MOUNT1", "car", "t@k")
    assert u.public() == "ntrip://caster.example:2102/MOUNT1"  # no credentials
    assert ntrip.parse_url("ntrip://h/M").port == 2101
    assert ntrip.parse_url("file:///tmp/x.rtcm3", schemes=("file",)).path == "/tmp/x.rtcm3"
    for bad, schemes, msg in [("tcp://h:1", ("ntrip",), "expected"), ("ntrip://h:2101/", ("ntrip",), "mountpoint"),
                              ("tcp://h", ("tcp",), "needs a port"), ("ntrip://h:x/M", ("ntrip",), "bad port"),
                              ("ntrip:///M", ("ntrip",), "missing host"), ("file:", ("file",), "needs a path")]:
        with pytest.raises(CorsError, match=msg) as err:
            ntrip.parse_url(bad, schemes=schemes, what="--to")
        assert str(err.value).startswith("--to ")


@pytest.mark.parametrize("version", [1, 2])
def test_client_request_is_what_our_server_parses(version):
    url = ntrip.parse_url("ntrip://car:s3cret@127.0.0.1:2101/GMSD7")
    gga = ntrip.make_gga(30.56, 131.02, 50.0)
    raw = ntrip.client_request(url, version, agent="test/1", gga=gga)
    head, rest = ntrip.split_head(raw)
    assert rest == b""
    req = ntrip.parse_request(head)
    assert (req.method, req.mountpoint, req.user, req.password) == ("GET", "GMSD7", "car", "s3cret")
    assert req.ntrip2 is (version == 2)
    assert req.http_version == ("HTTP/1.1" if version == 2 else "HTTP/1.0")
    if version == 2:  # v2 carries the GGA in a header; v1 clients write it into the stream
        pos = ntrip.parse_gga(req.headers["ntrip-gga"].encode())
        assert pos.lat == pytest.approx(30.56, abs=1e-6) and pos.lon == pytest.approx(131.02, abs=1e-6)
    else:
        assert "ntrip-gga" not in req.headers
    anon = ntrip.client_request(ntrip.parse_url("ntrip://h/M"), version, agent="a")
    assert b"Authorization" not in anon


@pytest.mark.parametrize("version", [1, 2])
def test_source_request_is_what_our_server_parses(version):
    url = ntrip.parse_url("ntrip://3034:pw@127.0.0.1:2101/GEONET3034")
    req = ntrip.parse_request(ntrip.split_head(ntrip.source_request(url, version, agent="t"))[0])
    if version == 1:
        assert (req.method, req.mountpoint, req.source_password) == ("SOURCE", "GEONET3034", "pw")
    else:
        assert (req.method, req.mountpoint, req.user, req.password) == ("POST", "GEONET3034", "3034", "pw")
        assert req.ntrip2 and req.headers["transfer-encoding"] == "chunked"


def test_parse_reply_of_every_caster_answer():
    data = b"\xd3\x00\x13"
    reply, rest = ntrip.parse_reply(ntrip.data_reply(False) + data)  # NTRIP 1.0 ICY
    assert reply.ok and not reply.chunked and rest == data
    assert ntrip.parse_reply(b"ICY 200 OK\r\n\r\n" + data)[1] == data  # casters that add a blank line
    reply, rest = ntrip.parse_reply(ntrip.data_reply(True) + ntrip.chunk(data))
    assert reply.ok and reply.chunked and ntrip.ChunkDecoder().feed(rest) == data
    for v2 in (False, True):
        reply, _ = ntrip.parse_reply(ntrip.sourcetable_reply("STR;A;\r\nENDSOURCETABLE\r\n", v2))
        assert reply.status == 200 and reply.sourcetable and not reply.ok and not reply.refused
    reply, _ = ntrip.parse_reply(ntrip.http_reply(401, ntrip2=True, body="no\r\n"))
    assert reply.status == 401 and reply.refused and not reply.ok
    reply, _ = ntrip.parse_reply(b"ERROR - Bad Password\r\n")  # RTKLIB-style v1 source refusal
    assert reply.refused and not reply.ok
    assert ntrip.parse_reply(b"HTTP/1.1 200 OK\r\nNtrip-Version") is None  # incomplete: read more
    assert ntrip.parse_reply(b"", eof=True)[0].line == ""  # closed without a word
    with pytest.raises(ntrip.ProtocolError):
        ntrip.parse_reply(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 2000)


def test_chunk_decoder_limits_chunk_size():
    dec = ntrip.ChunkDecoder(max_chunk=1024)
    assert dec.feed(ntrip.chunk(b"a" * 1024)[:500]) == b""  # partial chunk waits
    with pytest.raises(ntrip.ProtocolError):
        ntrip.ChunkDecoder(max_chunk=1024).feed(b"%X\r\n" % 1025)


def test_backoff_floor_doubling_cap_and_reset():
    b = ntrip.Backoff(min_s=1.0, max_s=45.0)
    assert b.min_s == ntrip.RECONNECT_MIN_S  # the 10 s floor cannot be configured lower
    assert [b.next_delay() for _ in range(4)] == [10.0, 20.0, 40.0, 45.0]
    assert b.next_delay(ran_s=5.0) == 40.0       # start to start: time already spent counts
    assert b.next_delay(ran_s=61.0) == 0.0       # ran long enough: healthy, reset to the floor
    assert b.gap == 20.0
    b.reset()
    assert b.next_delay() == 10.0


def test_geodesy_round_trip_scalars_and_arrays():
    assert np.allclose(geodetic_to_ecef(0.0, 0.0, 0.0), [6378137.0, 0.0, 0.0], atol=1e-6)
    lat, lon, h = ecef_to_geodetic(*ARP)
    assert isinstance(lat, float) and 35.2 < lat < 35.4 and 139.4 < lon < 139.6
    xyz = np.array([ARP, (6378137.0, 0.0, 0.0)])
    lats, lons, hs = ecef_to_geodetic(xyz[:, 0], xyz[:, 1], xyz[:, 2])
    back = geodetic_to_ecef(lats, lons, hs)
    assert back.shape == (2, 3) and np.abs(back - xyz).max() < 1e-6
    gga = ntrip.parse_gga(ntrip.gga_from_ecef(ARP))
    assert gga.lat == pytest.approx(lat, abs=1e-6) and gga.height == pytest.approx(h, abs=0.1)


# --- names: re.match("...$") accepts a trailing newline; every validator must refuse it -----------

@pytest.mark.parametrize("station", [
    Station(id="A\n", mountpoint="M", ecef=ARP),
    Station(id="A", mountpoint="M\n", ecef=ARP),
])
def test_station_names_with_trailing_newline_refused(tmp_path, station):
    reg = StationRegistry(tmp_path / "s.sqlite")
    with pytest.raises(CorsError):
        reg.add(station, password="p")
    assert reg.list() == []


def test_token_name_with_trailing_newline_refused(tmp_path):
    store = TokenStore(tmp_path / "t.sqlite")
    with pytest.raises(TokenError, match="bad token name"):
        store.create("vehicle", "car\n")
    assert store.list() == []


def test_malformed_header_name_refused():
    with pytest.raises(ntrip.BadRequest, match="malformed header"):
        ntrip.parse_request(b"GET /M HTTP/1.1\r\nUser Agent: x")
    cred = base64.b64encode(b"a:b").decode()
    assert ntrip.parse_request(f"GET /M HTTP/1.1\r\nAuthorization: Basic {cred}".encode()).user == "a"
