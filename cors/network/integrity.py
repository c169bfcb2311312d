"""Integrity of the network: is each station where its coordinate says, and is its data usable?

Coordinates: per network edge a second RTKLIB filter (static, ionosphere-free L1/L2, zenith
troposphere estimated; no ambiguity fixing, so no wrong fix can hide an error) estimates the far
end from the near end's known coordinate. The horizontal discrepancy from the far end's known
coordinate is tested once the filter has converged (sigma below ``CONVERGED``). An error in one
station shows on all of its edges and on no other edge, which names the station: with three or
more stations it is excluded; with two, both are reported (which one moved cannot be told).
Data: a station with no epoch for ``STALE_S`` seconds is reported stale (and skipped while so).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyrtklib as rtk

from cors.network.baseline import network_options
from cors.network.sites import Site, enu_matrix
from cors.rtk import rtkpos_pair

MONITOR_CONF = """\
pos1-posmode       =static
pos1-frequency     =l1+2
pos1-soltype       =forward
pos1-elmask        =10
pos1-ionoopt       =dual-freq
pos1-tropopt       =est-ztd
pos1-sateph        =brdc
pos1-navsys        =61
pos2-armode        =off
pos2-maxage        =30
stats-eratio1      =100
stats-eratio2      =100
stats-errphase     =0.003
stats-errphaseel   =0.003
stats-stdtrop      =0.3
stats-prntrop      =0.0001
"""
THRESHOLD = 0.07  # m horizontal: float ionosphere-free edges of 50-160 km carry ~5 cm after 2 h (CatNet)
CONVERGED = 0.025  # m horizontal sigma before the test is made
STALE_S = 60.0


@dataclass
class EdgeCheck:
    near: str
    far: str
    offset_enu: np.ndarray = field(default_factory=lambda: np.zeros(3))
    sigma_h: float = np.inf
    epochs: int = 0

    @property
    def converged(self) -> bool:
        return self.sigma_h < CONVERGED

    @property
    def failed(self) -> bool:
        return self.converged and float(np.hypot(*self.offset_enu[:2])) > max(THRESHOLD, 4 * self.sigma_h)

    def as_dict(self) -> dict:
        return {"edge": f"{self.near}-{self.far}", "epochs": self.epochs,
                "offset_cm": [round(100 * float(v), 1) for v in self.offset_enu],
                "sigma_h_cm": round(100 * self.sigma_h, 2) if np.isfinite(self.sigma_h) else None,
                "converged": self.converged, "failed": self.failed}


class _EdgeFilter:
    def __init__(self, near: Site, far: Site, nav):
        opt = network_options(MONITOR_CONF)
        for i in range(3):
            opt.rb[i] = float(near.ecef[i])
        opt.refpos = 0
        for k, site in enumerate((far, near)):
            for i in range(3):
                opt.antdel[k, i] = float(site.antdel[i])
            if site.pcv is not None:
                opt.pcvr[k] = site.pcv[0]
        self.rtk = rtk.rtk_t()
        rtk.rtkinit(self.rtk, opt)
        self.nav = nav
        self.far = far
        self.enu = enu_matrix(far.llh)
        self.check = EdgeCheck(near.name, far.name)

    def step(self, far_records, near_records) -> None:
        rtkpos_pair(self.rtk, self.nav, far_records, near_records)
        sol = self.rtk.sol
        if not sol.stat:
            return
        d = np.array([float(sol.rr[i]) for i in range(3)]) - self.far.ecef
        q = np.array([float(sol.qr[i]) for i in range(6)])  # xx yy zz xy yz zx
        cov = np.array([[q[0], q[3], q[5]], [q[3], q[1], q[4]], [q[5], q[4], q[2]]])
        cen = self.enu @ cov @ self.enu.T
        self.check.offset_enu = self.enu @ d
        self.check.sigma_h = float(np.sqrt(max(cen[0, 0] + cen[1, 1], 0.0)))
        self.check.epochs += 1

    def close(self) -> None:
        rtk.rtkfree(self.rtk)


class IntegrityMonitor:
    """Checks every edge of the engine's network; ``verdict`` names stations to exclude."""

    def __init__(self, sites: Sequence[Site], edges: Sequence[tuple[int, int]], nav):
        self.sites = list(sites)
        self.filters = [_EdgeFilter(self.sites[i], self.sites[j], nav) for i, j in edges]
        self.last_seen: dict[str, float] = {}
        self.now = 0.0

    def step(self, gpst: float, records: dict[str, list]) -> None:
        self.now = gpst
        for name, recs in records.items():
            if recs:
                self.last_seen[name] = gpst
        for f in self.filters:
            near, far = records.get(f.check.near) or [], records.get(f.check.far) or []
            if near and far:
                f.step(far, near)

    def stale(self) -> dict[str, str]:
        out = {}
        for s in self.sites:
            seen = self.last_seen.get(s.name)
            if seen is None or self.now - seen > STALE_S:
                out[s.name] = "no data" if seen is None else f"no data for {self.now - seen:.0f} s"
        return out

    def verdict(self) -> dict[str, str]:
        """Station -> reason, for stations whose coordinate disagrees with the network."""
        checks = [f.check for f in self.filters if f.check.converged]
        failed = [c for c in checks if c.failed]
        if not failed:
            return {}
        out = {}
        for s in self.sites:
            mine = [c for c in checks if s.name in (c.near, c.far)]
            others = [c for c in checks if s.name not in (c.near, c.far)]
            if mine and all(c.failed for c in mine) and (not others or not any(c.failed for c in others)):
                worst = max(mine, key=lambda c: np.hypot(*c.offset_enu[:2]))
                off = 100 * float(np.hypot(*worst.offset_enu[:2]))
                out[s.name] = (f"coordinate disagrees with the network: {off:.1f} cm horizontal "
                               f"on {len(mine)} edge(s)")
        if not out and len(self.sites) == 2:
            out = {s.name: "coordinate disagrees with the only other station (which one moved is unknown)"
                   for s in self.sites}
        return out

    def report(self) -> list[dict]:
        return [f.check.as_dict() for f in self.filters]

    def close(self) -> None:
        for f in self.filters:
            f.close()
