"""Virtual stations shared by grid cell: the cost of a network mountpoint grows with cells, not clients.

Sans-I/O: the caster's network mountpoint tells the pool where each client is (from its GGA) and
asks which virtual station serves it. A client is placed in the cell (``cell_m`` square, local
east/north of the network centre) containing its position; the cell's virtual station sits at the
first position reported in it (a real rover position, so at ground height). A client keeps its
station until it is more than ``move_m`` from it, then moves to the nearest station of its cell within
``move_m``, or to a new one at its position: a cell wider than ``move_m`` can hold several stations, so a
client never keeps (or gets back) a station farther than ``move_m``. Stations no client uses are dropped.
A station's ``key`` (cell east, cell north, serial) names its stream.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cors.network.sites import ecef_to_llh, enu_matrix


@dataclass
class VirtualStation:
    cell: tuple[int, int]
    position: np.ndarray
    station_id: int
    serial: int = 0  # the how-manieth station of its cell (0: the first)
    clients: set = field(default_factory=set)

    @property
    def key(self) -> tuple[int, int, int]:
        return (*self.cell, self.serial)


class VirtualStationPool:
    def __init__(self, centre_ecef, *, cell_m: float = 5000.0, move_m: float = 5000.0,
                 first_id: int = 4000):
        if cell_m <= 0 or move_m <= 0:
            raise ValueError("cell and move distances must be > 0")
        self.centre = np.asarray(centre_ecef, dtype=float)
        self.enu = enu_matrix(ecef_to_llh(self.centre))
        self.cell_m, self.move_m = cell_m, move_m
        self.stations: dict[tuple[int, int, int], VirtualStation] = {}  # by key
        self.client_station: dict[object, VirtualStation] = {}
        self._next_id = first_id

    def cell_of(self, ecef) -> tuple[int, int]:
        e, n, _ = self.enu @ (np.asarray(ecef, dtype=float) - self.centre)
        return int(np.floor(e / self.cell_m)), int(np.floor(n / self.cell_m))

    def place(self, client, ecef) -> VirtualStation:
        """The virtual station serving ``client`` at ``ecef`` (kept, shared, or new)."""
        ecef = np.asarray(ecef, dtype=float)
        st = self.client_station.get(client)
        if st is not None:
            if np.linalg.norm(ecef - st.position) <= self.move_m:
                return st
            self.leave(client)
        cell = self.cell_of(ecef)
        near = [(float(np.linalg.norm(ecef - s.position)), s) for s in self.stations.values()
                if s.cell == cell]
        near = [(d, s) for d, s in near if d <= self.move_m]
        if near:
            st = min(near, key=lambda ds: ds[0])[1]
        else:
            serial = next(k for k in range(len(self.stations) + 1) if (*cell, k) not in self.stations)
            st = VirtualStation(cell, ecef.copy(), self._next_id, serial)
            self.stations[st.key] = st
            self._next_id = self._next_id + 1 if self._next_id < 4095 else 1
        st.clients.add(client)
        self.client_station[client] = st
        return st

    def station_of(self, client) -> VirtualStation | None:
        return self.client_station.get(client)

    def leave(self, client) -> None:
        st = self.client_station.pop(client, None)
        if st is not None:
            st.clients.discard(client)
            if not st.clients:
                self.stations.pop(st.key, None)

    def mirror(self, stations: dict) -> None:
        """Hold exactly these stations, {key: (ECEF, station id)}: the copy of the caster's pool that its
        network processor generates for (:mod:`cors.network.worker`)."""
        self.stations = {k: VirtualStation(k[:2], np.array(pos, dtype=float), sid, k[2])
                         for k, (pos, sid) in stations.items()}
        self.client_station.clear()

    def __len__(self) -> int:
        return len(self.stations)
