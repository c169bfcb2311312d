"""Behind HAProxy every connection comes from the balancer: with ``proxy_from`` the caster takes the client's
address from the balancer's PROXY header, so one client's failed logins do not lock out every other client of
that balancer. A real HAProxy (``send-proxy``) in front of a real caster; clients bind distinct loopback
addresses (127.0.0.2, 127.0.0.3) as distinct hosts would be."""
import socket
from ipaddress import IPv4Address

import pytest

from cors.caster.proxy import ProxyHeaderError, split_header
from tests.gnss.ntrip_helpers import CasterThread, read_head


def _source(port: int, src_ip: str, password: str) -> bytes:
    s = socket.socket()
    s.bind((src_ip, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(f"SOURCE {password} /ST0\r\nSource-Agent: NTRIP pytest\r\n\r\n".encode())
    try:
        return read_head(s)[0]
    finally:
        s.close()


@pytest.mark.parametrize("proxied", [True, False])
def test_failed_logins_lock_out_that_client_not_the_balancer(tmp_path, haproxy_factory, proxied):
    c = CasterThread(tmp_path, proxy_from=("127.0.0.1",) if proxied else (), auth_free_failures=3).start()
    try:
        c.add_station("ST", "ST0", [-2148744.0, 4426641.0, 4044655.0], password="right")
        lb = haproxy_factory({"ntrip": [c.port]}, send_proxy=proxied)
        port = lb.ports["ntrip"]
        replies = [_source(port, "127.0.0.2", "wrong") for _ in range(5)]
        held = b"too many failed logins"
        assert b"Bad Password" in replies[0]
        assert all(held in r for r in replies[3:]), replies  # that address is now held back
        legit = _source(port, "127.0.0.3", "right")
        if proxied:
            assert legit.startswith(b"ICY 200 OK"), legit  # another client of the same balancer gets in
            peers = c.call(lambda: sorted({conn.peer[0] for conn in c.caster.conns if conn.peer}))
            assert "127.0.0.1" not in peers  # the caster sees clients, not the balancer
        else:
            assert held in legit  # without the header every client of the balancer is held back
    finally:
        c.stop()


def test_proxy_header_parsing():
    from proxyprotocol.result import ProxyResultIPv4, ProxyResultLocal
    from proxyprotocol.v2 import ProxyProtocolV2

    assert split_header(b"PROXY TCP4 10.1.2.3 127.0.0.1 5555 2101\r\nGET / HTTP/1.0\r\n") == (("10.1.2.3", 5555), 41)
    assert split_header(b"PROXY TCP4 10.1.2.3 127.0") is None  # incomplete: wait for more
    assert split_header(b"PROXY UNKNOWN\r\n") == (None, 15)
    v2 = ProxyProtocolV2().pack(ProxyResultIPv4((IPv4Address("10.9.8.7"), 4000), (IPv4Address("127.0.0.1"), 2101)))
    assert split_header(v2 + b"GET /") == (("10.9.8.7", 4000), len(v2)) and split_header(v2[:10]) is None
    assert split_header(ProxyProtocolV2().pack(ProxyResultLocal())) == (None, 16)  # a health check
    for bad in (b"PROXY TCP4 x y 1 2\r\n", b"PROXY " + b"9" * 120):
        with pytest.raises(ProxyHeaderError):
            split_header(bad)


def test_a_proxy_header_from_anyone_else_is_not_believed(tmp_path):
    c = CasterThread(tmp_path, proxy_from=("127.0.0.9",)).start()
    try:
        s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
        s.sendall(b"PROXY TCP4 10.1.2.3 127.0.0.1 5555 2101\r\nGET / HTTP/1.0\r\n\r\n")
        head = read_head(s)[0]
        s.close()
        assert b"400" in head  # not a request the caster knows: the claimed address is never taken
    finally:
        c.stop()
