"""The network RTK mountpoint (VRS): each client's GGA places a virtual station, one per grid cell.

Wiring of ``cors.network.service.NetworkService`` into the caster:
- station frames arrive through the caster's ``frame_listeners`` hook (``StationMount.ingest``);
  the heavy work (network filter, virtual observations, encoding) runs deferred on the loop, never
  inside the ingest path of the station fan-out;
- broadcast ephemerides come from the same streams (1019/1020/1042/1044/1045/1046), decoded into
  one RTKLIB ``nav_t`` the engine uses; the first one also dates the streams (MSM carries time of
  week only), so the network starts at the first ephemeris any of its stations sends;
- every occupied cell is one fan-out feed (``CellFeed``): the bytes of a cell are encoded once and
  written to all its clients, so the cost grows with cells, not clients;
- ``status_sections()`` puts the engine's status under ``"network"`` in the caster's status file
  (``GET /v1/network``), and the Prometheus families join the monitor's collectors.

Station coordinates in the registry are antenna reference points (ARP): a network site is the ARP
with a zero antenna delta, the same point as the marker plus its delta.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyrtklib as rtk

from cors import ntrip
from cors.caster.kinds.station import StationMount
from cors.caster.mountpoints import Mountpoint, kind
from cors.errors import CorsError
from cors.monitor import RtcmFramer
from cors.rtcm_encode import SYS_GLO, satsys

log = logging.getLogger("cors.caster")

# RTCM ephemeris messages: GPS, GLONASS, BeiDou, QZSS, Galileo F/NAV and I/NAV
EPHEMERIS_TYPES = frozenset({1019, 1020, 1042, 1044, 1045, 1046})


@dataclass(frozen=True)
class NetworkConfig:
    """How the caster runs its network mountpoint (``mapsvc serve --network-stations ...``)."""

    name: str = "VRS"
    stations: tuple[str, ...] = ()  # registry station ids; empty: every station of the registry
    cell_m: float = 5000.0          # clients in one cell share one virtual station
    move_m: float = 5000.0          # a client this far from its virtual station gets a new one
    atx: str | None = None          # ANTEX file for the stations' antenna models (by antenna type)
    method: str = "plane"
    integrity: bool = True

    def __post_init__(self):
        from cors.caster.kinds.nearest import NEAREST
        from cors.network.interpolate import METHODS
        from cors.stations import RESERVED_MOUNTPOINTS

        free = sorted(RESERVED_MOUNTPOINTS - {NEAREST})
        if self.name.upper() not in free:
            raise CorsError(f"network mountpoint {self.name!r}: use a reserved name ({', '.join(free)}) "
                            "so no station or other kind can take it")
        if self.cell_m <= 0 or self.move_m <= 0:
            raise CorsError("network cell and move distances must be > 0 m")
        if self.method not in METHODS:
            raise CorsError(f"network interpolation {self.method!r}: one of {', '.join(METHODS)}")
        if self.atx:
            from cors.network.sites import _antenna_file

            # an unreadable ANTEX file fails here, not later inside the running caster
            if _antenna_file(str(self.atx)).n == 0:
                raise CorsError(f"{self.atx}: no antenna models in it (not an ANTEX file?)")


def _msg_type(frame: bytes) -> int:
    return (frame[3] << 4) | (frame[4] >> 4) if len(frame) > 5 else 0


class CellFeed:
    """The fan-out source of one cell's virtual station (what ``Caster.feed`` moves clients to)."""

    # the same fan-out as a station's (backlog limit, chunking, timing): StationMount's methods
    broadcast = StationMount.broadcast
    add_client = StationMount.add_client
    remove_client = StationMount.remove_client
    send_to = StationMount.send_to

    def __init__(self, caster, name: str):
        self.caster, self.name = caster, name
        self.clients: set = set()
        self._chunked = 0
        self.last_arp: bytes | None = None
        self.sent_bytes = 0
        self.fanout_last_s = self.fanout_max_s = 0.0

    def send(self, data: bytes) -> None:
        """One epoch of the cell's RTCM (whole frames): remember its 1006 for clients joining later."""
        for f in RtcmFramer().feed(data):
            if _msg_type(f) == 1006:
                self.last_arp = f
        self.broadcast(data)


