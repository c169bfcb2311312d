"""The station mountpoint: one per registry station, fed by its source, listed while it is up."""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import numpy as np

from cors import ntrip
from cors.caster.mountpoints import Mountpoint, kind
from cors.monitor import RtcmFramer
from cors.stations import Station

if TYPE_CHECKING:  # pragma: no cover
    from cors.caster.connection import Connection
    from cors.caster.core import Caster

ARP_TYPES = (1005, 1006)


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
        self.up = False
        self.last_arp: bytes | None = None
        self.sent_bytes = 0
        self._chunked = 0          # NTRIP 2.0 clients (chunked) among self.clients
        self.fanout_last_s = 0.0   # wall time of the last fan-out loop
        self.fanout_max_s = 0.0
        self.ecef = np.array(station.ecef, dtype=float)

    @property
    def sid(self) -> str:
        return self.station.id

    # -- the Mountpoint interface --------------------------------------------------------------
    def available(self) -> bool:
        return self.up

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
        """Bytes from the source: forward complete CRC-valid frames, then decode them for the monitor."""
        framer = self.framer
        bad_before = framer.bad_frames
        good = framer.feed(data)  # complete frames whose CRC-24Q checks
        monitor = self.caster.monitor
        if framer.bad_frames != bad_before:
            monitor.track(self.sid).bad_frames += framer.bad_frames - bad_before
        if not good:
            return
        payload = good[0] if len(good) == 1 else b"".join(good)
        self.broadcast(payload)
        for listener in self.caster.frame_listeners:
            listener(self, good)
        now = monitor.clock()
        st = monitor.track(self.sid, self.name)
        st.last_frame = now  # health is up to date before the (deferred) decode
        for f in good:
            if len(f) > 5 and ((f[3] << 4) | (f[4] >> 4)) in ARP_TYPES:
                self.last_arp = f
        if not self.up:
            self.up = True
            self.caster.station_up(self)
        asyncio.get_running_loop().call_soon(self._decode, good, now)

    def _decode(self, frames: list[bytes], now: float) -> None:
        observe = self.caster.monitor.observe
        for f in frames:
            observe(self.sid, f, now, crc_checked=True)

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
