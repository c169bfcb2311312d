"""asyncio NTRIP caster: NTRIP 1.0 and 2.0 clients and sources, sourcetable, NEAREST, pull sources.

Design for fan-out to thousands of rovers: connections are ``asyncio.Protocol`` objects (no task per
client); a source's bytes are cut into RTCM frames, CRC-checked, and the complete frames of one read
are written to every client of the mountpoint with one non-blocking write each (straight to the
socket from a few threads when the client's transport buffer is empty and the mountpoint has many
clients, else ``transport.write``). A client whose transport backlog exceeds ``max_backlog`` bytes
is dropped on the spot, so a slow client never delays the others. Full pyrtcm decoding for the
monitor runs right after the fan-out.

Station status for the HTTP API: ``Caster.status()`` / ``Caster.station_status(id)`` (JSON-able, no
precise coordinates); Prometheus text: ``Caster.metrics_text()``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from cors import ntrip
from cors.arp import ServiceFrame, is_arp, reencode_arp
from cors.errors import CorsError
from cors.monitor import Monitor, RtcmFramer
from cors.stations import Station, StationRegistry

log = logging.getLogger("cors.caster")

NEAREST = "NEAREST"
RECONNECT_MIN_S = 10.0     # never reconnect to an upstream faster than this (RTK2go bans faster)
RECONNECT_MAX_S = 300.0
ARP_TYPES = (1005, 1006)
PARALLEL_FANOUT_MIN = 256  # below this many clients one thread writes faster than handing out work


@dataclass
class CasterInfo:
    """What the sourcetable's CAS and NET records say about this caster."""
    host: str = "127.0.0.1"
    identifier: str = "mapsvc"
    operator: str = "mapsvc"
    country: str = "XXX"
    network: str = "mapsvc"
    web: str = "none"
    frame: str = ""   # service frame of every 1005/1006 sent (cors.arp.ServiceFrame); "" = default


_TO_ECEF = None


def geodetic_to_ecef(lat: float, lon: float, h: float) -> np.ndarray:
    global _TO_ECEF
    if _TO_ECEF is None:
        from pyproj import Transformer

        _TO_ECEF = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
    return np.array(_TO_ECEF.transform(lon, lat, h))


class Mount:
    """One station's mountpoint: its source, its clients and its stream state."""

    def __init__(self, caster: "Caster", station: Station):
        self.caster = caster
        self.station = station
        self.clients: set[_Conn] = set()
        self.source: _Conn | None = None       # a pushing NTRIP server
        self.task: asyncio.Task | None = None  # a pull / replay source
        self.framer = RtcmFramer()
        self.up = False
        self.last_arp: bytes | None = None
        self.sent_bytes = 0
        self._chunked = 0          # NTRIP 2.0 clients (chunked) among self.clients
        self.fanout_last_s = 0.0   # wall time of the last fan-out loop
        self.fanout_max_s = 0.0
        self.ecef = np.array(station.ecef, dtype=float)
        # the ARP as served: in the caster's service frame (1005/1006 from the station are re-encoded)
        self.arp_ecef, self.reframe = caster.service_frame.arp_of(station)

    @property
    def sid(self) -> str:
        return self.station.id

    @property
    def name(self) -> str:
        return self.station.mountpoint

    def ingest(self, data: bytes) -> None:
        """Bytes from the source: forward complete CRC-valid frames, then decode them for the monitor."""
        framer = self.framer
        bad_before = framer.bad_frames
        good = framer.feed(data)  # complete frames whose CRC-24Q checks
        monitor = self.caster.monitor
        if framer.bad_frames != bad_before:
            monitor.track(self.sid).bad_frames += framer.bad_frames - bad_before
        if not good:
            return
        if self.reframe:
            good = [reencode_arp(f, self.arp_ecef) if is_arp(f) else f for f in good]
        payload = good[0] if len(good) == 1 else b"".join(good)
        self.broadcast(payload)
        now = monitor.clock()
        st = monitor.track(self.sid, self.name)
        st.last_frame = now  # health is up to date before the (deferred) decode
        for f in good:
            if len(f) > 5 and ((f[3] << 4) | (f[4] >> 4)) in ARP_TYPES:
                self.last_arp = f
        if not self.up:
            self.up = True
            self.caster._station_up(self)
        asyncio.get_running_loop().call_soon(self._decode, good, now)

    def _decode(self, frames: list[bytes], now: float) -> None:
        observe = self.caster.monitor.observe
        for f in frames:
            observe(self.sid, f, now, crc_checked=True)

    def broadcast(self, data: bytes) -> None:
        clients = self.clients
        if not clients:
            return
        began = time.perf_counter()
        limit = self.caster.max_backlog
        chunked = ntrip.chunk(data) if self._chunked else None
        pool = self.caster.fanout_pool
        if pool is not None and len(clients) >= PARALLEL_FANOUT_MIN:
            k = pool._max_workers + 1
            items = list(clients)
            futures = [pool.submit(_send_direct, items[i::k], data, chunked, limit) for i in range(1, k)]
            rest, slow = _send_direct(items[0::k], data, chunked, limit)
            for f in futures:
                r, s = f.result()
                rest += r
                slow += s
            for c, tail in rest:
                c.transport.write(tail)
        else:
            slow = []
            for c in clients:
                t = c.transport
                if t.get_write_buffer_size() > limit:
                    slow.append(c)
                else:
                    t.write(chunked if c.chunked else data)
        self.sent_bytes += len(data) * len(clients)
        for c in slow:
            c.drop("slow client: backlog over %d bytes" % limit, reason="slow")
        self.fanout_last_s = took = time.perf_counter() - began
        if took > self.fanout_max_s:
            self.fanout_max_s = took

    @property
    def chunked_clients(self) -> bool:
        return self._chunked > 0

    def add_client(self, conn: "_Conn") -> None:
        if conn not in self.clients:
            self.clients.add(conn)
            self._chunked += conn.chunked

    def remove_client(self, conn: "_Conn") -> None:
        if conn in self.clients:
            self.clients.discard(conn)
            self._chunked -= conn.chunked

    def send_to(self, conn: "_Conn", data: bytes) -> None:
        conn.transport.write(ntrip.chunk(data) if conn.chunked else data)


