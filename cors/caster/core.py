"""The caster: life cycle, the station registry, dispatch of requests to mountpoints and sources.

Connections are ``asyncio.Protocol`` objects (no task per client, ``connection.py``); a request
head is dispatched to a registered mountpoint kind (``mountpoints.py``, ``kinds/``) or, for
``SOURCE``/``POST``, to a station's upload; fan-out is ``fanout.py``; pulled sources are
``upstream.py``; sourcetable, status and metrics are ``status.py``; client auth is ``auth.py``.
"""
from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

from cors import ntrip
from cors.arp import ServiceFrame
from cors.caster import status as _status
from cors.caster import upstream
from cors.caster.auth import ClientAuth
from cors.caster.budget import IngestLimits
from cors.caster.connection import Connection, ConnState
from cors.caster.fanout import FanoutPool
from cors.caster.limits import AuthThrottle, StreamCounter, peer_address
from cors.caster.kinds.station import StationMount
from cors.caster.mountpoints import Mountpoint, load_kinds
from cors.errors import CorsError
from cors.monitor import Monitor
from cors.stations import StationRegistry

log = logging.getLogger("cors.caster")


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


class Caster:
    """The NTRIP caster. ``await start()``, then ``await serve_forever()`` or ``await close()``.

    ``mounts``: station mountpoints by name; ``virtual``: the other kinds' mountpoints by upper-case
    name (``NEAREST``, ...). Reconnects to pulled sources follow ``cors.ntrip.Backoff``
    (``reconnect_min_s`` never below 10 s, a promise to upstream casters; up to ``reconnect_max_s``).
    """

    def __init__(self, registry: StationRegistry, tokens, monitor: Monitor | None = None, *,
                 host: str = "127.0.0.1", port: int = 2101, info: CasterInfo | None = None,
                 max_backlog: int = 16384, client_sndbuf: int = 65536, header_timeout: float = 10.0,
                 down_after: float = 10.0, stale_after: float = 3.0, client_roles=("vehicle",),
                 nearest_hysteresis_m: float = 500.0,
                 registry_poll_s: float = 2.0, reconnect_min_s: float = ntrip.RECONNECT_MIN_S,
                 reconnect_max_s: float = ntrip.RECONNECT_MAX_S,
                 rinex_speed: float = 1.0, fanout_threads: int | None = None,
                 status_path=None, status_every_s: float = 2.0, bus=None, node_id: str = "",
                 ingest_limits: IngestLimits | None = None,
                 max_streams_per_token: int = 16, auth_free_failures: int = 5, auth_backoff_s: float = 1.0,
                 auth_backoff_max_s: float = 300.0, gga_min_interval_s: float = 1.0,
                 nearest_min_dwell_s: float = 30.0, network=None, proxy_from=()):
        self.registry = registry
        self.tokens = tokens
        # balancer addresses whose connections may start with a PROXY header naming the client (cors.caster.proxy)
        self.proxy_from = frozenset(proxy_from)
        self.bus = bus          # cors.bus.RedisBus, or None: fan-out within this process only
        self.node_id = str(node_id)
        self.auth = ClientAuth(tokens)
        self.monitor = monitor or Monitor(down_after=down_after)
        self.stale_after = min(stale_after, self.monitor.down_after)  # silence before new clients are refused
        self.host, self._port = host, port
        self.info = info or CasterInfo(host=host)
        self.service_frame = ServiceFrame(self.info.frame or None)
        self.max_backlog = max_backlog
        self.ingest_limits = ingest_limits or IngestLimits()
        self.client_sndbuf = client_sndbuf
        self.header_timeout = header_timeout
        self.client_roles = frozenset(client_roles)
        self.nearest_hysteresis_m = nearest_hysteresis_m
        self.nearest_min_dwell_s = nearest_min_dwell_s  # a client keeps a healthy base this long
        self.gga_min_interval_s = gga_min_interval_s    # GGA lines closer than this are ignored
        self.streams = StreamCounter(max_streams_per_token)
        self.auth_throttle = AuthThrottle(auth_free_failures, auth_backoff_s, auth_backoff_max_s)
        self.registry_poll_s = registry_poll_s
        self.reconnect_min_s = max(ntrip.RECONNECT_MIN_S, reconnect_min_s)
        self.reconnect_max_s = reconnect_max_s
        self.rinex_speed = rinex_speed
        # The HTTP API runs in other processes (gunicorn): it reads station status from this file.
        self.status_path = status_path
        self.status_every_s = status_every_s
        self.fanout = FanoutPool(min(4, os.cpu_count() or 1) if fanout_threads is None else fanout_threads)
        self.mounts: dict[str, StationMount] = {}
        # called as listener(station mount, its complete CRC-valid frames) on every ingest
        self.frame_listeners: list = []
        self.network_config = network  # kinds.network.NetworkConfig, or None: no network mountpoint
        self.virtual: dict[str, Mountpoint] = {}
        for cls in load_kinds().values():
            if not cls.per_station:
                for mp in cls.offer(self):
                    self.virtual[mp.name.upper()] = mp
        self.conns: set[Connection] = set()
        self.dropped: dict[str, int] = {}
        self.requests: dict[int, int] = {}
        self.switches = 0
        self._server = None
        self._tasks: list[asyncio.Task] = []
        self._fingerprint = None
        self.monitor.extra_collectors.append(_status.collector(self))

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
            self._server = await loop.create_server(lambda: Connection(self), self.host, self._port,
                                                    backlog=4096, reuse_address=True)
        except OSError as exc:
            raise CorsError(f"NTRIP caster cannot listen on {self.host}:{self._port}: {exc.strerror}") from None
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        if self.bus is not None:
            self._tasks.append(asyncio.create_task(self.bus.follow(lambda: list(self.mounts), self._from_bus)))
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
        pulls = [m.task for m in self.mounts.values() if m.task]
        if pulls:  # first: on the bus they hand their upstream leases over
            await asyncio.wait(pulls, timeout=5.0)
        if self.bus is not None:
            # a blocking XREAD does not end on cancel (redis-py waits for its reply): closing the
            # connections ends it at once
            try:
                await asyncio.wait_for(self.bus.aclose(), 2.0)
            except (Exception, asyncio.TimeoutError):
                pass
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        self._tasks = []
        if self._server is not None:
            self._server.close()
        for c in list(self.conns):
            if c.transport is not None and not c.transport.is_closing():
                if c.state is ConnState.CLIENT and c.chunked:
                    c.transport.write(b"0\r\n\r\n")
                c.transport.close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 0.5)
            except (asyncio.TimeoutError, Exception):
                pass
            self._server = None
        for mp in self.virtual.values():
            mp.close()
        self.fanout.shutdown()
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
                        self.station_down(m)
                if now - last_poll >= self.registry_poll_s:
                    last_poll = now
                    self._reload_registry()
                    self._drop_revoked()
                if self.status_path is not None and now - last_status >= self.status_every_s:
                    last_status = now
                    self.write_status()
            except Exception:  # keep the caster alive whatever a registry edit did
                log.exception("housekeeping failed")

    def _from_bus(self, entry) -> None:
        """A station's frames taken by another node: fan out to this node's clients."""
        mount = self.mounts.get(entry.mountpoint)
        if mount is None:
            return
        good = mount.bus_framer.feed(entry.data)
        if good:
            mount.accept(good, entry.data)

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
            m = self.mounts[name] = StationMount(self, st)
            self.monitor.track(st.id, name)
            if st.source_spec.kind in upstream.PULLED_KINDS:
                # on the bus, one node pulls the upstream and the others get its frames from the bus
                pull = (upstream.pull(self, m) if self.bus is None else
                        self.bus.while_leader(f"pull:{name}", lambda m=m: upstream.pull(self, m)))
                m.task = asyncio.get_running_loop().create_task(pull)
        self._stations_changed()

    def _remove_mount(self, m: StationMount) -> None:
        self.mounts.pop(m.name, None)
        if m.task:
            m.task.cancel()
        m.stop_ingest()
        for c in list(m.clients):
            c.drop("station removed from the registry")
        if m.source is not None:
            m.source.drop("station removed from the registry")
        self.monitor.forget(m.sid)
        self._stations_changed()

    def _stations_changed(self) -> None:
        for mp in self.virtual.values():
            mp.stations_changed()

    def station_up(self, mount: StationMount) -> None:
        log.info("station %s (%s) up", mount.sid, mount.name)
        for mp in self.virtual.values():
            mp.station_up(mount)

    def station_down(self, mount: StationMount) -> None:
        log.warning("station %s (%s) down: silent for %.0f s", mount.sid, mount.name, self.monitor.down_after)
        for mp in self.virtual.values():
            mp.station_down(mount)
        mount.silenced()

    # -- dispatch ----------------------------------------------------------------------------------
    def count_request(self, status: int) -> None:
        self.requests[status] = self.requests.get(status, 0) + 1

    def mountpoint(self, name: str) -> Mountpoint | None:
        """The mountpoint a client asks for: a station's by exact name, another kind's by any case."""
        return self.mounts.get(name) or self.virtual.get(name.upper())

    def dispatch(self, conn: Connection, req: ntrip.Request, rest: bytes) -> None:
        if req.method == "SOURCE" or req.method == "POST":
            self._source_request(conn, req, rest)
            return
        if not req.mountpoint:
            self.count_request(200)
            conn.transport.write(ntrip.sourcetable_reply(self.sourcetable(req.query if req.ntrip2 else ""),
                                                         req.ntrip2))
            conn.close()
            return
        name = req.mountpoint
        mp = self.mountpoint(name)
        if mp is None or not mp.available():
            if req.ntrip2:
                raise ntrip.BadRequest(404, f"mountpoint {name[:100]!r} not available")
            # NTRIP 1.0: an unknown mountpoint is answered with the sourcetable
            self.count_request(200)
            conn.transport.write(ntrip.sourcetable_reply(self.sourcetable(), False))
            conn.close()
            return
        addr = peer_address(conn)
        if self.auth_throttle.blocked(addr):
            conn.fail(429, "too many failed logins: try later")
            return
        token = self.auth.authenticate(req.user, req.password)
        realm = {"WWW-Authenticate": f'Basic realm="/{mp.name}"'}
        if token is None:
            if req.user is not None:
                self.auth_throttle.failed(addr)
            conn.fail(401, "bad or missing credentials", headers=realm)
            return
        self.auth_throttle.succeeded(addr)
        if token.role not in self.client_roles or not mp.may_use(token):
            if req.ntrip2:
                conn.fail(403, f"token {token.name!r} may not use mountpoint {name[:100]!r}")
            else:
                conn.fail(401, f"token {token.name!r} may not use mountpoint {name[:100]!r}", headers=realm)
            return
        if not self.streams.acquire(token.name):
            conn.fail(429, f"token {token.name!r} has {self.streams.limit} streams open already")
            return
        conn.token, conn.counted = token, True
        conn.chunked = req.ntrip2
        conn.state = ConnState.CLIENT
        conn.mountpoint = mp
        self.count_request(200)
        conn.transport.write(ntrip.data_reply(req.ntrip2))
        gga = ntrip.parse_gga(req.headers.get("ntrip-gga", "").encode("latin-1")) if mp.needs_gga else None
        mp.attach(conn, gga)
        if rest:
            conn.client_data(rest)

    def feed(self, conn: Connection, source, *, announce: bool = True) -> None:
        """Move a client to the stream of ``source`` (a fan-out feed such as a ``StationMount``, or
        None); with ``announce`` it gets the new base's last ARP (1005/1006) at once, not in up to 10 s."""
        old = conn.mount
        if old is not None:
            old.remove_client(conn)
            self.switches += 1
            log.info("client %s moved %s -> %s", conn.peer, old.name, source.name if source else "-")
        conn.mount, conn.left = source, old
        conn.fed_at = self.monitor.clock()
        if source is not None:
            source.add_client(conn)
            if announce and source.last_arp is not None:
                source.send_to(conn, source.last_arp)

    def _drop_revoked(self) -> None:
        if not self.tokens or not self.client_count():
            return
        revoked = self.auth.revoked()
        if not revoked:
            return
        for c in list(self.conns):
            if c.state is ConnState.CLIENT and c.token is not None and c.token.name in revoked:
                c.drop("token revoked", reason="revoked")

    def _source_request(self, conn: Connection, req: ntrip.Request, rest: bytes) -> None:
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
        if self.auth_throttle.blocked(peer_address(conn)):
            conn.fail(429, "too many failed logins: try later")
            return
        conn.state = ConnState.AUTH
        conn.buf = bytearray(rest)
        station = mount.station
        # scrypt takes ~50 ms: keep it off the event loop so the fan-out never waits for it
        fut = asyncio.get_running_loop().run_in_executor(None, station.check_password, password)
        fut.add_done_callback(lambda f: self._source_checked(conn, mount, req, f))

    def _source_checked(self, conn: Connection, mount: StationMount, req: ntrip.Request, fut) -> None:
        if conn.state is not ConnState.AUTH:
            return
        try:
            ok = fut.result()
        except Exception:
            ok = False
        if not ok:
            self.auth_throttle.failed(peer_address(conn))
            conn.fail(401, "bad source password",
                      headers={"WWW-Authenticate": f'Basic realm="/{mount.name}"'} if req.ntrip2 else None)
            return
        if self.mounts.get(mount.name) is not mount:
            conn.fail(404, "mountpoint removed")
            return
        old = mount.source
        if old is not None and old.state is not ConnState.CLOSED:
            if mount.up:
                conn.fail(409, f"mountpoint {mount.name!r} already has a live source")
                return
            old.drop("replaced by a new source connection")
        self.auth_throttle.succeeded(peer_address(conn))
        self.count_request(200)
        mount.attach_source(conn)
        conn.mount = mount
        conn.state = ConnState.SOURCE
        transfer = req.headers.get("transfer-encoding", "").lower()
        conn.dechunk = ntrip.ChunkDecoder() if req.ntrip2 and "chunked" in transfer else None
        conn.transport.write(ntrip.source_ok_reply(req.ntrip2))
        log.info("source %s connected to %s (%s)", conn.peer, mount.name, "v2" if req.ntrip2 else "v1")
        pending, conn.buf = bytes(conn.buf), bytearray()
        if pending:
            conn.data_received(pending)

    def forget(self, conn: Connection) -> None:
        """A connection ended: take it out of its mountpoint, its feed, or its station's source."""
        self.conns.discard(conn)
        if conn.counted:
            conn.counted = False
            self.streams.release(conn.token.name)
        if conn.mountpoint is not None:
            conn.mountpoint.detach(conn)
        m = conn.mount
        if m is not None:
            m.remove_client(conn)
            if getattr(m, "source", None) is conn:
                m.source = None
                log.info("source of %s disconnected", m.name)

    # -- status (status.py) ------------------------------------------------------------------------
    @property
    def nearest_clients(self) -> set:
        """Clients of the NEAREST mountpoint."""
        nearest = self.virtual.get("NEAREST")
        return nearest.clients if nearest is not None else set()

    def client_count(self) -> int:
        return sum(1 for c in self.conns if c.state is ConnState.CLIENT)

    def sourcetable(self, query: str = "") -> str:
        return _status.sourcetable(self, query)

    def station_status(self, station_id: str) -> dict:
        return _status.station_status(self, station_id)

    def status(self) -> list[dict]:
        """JSON-able status of every station (what ``GET /v1/stations`` returns)."""
        return _status.status(self)

    def write_status(self) -> None:
        _status.write_status(self, self.status_path)

    def metrics_text(self) -> bytes:
        return self.monitor.metrics_text()


def new_event_loop_policy():
    """uvloop when installed (about 2x faster socket writes for the fan-out), else asyncio's own."""
    try:
        import uvloop

        return uvloop.EventLoopPolicy()
    except ImportError:
        return asyncio.DefaultEventLoopPolicy()
