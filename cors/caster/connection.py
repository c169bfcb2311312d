"""One TCP connection to the caster and its states: request head, then a client or a source."""
from __future__ import annotations

import asyncio
import enum
import logging
import re
import socket
import time
from typing import TYPE_CHECKING

from cors import ntrip

if TYPE_CHECKING:  # pragma: no cover
    from cors.caster.core import Caster

log = logging.getLogger("cors.caster")

MAX_SOURCE_PREAUTH = 1 << 20  # bytes a source may send while its password is being checked
MAX_GGA_LINE = 4096
# an NTRIP 2.0 request whose head cannot be parsed still gets a 2.0-shaped error
_V2_CLAIM = re.compile(rb"(?im)^ntrip-version[ \t]*:[ \t]*ntrip/2")


class ConnState(enum.Enum):
    HEAD = "head"      # reading the request head
    AUTH = "auth"      # a source whose password is being checked off the event loop
    CLIENT = "client"  # a rover receiving a stream
    SOURCE = "source"  # a base station (NTRIP server) sending one
    CLOSED = "closed"


class Connection(asyncio.Protocol):
    """asyncio protocol of one connection; the caster's dispatch decides what it becomes."""

    __slots__ = ("caster", "transport", "peer", "state", "buf", "req", "chunked", "mount", "mountpoint",
                 "token", "position", "ecef", "dechunk", "timer", "connected_at", "fd", "counted", "gga_at",
                 "fed_at", "left", "claims_v2", "proxied")

    def __init__(self, caster: "Caster"):
        self.caster = caster
        self.transport = None
        self.peer = None
        self.state = ConnState.HEAD
        self.buf = bytearray()
        self.req: ntrip.Request | None = None
        self.chunked = False
        self.mount = None        # the feed (a StationMount) whose stream this client gets, or a source's mount
        self.mountpoint = None   # the Mountpoint the client asked for (station, NEAREST, ...)
        self.token = None
        self.position: ntrip.GGA | None = None
        self.ecef = None
        self.dechunk: ntrip.ChunkDecoder | None = None
        self.timer = None
        self.connected_at = time.monotonic()
        self.fd = -1
        self.counted = False     # holds one of its token's streams
        self.gga_at = -1e18      # when its last GGA was taken
        self.fed_at = 0.0        # when it last got a base (NEAREST's dwell time)
        self.left = None         # the base it had before
        self.claims_v2 = False   # the head, even unparseable, says Ntrip-Version: Ntrip/2.0
        self.proxied = False     # None: from a trusted balancer, a PROXY header may still come (cors.caster.proxy)

    @property
    def is_client(self) -> bool:
        return self.state is ConnState.CLIENT

    # -- asyncio callbacks -------------------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        if self.caster.proxy_from and isinstance(self.peer, tuple) and self.peer[0] in self.caster.proxy_from:
            self.proxied = None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.fd = sock.fileno()
        if sock is not None and self.caster.client_sndbuf:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.caster.client_sndbuf)
            except OSError:
                pass
        self.caster.conns.add(self)
        self.timer = asyncio.get_running_loop().call_later(self.caster.header_timeout, self._head_timeout)

    def connection_lost(self, exc):
        self.state = ConnState.CLOSED
        if self.timer is not None:
            self.timer.cancel()
        self.caster.forget(self)

    def data_received(self, data: bytes):
        try:
            state = self.state
            if state is ConnState.CLIENT:
                self.client_data(data)
            elif state is ConnState.SOURCE:
                self._source_data(data)
            elif state is ConnState.HEAD:
                self.buf += data
                if self.proxied is None and not self._take_proxy_header():
                    return
                parts = ntrip.split_head(self.buf)
                self.claims_v2 = _V2_CLAIM.search(self.buf[:ntrip.MAX_HEADER]) is not None
                if parts is None:
                    if len(self.buf) > ntrip.MAX_HEADER:
                        raise ntrip.BadRequest(431, "request head too large")
                    return
                head, rest = parts
                self.buf = bytearray()
                if len(head) > ntrip.MAX_HEADER:
                    raise ntrip.BadRequest(431, "request head too large")
                if self.timer is not None:
                    self.timer.cancel()
                    self.timer = None
                self.req = ntrip.parse_request(head)
                self.caster.dispatch(self, self.req, rest)
            elif state is ConnState.AUTH:
                self.buf += data
                if len(self.buf) > MAX_SOURCE_PREAUTH:
                    self.drop("source sent too much before authentication", reason="bad_request")
        except ntrip.BadRequest as exc:
            self.fail(exc.status, exc.reason)
        except Exception:  # nothing a peer sends may take the caster down
            log.exception("internal error on connection from %s", self.peer)
            self.fail(500, "internal error")

    def _take_proxy_header(self) -> bool:
        """A trusted balancer's PROXY header off the front of the buffer: its client becomes the peer.
        False while the header may still be arriving."""
        from cors.caster.proxy import ProxyHeaderError, may_start_with_header, split_header

        if not may_start_with_header(self.buf):
            self.proxied = False
            return True
        try:
            got = split_header(self.buf)
        except ProxyHeaderError as exc:
            raise ntrip.BadRequest(400, str(exc)) from None
        if got is None:
            return False
        source, n = got
        del self.buf[:n]
        if source is not None:
            self.peer = source
        self.proxied = True
        return True

    def eof_received(self):
        return False  # close our side too

    # -- states ------------------------------------------------------------------------------------
    def client_data(self, data: bytes) -> None:
        """Rovers may write NMEA GGA into the stream (NTRIP 1.0, and 2.0 after the GGA header)."""
        mp = self.mountpoint
        if mp is None or not mp.needs_gga:
            return  # only position-based mountpoints need it; ignore anything else a rover sends
        self.buf += data
        if b"\n" not in self.buf:
            if len(self.buf) > MAX_GGA_LINE:
                self.buf.clear()
            return
        *lines, rest = bytes(self.buf).split(b"\n")
        self.buf = bytearray(rest[-MAX_GGA_LINE:])
        # at most one GGA per gga_min_interval_s, the newest: a GGA flood costs one parse, not one each
        now = time.monotonic()
        if now - self.gga_at < self.caster.gga_min_interval_s:
            return
        for line in reversed(lines):
            gga = ntrip.parse_gga(line)
            if gga is not None:
                self.gga_at = now
                if self.state is ConnState.CLIENT:
                    mp.position(self, gga)
                return

    def _source_data(self, data: bytes) -> None:
        if self.dechunk is not None:
            data = self.dechunk.feed(data)
            if self.dechunk.done:
                self.transport.close()
        if data and self.mount is not None:
            self.mount.ingest(data)

    def _head_timeout(self) -> None:
        self.timer = None
        if self.state is ConnState.HEAD:
            self.fail(408, "no complete request head in %.0f s" % self.caster.header_timeout)

    # -- replies -----------------------------------------------------------------------------------
    def fail(self, status: int, reason: str, headers: dict | None = None) -> None:
        """Answer an error and close (NTRIP 1.0 servers get RTKLIB-style ``ERROR - ...`` lines)."""
        if self.state is ConnState.CLOSED or self.transport is None or self.transport.is_closing():
            return
        self.caster.count_request(status)
        log.info("%s %s: %s", self.peer, status, reason)
        req = self.req
        if req is not None and req.method == "SOURCE":
            msg = {401: "Bad Password", 404: "Bad Mountpoint", 409: "Mount Point Taken or Invalid"}
            self.transport.write(f"ERROR - {msg.get(status, reason)}\r\n".encode())
        else:
            ntrip2 = bool(req.ntrip2) if req is not None else self.claims_v2
            self.transport.write(ntrip.http_reply(status, ntrip2=ntrip2, body=reason + "\r\n", headers=headers))
        self.state = ConnState.CLOSED
        self.transport.close()

    def close(self) -> None:
        """Close after what was written (a sourcetable reply)."""
        self.state = ConnState.CLOSED
        self.transport.close()

    def finish(self, why: str, reason: str = "closed") -> None:
        """End a client's stream cleanly (the last chunk for NTRIP 2.0), after what is queued."""
        if self.state is ConnState.CLOSED or self.transport is None:
            return
        if self.chunked and self.state is ConnState.CLIENT:
            self.transport.write(b"0\r\n\r\n")
        log.info("closing %s on %s: %s", self.peer, self.mount.name if self.mount else "-", why)
        self.caster.dropped[reason] = self.caster.dropped.get(reason, 0) + 1
        self.state = ConnState.CLOSED
        self.caster.forget(self)
        self.transport.close()

    def drop(self, why: str, reason: str = "closed") -> None:
        if self.state is ConnState.CLOSED:
            return
        log.info("dropping %s on %s: %s", self.peer, self.mount.name if self.mount else "-", why)
        self.caster.dropped[reason] = self.caster.dropped.get(reason, 0) + 1
        self.state = ConnState.CLOSED
        self.caster.forget(self)
        self.transport.abort()