def _send_direct(part: list, data: bytes, chunked: bytes | None, limit: int):
    """Write one payload straight to the sockets of ``part`` (run by several threads at once).

    Why: on loopback each send() costs ~9 us of kernel time (the receiver's TCP input runs in the
    sender's context) and os.write releases the GIL, so several threads overlap those syscalls.
    The event loop thread is itself inside this call, so no transport changes meanwhile (the
    transport methods used here only read). A client with bytes already queued in its transport
    keeps its order: the payload is queued behind them; whatever the kernel does not take now is
    queued after this call; over ``limit`` queued bytes the client is reported as slow.
    Returns (clients with bytes to queue, slow clients).
    """
    rest, slow = [], []
    write = os.write
    for c in part:
        t = c.transport
        queued = t.get_write_buffer_size()
        payload = chunked if c.chunked else data
        if queued:
            if queued > limit:
                slow.append(c)
            else:
                rest.append((c, payload))
            continue
        if t.is_closing() or c.fd < 0:
            continue
        try:
            n = write(c.fd, payload)
        except BlockingIOError:
            n = 0
        except OSError:
            continue  # the transport sees the error itself
        if n < len(payload):
            rest.append((c, payload[n:]))
    return rest, slow


class _Conn(asyncio.Protocol):
    """One TCP connection: request head first, then a client (rover) or a source (base station)."""

    __slots__ = ("caster", "transport", "peer", "state", "buf", "req", "chunked", "mount", "token",
                 "nearest", "position", "ecef", "dechunk", "timer", "connected_at", "fd")

    def __init__(self, caster: "Caster"):
        self.caster = caster
        self.transport = None
        self.peer = None
        self.state = "head"
        self.buf = bytearray()
        self.req: ntrip.Request | None = None
        self.chunked = False
        self.mount: Mount | None = None
        self.token = None
        self.nearest = False
        self.position: ntrip.GGA | None = None
        self.ecef = None
        self.dechunk: ntrip.ChunkDecoder | None = None
        self.timer = None
        self.connected_at = time.monotonic()
        self.fd = -1

    # -- asyncio callbacks -------------------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
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
        self.state = "closed"
        if self.timer is not None:
            self.timer.cancel()
        self.caster._forget(self)

    def data_received(self, data: bytes):
        try:
            state = self.state
            if state == "client":
                self._client_data(data)
            elif state == "source":
                self._source_data(data)
            elif state == "head":
                self.buf += data
                parts = ntrip.split_head(self.buf)
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
                self.caster._dispatch(self, self.req, rest)
            elif state == "auth":  # source password being checked off the event loop
                self.buf += data
                if len(self.buf) > 1 << 20:
                    self.drop("source sent too much before authentication", reason="bad_request")
        except ntrip.BadRequest as exc:
            self.fail(exc.status, exc.reason)
        except Exception:  # nothing a peer sends may take the caster down
            log.exception("internal error on connection from %s", self.peer)
            self.fail(500, "internal error")

    def eof_received(self):
        return False  # close our side too

    # -- states ------------------------------------------------------------------------------------
    def _client_data(self, data: bytes) -> None:
        """Rovers may write NMEA GGA into the stream (NTRIP 1.0, and 2.0 after the GGA header)."""
        if not self.nearest:
            return  # only NEAREST needs the position; ignore anything else a rover sends
        self.buf += data
        if b"\n" not in self.buf:
            if len(self.buf) > 4096:
                self.buf.clear()
            return
        *lines, rest = bytes(self.buf).split(b"\n")
        self.buf = bytearray(rest[-4096:])
        for line in lines:
            gga = ntrip.parse_gga(line)
            if gga is not None:
                self.caster._client_position(self, gga)

    def _source_data(self, data: bytes) -> None:
        if self.dechunk is not None:
            data = self.dechunk.feed(data)
            if self.dechunk.done:
                self.transport.close()
        if data and self.mount is not None:
            self.mount.ingest(data)

    def _head_timeout(self) -> None:
        self.timer = None
        if self.state == "head":
            self.fail(408, "no complete request head in %.0f s" % self.caster.header_timeout)

    # -- replies -----------------------------------------------------------------------------------
    def fail(self, status: int, reason: str, headers: dict | None = None) -> None:
        """Answer an error and close (NTRIP 1.0 servers get RTKLIB-style ``ERROR - ...`` lines)."""
        if self.state == "closed" or self.transport is None or self.transport.is_closing():
            return
        self.caster.count_request(status)
        log.info("%s %s: %s", self.peer, status, reason)
        req = self.req
        if req is not None and req.method == "SOURCE":
            msg = {401: "Bad Password", 404: "Bad Mountpoint", 409: "Mount Point Taken or Invalid"}
            self.transport.write(f"ERROR - {msg.get(status, reason)}\r\n".encode())
        else:
            ntrip2 = bool(req and req.ntrip2)
            self.transport.write(ntrip.http_reply(status, ntrip2=ntrip2, body=reason + "\r\n", headers=headers))
        self.state = "closed"
        self.transport.close()

    def drop(self, why: str, reason: str = "closed") -> None:
        if self.state == "closed":
            return
        log.info("dropping %s on %s: %s", self.peer, self.mount.name if self.mount else "-", why)
        self.caster.dropped[reason] = self.caster.dropped.get(reason, 0) + 1
        self.state = "closed"
        self.caster._forget(self)
        self.transport.abort()