@kind("network")
class NetworkMount(Mountpoint):
    needs_gga = True

    def __init__(self, caster, config: NetworkConfig):
        super().__init__(caster, config.name)
        self.config = config
        self.clients: dict = {}  # conn -> last usable GGA
        self.cells: dict[tuple[int, int, int], CellFeed] = {}  # by virtual station key
        self.sites: list | None = None  # network sites (None: fewer than two stations)
        self._site_ids: frozenset = frozenset()
        self._sites_key = None
        self.service = None
        self._nav = None       # rtcm_t whose nav_t gathers the stations' ephemerides
        self._queue: list[tuple[str, list[bytes]]] = []
        self._scheduled = False
        caster.frame_listeners.append(self.on_frames)
        caster.monitor.extra_collectors.append(self._collect)

    @classmethod
    def offer(cls, caster) -> list[Mountpoint]:
        config = getattr(caster, "network_config", None)
        return [cls(caster, config)] if config is not None else []

    # -- the Mountpoint interface --------------------------------------------------------------
    def available(self) -> bool:
        if self.sites is None:
            return False
        up = {m.sid for m in self.caster.mounts.values() if m.up}
        return sum(s.name in up for s in self.sites) >= 2

    def attach(self, conn, gga: ntrip.GGA | None) -> None:
        self.clients[conn] = None
        if gga is not None:
            self.position(conn, gga)

    def detach(self, conn) -> None:
        self.clients.pop(conn, None)
        if self.service is not None:
            self.service.leave(conn)
            self._drop_empty_cells()

    def position(self, conn, gga: ntrip.GGA) -> None:
        if gga.quality == 0 or conn not in self.clients:
            return
        self.clients[conn] = gga
        self._place(conn)

    def client_count(self) -> int:
        return len(self.clients)

    def str_record(self) -> str | None:
        if not self.available():
            return None
        mounts = [m for m in self.caster.mounts.values() if m.sid in {s.name for s in self.sites}]
        monitor, info = self.caster.monitor, self.caster.info
        lat, lon = (float(v) for v in np.mean([m.station.approx_latlon() for m in mounts], axis=0))
        systems = sorted({s for m in mounts for s in
                          (m.station.nav_system or monitor.observed_systems(m.sid)).split("+") if s})
        return ntrip.str_record(
            self.name, "network RTK: virtual reference station at the GGA position", "RTCM 3.3",
            "1006(10),MSM7(1)", 2, "+".join(systems) or "none", info.network, info.country,
            f"{lat:.2f}", f"{lon:.2f}", 1, 1, "mapsvc", "none", "B", "N",
            max(monitor.bitrate(m.sid) for m in mounts), "none")

    def status_sections(self) -> dict:
        if self.service is None:
            return {}
        return {"network": {**self.service.status(), "mountpoint": self.name,
                            "cells": len(self.service.cells())}}

    def _collect(self):
        return self.service.metric_families() if self.service is not None else []

    # -- stations ------------------------------------------------------------------------------
    def stations_changed(self) -> None:
        """(Re)build the network when its stations or their coordinates change."""
        from cors.network.sites import Site, antenna_model

        wanted = set(self.config.stations)
        mounts = sorted((m for m in self.caster.mounts.values() if not wanted or m.sid in wanted),
                        key=lambda m: m.sid)
        key = tuple((m.sid, tuple(m.arp_ecef), m.station.antenna) for m in mounts)
        if key == self._sites_key:
            return
        self._sites_key = key
        self._stop()
        if len(mounts) < 2:
            self.sites, self._site_ids = None, frozenset()
            return
        sites = []
        for m in mounts:
            # the ARP in the service frame (as its 1005/1006 are served): rovers, and so virtual stations, are in it
            site = Site(m.sid, np.array(m.arp_ecef, dtype=float), antenna=m.station.antenna)
            site.pcv = antenna_model(self.config.atx, m.station.antenna, None)
            sites.append(site)
        self.sites, self._site_ids = sites, frozenset(s.name for s in sites)
        log.info("network mountpoint %s over %s", self.name, ", ".join(s.name for s in sites))

    def _stop(self) -> None:
        for conn in list(self.clients):
            if conn.mount is not None:
                self.caster.feed(conn, None)
        self.cells.clear()
        if self.service is not None:
            self.service.close()
            self.service.engine.close()
            self.service = None
        if self._nav is not None:
            rtk.free_rtcm(self._nav)
            self._nav = None
        self._queue.clear()

    def on_frames(self, mount, frames: Sequence[bytes]) -> None:
        """The station frame hook: queue, and process after the station's own fan-out."""
        if mount.sid not in self._site_ids:
            return
        self._queue.append((mount.sid, list(frames)))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._process)

    def _process(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        for sid, frames in queue:
            try:
                self._feed(sid, frames)
            except Exception:  # a bad epoch must not stop the caster or the stations' fan-out
                log.exception("network mountpoint %s: station %s frames failed", self.name, sid)

    def _feed(self, sid: str, frames: list[bytes]) -> None:
        if self.sites is None:
            return
        if self._nav is None:
            self._nav = rtk.rtcm_t()
            rtk.init_rtcm(self._nav)
        first_eph = None
        for f in frames:
            if _msg_type(f) in EPHEMERIS_TYPES:
                for byte in f:
                    if rtk.input_rtcm3(self._nav, byte) == 2 and first_eph is None:
                        first_eph = self._ephemeris_time()
        if self.service is None:
            if first_eph is None:
                return  # no ephemeris yet: the streams cannot be dated nor satellites placed
            self._start(first_eph)
        out = self.service.feed_station(sid, b"".join(frames))
        for cell, data in out.items():
            feed = self.cells.get(cell)
            if feed is not None:
                feed.send(data)

    def _ephemeris_time(self):
        sat = int(self._nav.ephsat)
        if sat <= 0:
            return None
        sys, prn = satsys(sat)
        eph = self._nav.nav.geph[prn - 1] if sys == SYS_GLO else self._nav.nav.eph[sat - 1]
        return eph.toe

    def _start(self, time_hint) -> None:
        from cors.network.engine import NetworkEngine
        from cors.network.service import NetworkService

        engine = NetworkEngine(self.sites, self._nav.nav, integrity=self.config.integrity)
        self.service = NetworkService(engine, time_hint, cell_m=self.config.cell_m,
                                      move_m=self.config.move_m, method=self.config.method)
        for conn in list(self.clients):
            self._place(conn)

    # -- clients -------------------------------------------------------------------------------
    def _place(self, conn) -> None:
        gga = self.clients.get(conn)
        if gga is None or self.service is None or not conn.is_client:
            return
        cell = self.service.place(conn, gga.lat, gga.lon, gga.height)
        feed = self.cells.get(cell)
        if feed is None:
            feed = self.cells[cell] = CellFeed(self.caster, f"{self.name}@{','.join(map(str, cell))}")
        if conn.mount is not feed:
            self.caster.feed(conn, feed)
        self._drop_empty_cells()

    def _drop_empty_cells(self) -> None:
        live = self.service.cells() if self.service is not None else set()
        for cell in [c for c in self.cells if c not in live]:
            del self.cells[cell]
