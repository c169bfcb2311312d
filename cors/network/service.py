"""The network mountpoint's core, sans-I/O: station RTCM in, one RTCM stream per occupied cell out.

The caster's network mountpoint kind (sourcetable: solution = network, nmea = 1) wraps this:
- ``feed_station(name, bytes)`` with each station's stream; it returns ``{key: bytes}`` for the
  epochs this completed, one RTCM 3 stream (1006 at the virtual position + MSM7) per virtual station;
- ``position(client, gga)`` with each client's GGA; it returns the key of the virtual station whose
  stream the client gets (None until a usable GGA). Clients near each other in one cell share one
  virtual station and its bytes (:mod:`cors.network.cells`);
- ``status()`` for ``GET /v1/network``; ``metric_families()`` for Prometheus.
"""
from __future__ import annotations

from collections.abc import Sequence

from cors.network.cells import VirtualStationPool
from cors.network.engine import COMPONENTS, NetworkEngine
from cors.network.metrics import metric_families
from cors.network.realtime import StreamNetwork
from cors.network.rtcm import VirtualRtcm
from cors.network.sites import llh_to_ecef
from cors.ntrip import parse_gga


class NetworkService:
    def __init__(self, engine: NetworkEngine, time_hint, *, cell_m: float = 5000.0, move_m: float = 5000.0,
                 method: str = "plane", components: Sequence[str] = COMPONENTS):
        self.engine = engine
        self.stream = StreamNetwork(engine, time_hint)
        centre = sum(s.ecef for s in engine.sites) / len(engine.sites)
        self.pool = VirtualStationPool(centre, cell_m=cell_m, move_m=move_m)
        self.encoders: dict[tuple[int, int, int], VirtualRtcm] = {}
        self.method, self.components = method, tuple(components)
        self.epochs = 0

    def position(self, client, gga: bytes) -> tuple[int, int, int] | None:
        fix = parse_gga(gga)
        if fix is None or fix.quality == 0:
            st = self.pool.station_of(client)
            return st.key if st is not None else None
        return self.place(client, fix.lat, fix.lon, fix.height)

    def place(self, client, lat: float, lon: float, height: float) -> tuple[int, int, int]:
        """The key of the virtual station serving ``client`` at a parsed position (degrees, ellipsoidal
        height)."""
        return self.pool.place(client, llh_to_ecef(lat, lon, height)).key

    def cells(self) -> set[tuple[int, int, int]]:
        """The keys of the virtual stations in use (one stream each)."""
        return set(self.pool.stations)

    def leave(self, client) -> None:
        self.pool.leave(client)

    def feed_station(self, name: str, data: bytes) -> dict[tuple[int, int, int], bytes]:
        out: dict[tuple[int, int, int], bytes] = {}
        for ep in self.stream.feed(name, data):
            self.epochs += 1
            for cell, st in list(self.pool.stations.items()):
                ve = self.engine.virtual(ep, st.position, method=self.method, components=self.components)
                if ve is None or not ve.records:
                    continue
                enc = self.encoders.get(cell)
                if enc is None or enc.station_id != st.station_id:
                    if enc is not None:
                        enc.close()
                    enc = self.encoders[cell] = VirtualRtcm(st.position, station_id=st.station_id, check=False)
                out[cell] = out.get(cell, b"") + enc.encode(ve.records)
        for cell in [c for c in self.encoders if c not in self.pool.stations]:
            self.encoders.pop(cell).close()
        return out

    def status(self) -> dict:
        return {**self.engine.status(), "virtual_stations": len(self.pool),
                "clients": len(self.pool.client_station), "epochs": self.epochs}

    def metric_families(self) -> list:
        return metric_families(self.engine.status(), virtual_stations=len(self.pool))

    def close(self) -> None:
        for enc in self.encoders.values():
            enc.close()
        self.stream.close()