class Caster:
    """The NTRIP caster. ``await start()``, then ``await serve_forever()`` or ``await close()``."""

    def __init__(self, registry: StationRegistry, tokens, monitor: Monitor | None = None, *,
                 host: str = "127.0.0.1", port: int = 2101, info: CasterInfo | None = None,
                 max_backlog: int = 16384, client_sndbuf: int = 65536, header_timeout: float = 10.0,
                 down_after: float = 10.0, client_roles=("vehicle",), nearest_hysteresis_m: float = 500.0,
                 registry_poll_s: float = 2.0, reconnect_min_s: float = RECONNECT_MIN_S,
                 rinex_speed: float = 1.0, fanout_threads: int | None = None,
                 status_path=None, status_every_s: float = 2.0):
        self.registry = registry
        self.tokens = tokens
        self.monitor = monitor or Monitor(down_after=down_after)
        self.host, self._port = host, port
        self.info = info or CasterInfo(host=host)
        self.service_frame = ServiceFrame(self.info.frame or None)
        self.max_backlog = max_backlog
        self.client_sndbuf = client_sndbuf
        self.header_timeout = header_timeout
        self.client_roles = frozenset(client_roles)
        self.nearest_hysteresis_m = nearest_hysteresis_m
        self.registry_poll_s = registry_poll_s
        # The 10 s floor is a promise to upstream casters; it cannot be configured lower.
        self.reconnect_min_s = max(RECONNECT_MIN_S, reconnect_min_s)
        self.rinex_speed = rinex_speed
        # The HTTP API runs in other processes (gunicorn): it reads station status from this file.
        self.status_path = status_path
        self.status_every_s = status_every_s
        threads = min(4, os.cpu_count() or 1) if fanout_threads is None else fanout_threads
        self.fanout_pool = ThreadPoolExecutor(threads - 1, "fanout") if threads > 1 else None
        self.mounts: dict[str, Mount] = {}
        self.conns: set[_Conn] = set()
        self.nearest_clients: set[_Conn] = set()
        self.dropped: dict[str, int] = {}
        self.requests: dict[int, int] = {}
        self.switches = 0
        self._server = None
        self._tasks: list[asyncio.Task] = []
        self._fingerprint = None
        self._auth_cache: dict[tuple[str, str], tuple[object, float]] = {}
        self._nearest_index = None
        self.monitor.extra_collectors.append(self._metrics)

    # -- life cycle --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server and self._server.sockets:
            return self._server.sockets[0].getsockname()[1]
        return self._port

    async def start(self) -> "Caster":
        self._reload_registry()
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(lambda: _Conn(self), self.host, self._port,
                                                    backlog=4096, reuse_address=True)
        except OSError as exc:
            raise CorsError(f"NTRIP caster cannot listen on {self.host}:{self._port}: {exc.strerror}") from None
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        log.info("NTRIP caster on %s:%d with %d mountpoints", self.host, self.port, len(self.mounts))
        return self

    async def serve_forever(self) -> None:
        try:
            await self._server.serve_forever()
        finally:
            await self.close()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for m in self.mounts.values():
            if m.task:
                m.task.cancel()
        tasks = self._tasks + [m.task for m in self.mounts.values() if m.task]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        if self._server is not None:
            self._server.close()
        for c in list(self.conns):
            if c.transport is not None and not c.transport.is_closing():
                if c.state == "client" and c.chunked:
                    c.transport.write(b"0\r\n\r\n")
                c.transport.close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 0.5)
            except (asyncio.TimeoutError, Exception):
                pass
            self._server = None
        if self.fanout_pool is not None:
            self.fanout_pool.shutdown(wait=False)
        if self.status_path is not None:
            try:
                self.write_status()  # stations now show as down / without clients
            except OSError:
                pass

    async def _housekeeping(self) -> None:
        last_poll = last_status = 0.0
        while True:
            await asyncio.sleep(0.25)
            try:
                now = self.monitor.clock()
                for m in list(self.mounts.values()):
                    if m.up and not self.monitor.is_up(m.sid, now):
                        m.up = False
                        self._station_down(m)
                if now - last_poll >= self.registry_poll_s:
                    last_poll = now
                    self._reload_registry()
                    self._drop_revoked()
                if self.status_path is not None and now - last_status >= self.status_every_s:
                    last_status = now
                    self.write_status()
            except Exception:  # keep the caster alive whatever a registry edit did
                log.exception("housekeeping failed")

    # -- registry ----------------------------------------------------------------------------------
    def _reload_registry(self) -> None:
        fp = self.registry.fingerprint()
        if fp == self._fingerprint:
            return
        self._fingerprint = fp
        stations = {s.mountpoint: s for s in self.registry.list()}
        for name in list(self.mounts):
            m = self.mounts[name]
            st = stations.get(name)
            if st is None or st.id != m.sid or st.source != m.station.source or st.ecef != m.station.ecef \
                    or st.frame_spec != m.station.frame_spec:
                self._remove_mount(m)
        for name, st in stations.items():
            if name in self.mounts:
                self.mounts[name].station = st  # descriptive fields may change in place
                continue
            m = self.mounts[name] = Mount(self, st)
            self.monitor.track(st.id, name)
            kind = st.source_spec.kind
            if kind in ("tcp", "ntrip", "rinex"):
                m.task = asyncio.get_running_loop().create_task(self._pull(m))
        self._nearest_index = None

    def _remove_mount(self, m: Mount) -> None:
        self.mounts.pop(m.name, None)
        if m.task:
            m.task.cancel()
        for c in list(m.clients):
            c.drop("station removed from the registry")
        if m.source is not None:
            m.source.drop("station removed from the registry")
        self.monitor.forget(m.sid)
        self._nearest_index = None

    # -- dispatch ----------------------------------------------------------------------------------
    def count_request(self, status: int) -> None:
        self.requests[status] = self.requests.get(status, 0) + 1

    def _dispatch(self, conn: _Conn, req: ntrip.Request, rest: bytes) -> None:
        if req.method == "SOURCE" or req.method == "POST":
            self._source_request(conn, req, rest)
            return
        if not req.mountpoint:
            self.count_request(200)
            table = self.sourcetable(req.query if req.ntrip2 else "")
            conn.transport.write(ntrip.sourcetable_reply(table, req.ntrip2))
            conn.state = "closed"
            conn.transport.close()
            return
        name = req.mountpoint
        is_nearest = name.upper() == NEAREST
        mount = self.mounts.get(name)
        if not is_nearest and (mount is None or not mount.up):
            if req.ntrip2:
                raise ntrip.BadRequest(404, f"mountpoint {name[:100]!r} not available")
            # NTRIP 1.0: an unknown mountpoint is answered with the sourcetable
            self.count_request(200)
            conn.transport.write(ntrip.sourcetable_reply(self.sourcetable(), False))
            conn.state = "closed"
            conn.transport.close()
            return
        token = self._authenticate(req)
        realm = {"WWW-Authenticate": f'Basic realm="/{NEAREST if is_nearest else name}"'}
        if token is None:
            conn.fail(401, "bad or missing credentials", headers=realm)
            return
        if token.role not in self.client_roles or (not is_nearest and not token.may_access(name)):
            if req.ntrip2:
                conn.fail(403, f"token {token.name!r} may not use mountpoint {name[:100]!r}")
            else:
                conn.fail(401, f"token {token.name!r} may not use mountpoint {name[:100]!r}", headers=realm)
            return
        conn.token = token
        conn.chunked = req.ntrip2
        conn.state = "client"
        self.count_request(200)
        conn.transport.write(ntrip.data_reply(req.ntrip2))
        if is_nearest:
            conn.nearest = True
            self.nearest_clients.add(conn)
            gga = ntrip.parse_gga(req.headers.get("ntrip-gga", "").encode("latin-1"))
            if gga is not None:
                self._client_position(conn, gga)
        else:
            conn.mount = mount
            mount.add_client(conn)
        if rest:
            conn._client_data(rest)

    def _authenticate(self, req: ntrip.Request):
        if req.user is None:
            return None
        key = (req.user, req.password or "")
        now = time.monotonic()
        hit = self._auth_cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        token = self.tokens.verify_basic(req.user, req.password or "")
        if len(self._auth_cache) > 100_000:
            self._auth_cache.clear()
        self._auth_cache[key] = (token, now + 5.0)
        return token

    def _drop_revoked(self) -> None:
        if not self.tokens or not (self.nearest_clients or any(m.clients for m in self.mounts.values())):
            return
        revoked = {t.name for t in self.tokens.list() if t.revoked}
        self._auth_cache = {k: v for k, v in self._auth_cache.items() if k[0] not in revoked}
        if not revoked:
            return
        for c in list(self.conns):
            if c.state == "client" and c.token is not None and c.token.name in revoked:
                c.drop("token revoked", reason="revoked")

    def _source_request(self, conn: _Conn, req: ntrip.Request, rest: bytes) -> None:
        mount = self.mounts.get(req.mountpoint)
        if mount is None or mount.station.source_spec.kind != "push":
            raise ntrip.BadRequest(404, f"mountpoint {req.mountpoint[:100]!r} does not take uploads")
        if req.method == "SOURCE":
            password = req.source_password
        else:
            if not req.ntrip2:
                raise ntrip.BadRequest(400, "POST uploads need 'Ntrip-Version: Ntrip/2.0'")
            if req.user not in (mount.sid, mount.name):
                conn.fail(401, "bad source credentials",
                          headers={"WWW-Authenticate": f'Basic realm="/{mount.name}"'})
                return
            password = req.password or ""
        conn.state = "auth"
        conn.buf = bytearray(rest)
        station = mount.station
        # scrypt takes ~50 ms: keep it off the event loop so the fan-out never waits for it
        fut = asyncio.get_running_loop().run_in_executor(None, station.check_password, password)
        fut.add_done_callback(lambda f: self._source_checked(conn, mount, req, f))

    def _source_checked(self, conn: _Conn, mount: Mount, req: ntrip.Request, fut) -> None:
        if conn.state != "auth":
            return
        try:
            ok = fut.result()
        except Exception:
            ok = False
        if not ok:
            conn.fail(401, "bad source password",
                      headers={"WWW-Authenticate": f'Basic realm="/{mount.name}"'} if req.ntrip2 else None)
            return
        if self.mounts.get(mount.name) is not mount:
            conn.fail(404, "mountpoint removed")
            return
        old = mount.source
        if old is not None and old.state != "closed":
            if mount.up:
                conn.fail(409, f"mountpoint {mount.name!r} already has a live source")
                return
            old.drop("replaced by a new source connection")
        self.count_request(200)
        mount.source = conn
        conn.mount = mount
        conn.state = "source"
        transfer = req.headers.get("transfer-encoding", "").lower()
        conn.dechunk = ntrip.ChunkDecoder() if req.ntrip2 and "chunked" in transfer else None
        conn.transport.write(ntrip.source_ok_reply(req.ntrip2))
        log.info("source %s connected to %s (%s)", conn.peer, mount.name, "v2" if req.ntrip2 else "v1")
        pending, conn.buf = bytes(conn.buf), bytearray()
        if pending:
            conn.data_received(pending)

    def _forget(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        self.nearest_clients.discard(conn)
        m = conn.mount
        if m is not None:
            m.remove_client(conn)
            if m.source is conn:
                m.source = None
                log.info("source of %s disconnected", m.name)

    # -- NEAREST -----------------------------------------------------------------------------------
    def _candidates(self):
        if self._nearest_index is None:
            mounts = [m for m in self.mounts.values() if m.up]
            xyz = np.array([m.ecef for m in mounts]).reshape(-1, 3)
            self._nearest_index = (mounts, xyz)
        return self._nearest_index

    def _client_position(self, conn: _Conn, gga: ntrip.GGA) -> None:
        conn.position = gga
        conn.ecef = geodetic_to_ecef(gga.lat, gga.lon, gga.height)
        self._assign_nearest(conn)

    def _assign_nearest(self, conn: _Conn) -> None:
        if conn.ecef is None or conn.state != "client":
            return
        mounts, xyz = self._candidates()
        if not mounts:
            return
        allowed = np.array([conn.token.may_access(m.name) for m in mounts])
        if not allowed.any():
            return
        dist = np.linalg.norm(xyz - conn.ecef, axis=1)
        dist[~allowed] = np.inf
        best = int(np.argmin(dist))
        new = mounts[best]
        cur = conn.mount
        if cur is new:
            return
        if cur is not None and cur.up and cur in mounts:
            d_cur = dist[mounts.index(cur)]
            if not dist[best] + self.nearest_hysteresis_m < d_cur:
                return
        self._attach(conn, new)

    def _attach(self, conn: _Conn, mount: Mount | None) -> None:
        old = conn.mount
        if old is not None:
            old.remove_client(conn)
            self.switches += 1
            log.info("NEAREST client %s moved %s -> %s", conn.peer, old.name, mount.name if mount else "-")
        conn.mount = mount
        if mount is not None:
            mount.add_client(conn)
            if mount.last_arp is not None:
                mount.send_to(conn, mount.last_arp)  # the new base's ARP at once, not in up to 10 s

    def _station_up(self, mount: Mount) -> None:
        log.info("station %s (%s) up", mount.sid, mount.name)
        self._nearest_index = None
        for c in list(self.nearest_clients):
            if c.mount is None:
                self._assign_nearest(c)

    def _station_down(self, mount: Mount) -> None:
        log.warning("station %s (%s) down: silent for %.0f s", mount.sid, mount.name, self.monitor.down_after)
        self._nearest_index = None
        for c in [c for c in mount.clients if c.nearest]:
            mount.remove_client(c)
            c.mount = None
            self.switches += 1
            self._assign_nearest(c)

    # -- pull sources ------------------------------------------------------------------------------
    async def _pull(self, mount: Mount) -> None:
        src = mount.station.source_spec
        backoff = self.reconnect_min_s
        while True:
            started = time.monotonic()
            try:
                if src.kind == "rinex":
                    await self._pull_rinex(mount, src)
                else:
                    await self._pull_stream(mount, src)
            except asyncio.CancelledError:
                raise
            except CorsError as exc:
                log.error("station %s: %s", mount.sid, exc)
                return
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ntrip.BadRequest) as exc:
                log.warning("station %s: upstream %s failed: %s", mount.sid, src.public(), exc or type(exc).__name__)
            except Exception:
                log.exception("station %s: upstream %s failed", mount.sid, src.public())
            # back-off: attempts at least reconnect_min_s apart (start to start), doubling while they
            # keep failing; a connection that ran for a minute counts as healthy and resets it
            ran = time.monotonic() - started
            if ran > 60:
                backoff = self.reconnect_min_s
            await asyncio.sleep(max(0.0, backoff - ran))
            backoff = min(backoff * 2, RECONNECT_MAX_S)

    async def _pull_stream(self, mount: Mount, src) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(src.host, src.port), 10.0)
        try:
            dechunk, rest = None, b""
            if src.kind == "ntrip":
                dechunk, rest = await self._ntrip_handshake(reader, writer, src)
                if dechunk is not None:
                    rest = dechunk.feed(rest)
                if rest:
                    mount.ingest(rest)
            while True:
                data = await asyncio.wait_for(reader.read(65536), self.monitor.down_after)
                if not data:
                    raise ConnectionResetError("upstream closed the connection")
                if dechunk is not None:
                    data = dechunk.feed(data)
                if data:
                    mount.ingest(data)
        finally:
            writer.close()

    @staticmethod
    async def _ntrip_handshake(reader, writer, src):
        import base64

        cred = base64.b64encode(f"{src.user}:{src.password}".encode()).decode()
        writer.write((f"GET /{src.mountpoint} HTTP/1.1\r\nHost: {src.host}:{src.port}\r\n"
                      f"Ntrip-Version: Ntrip/2.0\r\nUser-Agent: {ntrip.SERVER}\r\n"
                      f"Authorization: Basic {cred}\r\nConnection: close\r\n\r\n").encode())
        await writer.drain()
        head = b""
        while True:
            if head.startswith(b"ICY 200 OK\r\n"):  # NTRIP 1.0: one status line, then data
                status, rest = head[:10], head[12:]
                if rest.startswith(b"\r\n"):
                    rest = rest[2:]
                break
            parts = ntrip.split_head(head)
            if parts is not None:
                status, rest = parts
                break
            part = await asyncio.wait_for(reader.read(4096), 10.0)
            if not part:
                raise ConnectionResetError("upstream closed during the handshake")
            head += part
            if len(head) > ntrip.MAX_HEADER:
                raise ConnectionResetError("upstream reply head too large")
        first = status.split(b"\r\n", 1)[0]
        if not (first.startswith(b"ICY 200") or first.startswith(b"HTTP/1.1 200") or first.startswith(b"HTTP/1.0 200")):
            raise ConnectionRefusedError(f"upstream answered {first[:60].decode('latin-1')!r}")
        dechunk = ntrip.ChunkDecoder() if b"chunked" in status.lower() else None
        return dechunk, rest

    async def _pull_rinex(self, mount: Mount, src) -> None:
        try:
            from cors import replay
        except ImportError as exc:
            raise CorsError(f"rinex: sources are not available ({exc})") from None
        frames_of = getattr(replay, "iter_rtcm_frames", None)
        if frames_of is None:
            raise CorsError("rinex: sources are not available (cors.replay.iter_rtcm_frames missing)")
        station_id = replay.rtcm_station_id(mount.sid) if hasattr(replay, "rtcm_station_id") else 0
        pending: list[bytes] = []
        loop = asyncio.get_running_loop()

        def flush():
            data = b"".join(pending)
            pending.clear()
            mount.ingest(data)

        # the frames of one epoch come back to back: gather them and fan out once per epoch
        async for frame in frames_of(src.obs, src.nav, mount.arp_ecef, speed=self.rinex_speed,
                                     loop=True, station_id=station_id):
            if not pending:
                loop.call_soon(flush)
            pending.append(frame)

    # -- sourcetable and status --------------------------------------------------------------------
    def _str_record(self, m: Mount) -> str:
        st = m.station
        lat, lon = st.approx_latlon()
        details = st.messages or self.monitor.observed_details(st.id)
        nav = st.nav_system or self.monitor.observed_systems(st.id)
        return ntrip.str_record(
            st.mountpoint, st.name or st.id, st.format, details, st.carrier, nav, self.info.network,
            st.country, f"{lat:.2f}", f"{lon:.2f}", 0, 0, st.receiver or "unknown", "none", "B", "N",
            self.monitor.bitrate(st.id), st.antenna or "none")

    def sourcetable(self, query: str = "") -> str:
        up = [m for m in self.mounts.values() if m.up]
        records = [self._str_record(m) for m in sorted(up, key=lambda m: m.name)]
        if up:
            lat = float(np.mean([m.station.approx_latlon()[0] for m in up]))
            lon = float(np.mean([m.station.approx_latlon()[1] for m in up]))
            systems = sorted({s for m in up for s in
                              (m.station.nav_system or self.monitor.observed_systems(m.sid)).split("+") if s})
            records.append(ntrip.str_record(
                NEAREST, "nearest healthy station by GGA", "RTCM 3.3", "none",
                max(m.station.carrier for m in up), "+".join(systems) or "none", self.info.network,
                self.info.country, f"{lat:.2f}", f"{lon:.2f}", 1, 0, "mapsvc", "none", "B", "N",
                max(self.monitor.bitrate(m.sid) for m in up), "none"))
        else:
            lat = lon = 0.0
        frame = f"frame={self.service_frame.spec}"  # the frame of every 1005/1006 served here
        records.append(ntrip.cas_record(self.info.host, self.port, self.info.identifier, self.info.operator,
                                        1, self.info.country, lat, lon, misc=frame))
        records.append(ntrip.net_record(self.info.network, self.info.operator, "B", "N",
                                        self.info.web, self.info.web, self.info.web, misc=frame))
        records = ntrip.filter_sourcetable(records, query)
        return "".join(r + "\r\n" for r in records) + "ENDSOURCETABLE\r\n"

    def station_status(self, station_id: str) -> dict:
        for m in self.mounts.values():
            if m.sid == station_id:
                return self._mount_status(m)
        raise CorsError(f"no station {station_id!r} in the caster")

    def _mount_status(self, m: Mount) -> dict:
        d = m.station.public()
        d.update(self.monitor.station_status(m.sid))
        d["clients"] = len(m.clients)
        d["source_connected"] = m.source is not None or (m.task is not None and not m.task.done())
        d["sent_bytes"] = m.sent_bytes
        d["fanout_last_ms"] = round(m.fanout_last_s * 1e3, 3)
        d["fanout_max_ms"] = round(m.fanout_max_s * 1e3, 3)
        return d

    def status(self) -> list[dict]:
        """JSON-able status of every station (what ``GET /v1/stations`` returns)."""
        return [self._mount_status(m) for m in sorted(self.mounts.values(), key=lambda m: m.sid)]

    def write_status(self) -> None:
        """Atomically write ``status()`` (JSON) and the Prometheus text beside it (``.prom``)."""
        import json
        from pathlib import Path

        from lanelets.files import write_atomic

        path = Path(self.status_path)
        doc = {"generated": time.time(), "caster": {"host": self.info.host, "port": self.port,
                                                    "clients": self.client_count()},
               "service_frame": self.service_frame.spec,
               "stations": self.status()}
        # rewritten every 2 s: atomic for readers, no fsync needed
        write_atomic(path, json.dumps(doc), 0o644, fsync=False)
        write_atomic(path.with_suffix(".prom"), self.metrics_text(), 0o644, fsync=False)

    def client_count(self) -> int:
        return sum(len(m.clients) for m in self.mounts.values()) + sum(
            1 for c in self.nearest_clients if c.mount is None)

    def metrics_text(self) -> bytes:
        return self.monitor.metrics_text()

    def _metrics(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        clients = GaugeMetricFamily("ntrip_clients", "Connected NTRIP clients", labels=["mountpoint"])
        sent = CounterMetricFamily("ntrip_sent_bytes", "Bytes sent to clients", labels=["mountpoint"])
        for m in self.mounts.values():
            clients.add_metric([m.name], len(m.clients))
            sent.add_metric([m.name], m.sent_bytes)
        clients.add_metric([NEAREST], len(self.nearest_clients))
        dropped = CounterMetricFamily("ntrip_clients_dropped", "Clients dropped", labels=["reason"])
        for reason, n in self.dropped.items():
            dropped.add_metric([reason], n)
        reqs = CounterMetricFamily("ntrip_requests", "Answered requests by status", labels=["status"])
        for code, n in self.requests.items():
            reqs.add_metric([str(code)], n)
        switches = CounterMetricFamily("ntrip_nearest_switches", "NEAREST base changes")
        switches.add_metric([], self.switches)
        return [clients, sent, dropped, reqs, switches]



def read_status(path) -> dict:
    """The caster's last status document (for the HTTP API in another process); {} if none yet.

    ``{"generated": unix time, "caster": {...}, "stations": [station status, ...]}``; a station's
    ``up`` is only as fresh as ``generated`` (written every 2 s by a running caster).
    """
    import json
    from pathlib import Path

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


async def run_caster(registry: StationRegistry, tokens, *, ready=None, **kwargs) -> None:
    """Run a caster until cancelled (``mapsvc serve``); ``ready(caster)`` is called once listening."""
    caster = Caster(registry, tokens, **kwargs)
    await caster.start()
    if ready is not None:
        ready(caster)
    await caster.serve_forever()


def new_event_loop_policy():
    """uvloop when installed (about 2x faster socket writes for the fan-out), else asyncio's own."""
    try:
        import uvloop

        return uvloop.EventLoopPolicy()
    except ImportError:
        return asyncio.DefaultEventLoopPolicy()
