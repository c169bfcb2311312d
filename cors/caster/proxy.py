"""The PROXY protocol (v1 and v2) in front of connections from a trusted balancer (HAProxy ``send-proxy``).

Behind HAProxy every connection comes from the balancer's address: the caster's per-address limits (the
failed-authentication back-off) would then block every client of that balancer for one client's failures. With
``proxy_from`` set, a connection from one of those addresses may start with a PROXY header naming the real
client, which then stands for the connection (limits, logs, status). A connection from any other address is
never read for one: nobody else can claim an address.

Parsing is the ``proxy-protocol`` package's; this only finds where the header ends in the byte stream.
"""
from __future__ import annotations

from proxyprotocol import ProxyProtocolIncompleteError, ProxyProtocolSyntaxError
from proxyprotocol.v1 import ProxyProtocolV1
from proxyprotocol.v2 import ProxyProtocolV2

V1, V2 = ProxyProtocolV1(), ProxyProtocolV2()
V1_MAX = 107  # the longest v1 line (TCP6 with both addresses and ports, CRLF included)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


class ProxyHeaderError(ValueError):
    """A malformed PROXY header from a trusted balancer."""


def may_start_with_header(buf: bytes) -> bool:
    """Whether ``buf`` (the first bytes of a connection) is, or may still become, a PROXY header."""
    n = min(len(buf), 12)
    return buf[:n] == V2_SIGNATURE[:n] or buf[:min(len(buf), 6)] == b"PROXY "[:min(len(buf), 6)]


def split_header(buf: bytes) -> tuple[tuple[str, int] | None, int] | None:
    """(the client's address, or None for a LOCAL/UNKNOWN header such as a health check; the header's length)
    of the PROXY header at the start of ``buf``; None while incomplete. Raises :class:`ProxyHeaderError`."""
    if buf[:12] == V2_SIGNATURE[:len(buf[:12])] and len(buf) < 16:
        return None
    if buf.startswith(V2_SIGNATURE):
        end = 16 + int.from_bytes(buf[14:16], "big")
        if len(buf) < end:
            return None
        parser = V2
    else:
        nl = buf.find(b"\r\n", 0, V1_MAX)
        if nl < 0:
            if len(buf) >= V1_MAX:
                raise ProxyHeaderError("PROXY v1 line too long")
            return None
        end, parser = nl + 2, V1
    try:
        result = parser.unpack(bytes(buf[:end]))
    except (ProxyProtocolSyntaxError, ProxyProtocolIncompleteError, ValueError) as exc:
        raise ProxyHeaderError(f"bad PROXY header: {exc}") from None
    if not result.proxied or not isinstance(result.source, tuple):
        return None, end
    host, port = result.source[:2]
    return (str(host), int(port)), end
