"""Virtual stations shared by grid cell: the cost of a network mountpoint grows with cells, not clients.

Sans-I/O: the caster's network mountpoint tells the pool where each client is (from its GGA) and
asks which virtual station serves it. A client is placed in the cell (``cell_m`` square, local
east/north of the network centre) containing its position; the cell's virtual station sits at the
first position reported in it (a real rover position, so at ground height). A client keeps its
station until it is more than ``move_m`` from it, then moves to the station of its new cell.
Stations no client uses are dropped.
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
    clients: set = field(default_factory=set)


class VirtualStationPool:
    def __init__(self, centre_ecef, *, cell_m: float = 5000.0, move_m: float = 5000.0,
                 first_id: int = 4000):
        if cell_m <= 0 or move_m <= 0:
            raise ValueError("cell and move distances must be > 0")
        self.centre = np.asarray(centre_ecef, dtype=float)
        self.enu = enu_matrix(ecef_to_llh(self.centre))
        self.cell_m, self.move_m = cell_m, move_m
        self.stations: dict[tuple[int, int], VirtualStation] = {}
        self.client_cell: dict[object, tuple[int, int]] = {}
        self._next_id = first_id

    def cell_of(self, ecef) -> tuple[int, int]:
        e, n, _ = self.enu @ (np.asarray(ecef, dtype=float) - self.centre)
        return int(np.floor(e / self.cell_m)), int(np.floor(n / self.cell_m))

    def place(self, client, ecef) -> VirtualStation:
        """The virtual station serving ``client`` at ``ecef`` (new, kept or moved)."""
        ecef = np.asarray(ecef, dtype=float)
        cur = self.client_cell.get(client)
        if cur is not None and cur in self.stations:
            st = self.stations[cur]
            if np.linalg.norm(ecef - st.position) <= self.move_m:
                return st
            self.leave(client)
        cell = self.cell_of(ecef)
        st = self.stations.get(cell)
        if st is None:
            st = self.stations[cell] = VirtualStation(cell, ecef.copy(), self._next_id)
            self._next_id = self._next_id + 1 if self._next_id < 4095 else 1
        st.clients.add(client)
        self.client_cell[client] = cell
        return st

    def leave(self, client) -> None:
        cell = self.client_cell.pop(client, None)
        st = self.stations.get(cell) if cell is not None else None
        if st is not None:
            st.clients.discard(client)
            if not st.clients:
                del self.stations[cell]

    def __len__(self) -> int:
        return len(self.stations)
