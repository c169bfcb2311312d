"""The station mountpoint: one per registry station, fed by its source, listed while it is up."""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import numpy as np

from cors import ntrip
from cors.arp import is_arp, reencode_arp
from cors.caster.budget import SourceBudget
from cors.caster.mountpoints import Mountpoint, kind
from cors.monitor import RtcmFramer
from cors.stations import Station

if TYPE_CHECKING:  # pragma: no cover
    from cors.caster.connection import Connection
    from cors.caster.core import Caster

@kind("station")
class StationMount(Mountpoint):
    """One station's mountpoint: its source (a pushing NTRIP server or a pull task), its clients,
    its stream state, and the fan-out of its frames."""

    per_station = True

    def __init__(self, caster: "Caster", station: Station):
        super().__init__(caster, station.mountpoint)
        self.station = station
        self.clients: set[Connection] = set()
        self.source: Connection | None = None  # a pushing NTRIP server
        self.task: asyncio.Task | None = None  # a pull / replay source
        self.framer = RtcmFramer()
        self.budget = SourceBudget(caster.ingest_limits)
        self._inbox = bytearray()
        self._drain_handle: asyncio.Handle | None = None
        self._paused = False
        self.up = False
        self.last_arp: bytes | None = None
        self.sent_bytes = 0
        self._chunked = 0          # NTRIP 2.0 clients (chunked) among self.clients
        self.fanout_last_s = 0.0   # wall time of the last fan-out loop
        self.fanout_max_s = 0.0
        self.ecef = np.array(station.ecef, dtype=float)
        self.bus_framer = RtcmFramer()  # frames from the bus arrive whole; it only splits them
        self.pulling = False           # this node runs the station's pull source (on the bus: holds its lease)
        # the ARP as served: in the caster's service frame (1005/1006 from the station are re-encoded)
        self.arp_ecef, self.reframe = caster.service_frame.arp_of(station)

    @property
    def sid(self) -> str:
        return self.station.id

    # -- the Mountpoint interface --------------------------------------------------------------
    def available(self) -> bool:
        """Up, with a source connected, and data within ``stale_after`` s: a new client gets a stream
        now, not a 200 and then silence. On the bus the source may be on another node: fresh frames say so."""
        local_push = self.station.source_spec.kind == "push" and self.caster.bus is None
        if not self.up or (local_push and self.source is None):
            return False
        last = self.caster.monitor.track(self.sid).last_frame
        return last is not None and self.caster.monitor.clock() - last <= self.caster.stale_after

    def attach_source(self, conn: "Connection") -> None:
        self.source = conn
        self._paused = False

    def silenced(self) -> None:
        """The station went down: close its own clients (their receivers reconnect elsewhere);
        NEAREST's clients are moved by NEAREST."""
        for c in list(self.clients):
            if c.mountpoint is self:
                c.finish("station silent for %.0f s" % self.caster.monitor.down_after, reason="station_down")

    def attach(self, conn: "Connection", gga) -> None:
        self.caster.feed(conn, self, announce=False)

    def str_record(self) -> str | None:
        if not self.up:
            return None
        st, monitor = self.station, self.caster.monitor
        lat, lon = st.approx_latlon()
        details = st.messages or monitor.observed_details(st.id)
        nav = st.nav_system or monitor.observed_systems(st.id)
        return ntrip.str_record(
            st.mountpoint, st.name or st.id, st.format, details, st.carrier, nav, self.caster.info.network,
            st.country, f"{lat:.2f}", f"{lon:.2f}", 0, 0, st.receiver or "unknown", "none", "B", "N",
            monitor.bitrate(st.id), st.antenna or "none")

    def client_count(self) -> int:
        return len(self.clients)

    # -- the source side -----------------------------------------------------------------------
    def ingest(self, data: bytes) -> None:
        """Bytes from the source: queued, then framed a slice per loop turn within its budget
        (``budget.py``), so no source can hold the loop that serves the other stations."""
        self._inbox += data
        if len(self._inbox) > self.budget.limits.max_backlog:
            self._pause_source(True)
        if self._drain_handle is None:
            self._drain_handle = asyncio.get_running_loop().call_soon(self._drain)

    @property
    def backlogged(self) -> bool:
        """The source should not be read now (a pull loop waits on ``room()``)."""
        return len(self._inbox) > self.budget.limits.max_backlog

    async def room(self) -> None:
        while self.backlogged:
            await asyncio.sleep(0.05)

    def stop_ingest(self) -> None:
        if self._drain_handle is not None:
            self._drain_handle.cancel()
            self._drain_handle = None
        self._inbox.clear()

    def _pause_source(self, pause: bool) -> None:
        src = self.source
        if pause != self._paused and src is not None and src.transport is not None:
            try:
                (src.transport.pause_reading if pause else src.transport.resume_reading)()
            except (AttributeError, RuntimeError):
                pass
        self._paused = pause

    def _drain(self) -> None:
        self._drain_handle = None
        inbox, limits = self._inbox, self.budget.limits
        piece = bytes(inbox[:limits.slice_bytes])
        del inbox[:limits.slice_bytes]
        framer = self.framer
        bad_before = framer.bad_frames
        began = time.perf_counter()
        good = framer.feed(piece)  # complete frames whose CRC-24Q checks
        wait = self.budget.charge(len(piece), time.perf_counter() - began)
        monitor = self.caster.monitor
        if framer.bad_frames != bad_before:
            monitor.track(self.sid).bad_frames += framer.bad_frames - bad_before
        if good:
            self._forward(good)
        if inbox:
            loop = asyncio.get_running_loop()
            self._drain_handle = loop.call_later(wait, self._drain) if wait else loop.call_soon(self._drain)
        if self._paused and len(inbox) <= limits.max_backlog // 2:
            self._pause_source(False)

    def _forward(self, good: list[bytes]) -> None:
        if self.reframe:
            good = [reencode_arp(f, self.arp_ecef) if is_arp(f) else f for f in good]
        payload = good[0] if len(good) == 1 else b"".join(good)
        bus = self.caster.bus
        if bus is not None:  # the other nodes' clients and the archive get them through the bus
            bus.publish(self.name, payload, time.time())
        self.accept(good, payload)

    def accept(self, good: list[bytes], payload: bytes) -> None:
        """Complete CRC-checked frames of this station, from its source here or another node (bus)."""
        self.broadcast(payload)
        for listener in self.caster.frame_listeners:
            listener(self, good)
        monitor = self.caster.monitor
        now = monitor.clock()
        st = monitor.track(self.sid, self.name)
        st.last_frame = now  # health is up to date before the (deferred) decode
        for f in good:
            if is_arp(f):
                self.last_arp = f
        if not self.up:
            self.up = True
            self.caster.station_up(self)
        asyncio.get_running_loop().call_soon(self._decode, good, now)

    def _decode(self, frames: list[bytes], now: float) -> None:
        observe, budget = self.caster.monitor.observe, self.budget
        for f in frames:
            decode = budget.may_decode()
            began = time.perf_counter()
            observe(self.sid, f, now, crc_checked=True, decode=decode)
            if decode:
                budget.charge_decode(time.perf_counter() - began)
            else:
                budget.undecoded += 1

    # -- the fan-out feed ----------------------------------------------------------------------
    def broadcast(self, data: bytes) -> None:
        clients = self.clients
        if not clients:
            return
        began = time.perf_counter()
        limit = self.caster.max_backlog
        chunked = ntrip.chunk(data) if self._chunked else None
        slow = self.caster.fanout.write(clients, data, chunked, limit)
        self.sent_bytes += len(data) * len(clients)
        for c in slow:
            c.drop("slow client: backlog over %d bytes" % limit, reason="slow")
        self.fanout_last_s = took = time.perf_counter() - began
        if took > self.fanout_max_s:
            self.fanout_max_s = took

    def add_client(self, conn: "Connection") -> None:
        if conn not in self.clients:
            self.clients.add(conn)
            self._chunked += conn.chunked

    def remove_client(self, conn: "Connection") -> None:
        if conn in self.clients:
            self.clients.discard(conn)
            self._chunked -= conn.chunked

    def send_to(self, conn: "Connection", data: bytes) -> None:
        conn.transport.write(ntrip.chunk(data) if conn.chunked else data)
