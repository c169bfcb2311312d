"""NEAREST: each client gets the nearest healthy station it may use, chosen from its GGA position.

Distances are ECEF (straight line) to every up station at once (numpy); a client moves to another
base only when that one is nearer by more than the caster's ``nearest_hysteresis_m``, and back to
the base it just left only after ``nearest_min_dwell_s``, so it does not flap between two bases
near the midpoint (nor under a GGA flood). When its base goes down it moves at once.
"""
from __future__ import annotations

import logging

import numpy as np

from cors import ntrip
from cors.caster.mountpoints import Mountpoint, kind
from cors.geodesy import geodetic_to_ecef

log = logging.getLogger("cors.caster")

NEAREST = "NEAREST"


@kind("nearest")
class Nearest(Mountpoint):
    needs_gga = True

    def __init__(self, caster, name: str = NEAREST):
        super().__init__(caster, name)
        self.clients: set = set()
        self._index = None  # (up station mounts, their ECEF as an (n, 3) array)

    @classmethod
    def offer(cls, caster) -> list[Mountpoint]:
        return [cls(caster)]

    def may_use(self, token) -> bool:
        return True  # per-station access is applied when a base is chosen

    def attach(self, conn, gga: ntrip.GGA | None) -> None:
        self.clients.add(conn)
        if gga is not None:
            self.position(conn, gga)

    def detach(self, conn) -> None:
        self.clients.discard(conn)

    def position(self, conn, gga: ntrip.GGA) -> None:
        conn.position = gga
        conn.ecef = geodetic_to_ecef(gga.lat, gga.lon, gga.height)
        self._assign(conn)

    def client_count(self) -> int:
        return len(self.clients)

    def str_record(self) -> str | None:
        up = [m for m in self.caster.mounts.values() if m.up]
        if not up:
            return None
        monitor, info = self.caster.monitor, self.caster.info
        latlon = np.array([m.station.approx_latlon() for m in up])
        lat, lon = (float(v) for v in latlon.mean(axis=0))
        systems = sorted({s for m in up for s in
                          (m.station.nav_system or monitor.observed_systems(m.sid)).split("+") if s})
        return ntrip.str_record(
            self.name, "nearest healthy station by GGA", "RTCM 3.3", "none",
            max(m.station.carrier for m in up), "+".join(systems) or "none", info.network,
            info.country, f"{lat:.2f}", f"{lon:.2f}", 1, 0, "mapsvc", "none", "B", "N",
            max(monitor.bitrate(m.sid) for m in up), "none")

    # -- station events ------------------------------------------------------------------------
    def stations_changed(self) -> None:
        self._index = None

    def station_up(self, mount) -> None:
        self._index = None
        for c in list(self.clients):
            if c.mount is None:
                self._assign(c)

    def station_down(self, mount) -> None:
        self._index = None
        for c in [c for c in mount.clients if c in self.clients]:
            self.caster.feed(c, None)
            self._assign(c)

    # -- selection -----------------------------------------------------------------------------
    def _candidates(self):
        if self._index is None:
            mounts = [m for m in self.caster.mounts.values() if m.up]
            xyz = np.array([m.ecef for m in mounts]).reshape(-1, 3)
            self._index = (mounts, xyz)
        return self._index

    def _assign(self, conn) -> None:
        if conn.ecef is None or not conn.is_client:
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
            if new is conn.left and self.caster.monitor.clock() - conn.fed_at < self.caster.nearest_min_dwell_s:
                return  # no going back to the base just left for a while: no flapping however GGA jumps
            d_cur = dist[mounts.index(cur)]
            if not dist[best] + self.caster.nearest_hysteresis_m < d_cur:
                return
        self.caster.feed(conn, new)
