"""The network RTK mountpoint (VRS): each client's GGA places a virtual station, one per grid cell.

Wiring of the network processor (``cors.network.worker``) into the caster:
- station frames arrive through the caster's ``frame_listeners`` hook (``StationMount.ingest``)
  and go, unblocking, to the processor: a child process that runs the network filters, the virtual
  observations and their encoding (``NetworkService``), so none of that time is taken from the
  caster's loop and its fan-out;
- broadcast ephemerides come from the same streams (1019/1020/1042/1044/1045/1046), decoded in the
  processor into the RTKLIB ``nav_t`` the engine uses; the first one also dates the streams (MSM
  carries time of week only), so the network starts at the first ephemeris any of its stations sends;
- clients are placed here, at once, in the pool of virtual stations (``cors.network.cells``); the
  processor generates for the stations of that pool;
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

from cors import ntrip
from cors.caster.kinds.station import StationMount
from cors.caster.mountpoints import Mountpoint, kind
from cors.errors import CorsError
from cors.monitor import RtcmFramer, message_number

log = logging.getLogger("cors.caster")


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
            if message_number(f) == 1006:
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
        self.service = None  # cors.network.worker.RemoteNetwork while the network has two stations or more
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
        from cors.network.sites import Site

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
        # the ARPs in the service frame (as their 1005/1006 are served): rovers, and so virtual stations, are in it
        self.sites = [Site(m.sid, np.array(m.arp_ecef, dtype=float), antenna=m.station.antenna) for m in mounts]
        self._site_ids = frozenset(s.name for s in self.sites)
        log.info("network mountpoint %s over %s", self.name, ", ".join(s.name for s in self.sites))
        self._start()

    def _stop(self) -> None:
        for conn in list(self.clients):
            if conn.mount is not None:
                self.caster.feed(conn, None)
        self.cells.clear()
        if self.service is not None:
            self.service.close()
            self.service = None

    def close(self) -> None:
        self._stop()

    def _start(self) -> None:
        from cors.network.worker import RemoteNetwork

        self.service = RemoteNetwork(asyncio.get_running_loop(),
                                     [(s.name, s.ecef, s.antenna) for s in self.sites], self.config, self._send)
        for conn in list(self.clients):
            self._place(conn)

    def on_frames(self, mount, frames: Sequence[bytes]) -> None:
        """The station frame hook: to the processor (a pipe write; its backlog is bounded)."""
        if mount.sid in self._site_ids and self.service is not None:
            self.service.feed(mount.sid, list(frames))

    def _send(self, out: dict) -> None:
        """An epoch's RTCM per virtual station, from the processor: to each station's clients."""
        for key, data in out.items():
            feed = self.cells.get(key)
            if feed is not None:
                feed.send(data)

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
