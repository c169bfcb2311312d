"""The network engine: baselines over the station network, corrections relative to a hub, and
virtual observations at any position. One instance serves both the caster (real time, fed epoch by
epoch) and ``mapsvc vrs`` (post-processing, fed from RINEX): ``step`` then ``virtual``.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyrtklib as rtk

from cors.errors import CorsError
from cors.network import interpolate
from cors.network.baseline import Baseline, BaselineState, iono_mapf, network_options
from cors.network.integrity import IntegrityMonitor
from cors.network.geometry import SatGeometry, elevation, saastamoinen_zenith
from cors.network.sites import Site, ecef_to_llh, enu_matrix
from cors.network.virtual import VirtualEpoch, virtual_records

MAXSAT = int(rtk.MAXSAT)
COMPONENTS = ("iono", "tropo")
WET_METHOD = "idw"
WET_HEIGHT_MARGIN = 100.0  # m beyond the stations' heights the wet residual is still applied


def network_edges(sites: Sequence[Site]) -> list[tuple[int, int]]:
    """Delaunay edges of the stations (all pairs for three or fewer), shortest first."""
    n = len(sites)
    if n < 2:
        return []
    if n <= 3:
        edges = {(i, j) for i in range(n) for j in range(i + 1, n)}
    else:
        from scipy.spatial import Delaunay  # a well-kept triangulation, not our own

        centre = np.mean([s.ecef for s in sites], axis=0)
        m = enu_matrix(ecef_to_llh(centre))
        en = np.array([(m @ (s.ecef - centre))[:2] for s in sites])
        edges = set()
        try:
            for tri in Delaunay(en).simplices:
                for a, b in ((0, 1), (1, 2), (0, 2)):
                    i, j = sorted((int(tri[a]), int(tri[b])))
                    edges.add((i, j))
        except Exception:  # collinear stations: a chain by distance
            edges = {(i, j) for i in range(n) for j in range(i + 1, n)}
    return sorted(edges, key=lambda e: np.linalg.norm(sites[e[0]].ecef - sites[e[1]].ecef))


def spanning_tree(n: int, edges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Kruskal over edges sorted shortest first."""
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    tree = []
    for i, j in edges:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[ri] = rj
            tree.append((i, j))
    return tree


@dataclass
class SiteEpoch:
    records: list
    geometry: SatGeometry
    el: np.ndarray  # (MAXSAT,) elevation at the station (rad), NaN when not observed
    az: np.ndarray
    llh: np.ndarray


@dataclass
class NetworkEpoch:
    """Corrections of one epoch, per station and satellite (index sat-1), relative to the hub."""

    gpst: float
    sites: dict[str, SiteEpoch] = field(default_factory=dict)
    dispersive: dict[str, np.ndarray] = field(default_factory=dict)  # slant L1 ionosphere (m)
    # non-dispersive: zenith wet-delay residual (m) w.r.t. the standard atmosphere, per satellite index
    # where the station sees the satellite (one value: a zenith quantity, mapped at the virtual station)
    wet: dict[str, np.ndarray] = field(default_factory=dict)
    baselines: dict[str, BaselineState] = field(default_factory=dict)
    closures: dict[str, float] = field(default_factory=dict)  # rms over satellites (m)


class NetworkEngine:
    def __init__(self, sites: Sequence[Site], nav, *, network_conf: str | None = None,
                 integrity: bool = True, resolve: bool = True):
        if len(sites) < 1:
            raise CorsError("a network needs at least one reference station")
        names = [s.name for s in sites]
        if len(set(names)) != len(names):
            raise CorsError(f"station names must be unique: {names}")
        self.sites = list(sites)
        self.by_name = {s.name: s for s in self.sites}
        self.nav = nav
        self._conf = network_conf
        self._resolve = resolve  # network ambiguity resolution (False: float network, an ablation)
        self.edges = network_edges(self.sites)
        self._rebuild()
        self.monitor = IntegrityMonitor(self.sites, self.edges, nav) if integrity and len(sites) > 1 else None
        self.last: NetworkEpoch | None = None

    def _rebuild(self) -> None:
        active = [i for i, s in enumerate(self.sites) if not s.excluded]
        edges = [(i, j) for i, j in self.edges if i in active and j in active]
        self.tree = spanning_tree(len(self.sites), edges)
        # hub: the active station with most tree edges (the centre of the spanning tree)
        degree = {i: 0 for i in active}
        for i, j in self.tree:
            degree[i] += 1
            degree[j] += 1
        self.hub = max(active, key=lambda i: (degree[i], -i)) if active else None
        self.baselines: dict[tuple[int, int], Baseline] = getattr(self, "baselines", {})
        for i, j in edges:
            if (i, j) not in self.baselines:
                popt = network_options(self._conf) if self._conf else network_options()
                self.baselines[(i, j)] = Baseline(self.sites[i], self.sites[j], self.nav, popt,
                                                  resolve=self._resolve)

    def exclude(self, name: str, why: str) -> None:
        site = self.by_name[name]
        if not site.excluded:
            site.excluded = why
            self._rebuild()

    # -- one epoch ----------------------------------------------------------------------------
    def step(self, gpst: float, records: dict[str, list]) -> NetworkEpoch:
        if self.monitor is not None:
            self.monitor.step(gpst, records)
            for name, why in self.monitor.verdict().items():
                if len(self.sites) > 2:
                    self.exclude(name, why)
        ep = NetworkEpoch(gpst)
        for site in self.sites:
            recs = records.get(site.name) or []
            if site.excluded or not recs:
                continue
            geom = SatGeometry.of_records(recs, self.nav)
            _, e, _ = geom.ranges(site.ecef)
            llh = site.llh
            az, el = elevation(e, llh)
            el_all, az_all = np.full(MAXSAT, np.nan), np.full(MAXSAT, np.nan)
            good = geom.ok
            el_all[geom.sats[good] - 1] = el[good]
            az_all[geom.sats[good] - 1] = az[good]
            ep.sites[site.name] = SiteEpoch(recs, geom, el_all, az_all, llh)
        edge_d, edge_w = {}, {}
        for (i, j), bl in self.baselines.items():
            a, b = self.sites[i], self.sites[j]
            if a.excluded or b.excluded or a.name not in ep.sites or b.name not in ep.sites:
                continue
            st = bl.step(gpst, ep.sites[b.name].records, ep.sites[a.name].records)
            if st is None:
                continue
            ep.baselines[bl.name] = st
            sa, sb = ep.sites[a.name], ep.sites[b.name]
            idx = st.sats - 1
            d = np.full(MAXSAT, np.nan)
            d[idx] = st.iono_vert * 0.5 * (iono_mapf(sa.llh[2], sa.el[idx]) + iono_mapf(sb.llh[2], sb.el[idx]))
            # Only the difference of the two zenith wet delays is well determined by a baseline;
            # their common level is not, so it must not enter through the two ends' mapping functions.
            dz = (st.zwd_aux - _zwd_model(sb.llh)) - (st.zwd_master - _zwd_model(sa.llh))
            w = np.full(MAXSAT, dz)
            w[np.isnan(d)] = np.nan
            edge_d[(i, j)], edge_w[(i, j)] = d, w
        self._propagate(ep, edge_d, edge_w)
        self.last = ep
        return ep

    def status(self) -> dict:
        """What the network covers and how well: baselines, closures, leave-one-out, exclusions."""
        ep = self.last
        stale = self.monitor.stale() if self.monitor else {}
        return {
            "gpst": ep.gpst if ep else None,
            "hub": self.sites[self.hub].name if self.hub is not None else None,
            "stations": [{"name": s.name, "ecef": [round(float(v), 4) for v in s.ecef],
                          "excluded": s.excluded or None, "stale": stale.get(s.name)} for s in self.sites],
            "baselines": [{"name": bl.name, "km": round(bl.length_km, 1),
                           "fixed": bool(ep and bl.name in ep.baselines and ep.baselines[bl.name].fixed),
                           "fix_rate": round(bl.stats.fix_rate, 4),
                           "wl_fixed": bool(ep and bl.name in ep.baselines and ep.baselines[bl.name].wl_fixed),
                           "wl_fix_rate": round(bl.stats.wl_fix_rate, 4), "epochs": bl.stats.epochs}
                          for bl in self.baselines.values()],
            "closures_cm": {k: round(100 * v, 2) for k, v in (ep.closures if ep else {}).items()},
            "leave_one_out_cm": {k: round(100 * v, 2) for k, v in (self.leave_one_out(ep).items() if ep else ())},
            "integrity": self.monitor.report() if self.monitor else [],
        }

    def _propagate(self, ep: NetworkEpoch, edge_d, edge_w) -> None:
        """Hub-relative values along the spanning tree; triangle closures from the other edges."""
        if self.hub is None or self.sites[self.hub].name not in ep.sites:
            return
        hub = self.sites[self.hub].name
        ep.dispersive[hub] = np.zeros(MAXSAT)
        ep.wet[hub] = np.zeros(MAXSAT)
        ep.dispersive[hub][np.isnan(ep.sites[hub].el)] = np.nan
        ep.wet[hub][np.isnan(ep.sites[hub].el)] = np.nan
        pending = [e for e in self.tree if e in edge_d]
        progress = True
        while pending and progress:
            progress = False
            for e in list(pending):
                a, b = self.sites[e[0]].name, self.sites[e[1]].name
                if a in ep.dispersive and b not in ep.dispersive:
                    ep.dispersive[b] = ep.dispersive[a] + edge_d[e]
                    ep.wet[b] = ep.wet[a] + edge_w[e]
                elif b in ep.dispersive and a not in ep.dispersive:
                    ep.dispersive[a] = ep.dispersive[b] - edge_d[e]
                    ep.wet[a] = ep.wet[b] - edge_w[e]
                elif a not in ep.dispersive:
                    continue
                pending.remove(e)
                progress = True
        for e, d in edge_d.items():
            if e in self.tree:
                continue
            a, b = self.sites[e[0]].name, self.sites[e[1]].name
            if a in ep.dispersive and b in ep.dispersive:
                c = d - (ep.dispersive[b] - ep.dispersive[a])
                c = c[~np.isnan(c)]
                if len(c) > 1:
                    c = c - np.mean(c)  # per-satellite common offsets are not observable in DD
                    ep.closures[f"{a}-{b}"] = float(np.sqrt(np.mean(c * c)))

    # -- a virtual station --------------------------------------------------------------------
    def master_for(self, ep: NetworkEpoch, position: np.ndarray) -> Site | None:
        cands = [s for s in self.sites if s.name in ep.dispersive]
        if not cands:
            cands = [s for s in self.sites if s.name in ep.sites]
        if not cands:
            return None
        return min(cands, key=lambda s: float(np.linalg.norm(s.ecef - position)))

    def corrections_at(self, ep: NetworkEpoch, master: Site, position: np.ndarray,
                       method: str = "plane") -> tuple[np.ndarray, np.ndarray, str]:
        """Interpolated (dispersive, wet) at ``position`` relative to ``master``, per satellite index."""
        names = [master.name] + [n for n in ep.dispersive if n != master.name]
        if master.name not in ep.dispersive:
            zero = np.zeros(MAXSAT)
            return zero, zero, "none"
        m = enu_matrix(master.llh)
        en = np.array([(m @ (self.by_name[n].ecef - master.ecef))[:2] for n in names])
        at = (m @ (position - master.ecef))[:2]
        d = np.array([ep.dispersive[n] - ep.dispersive[master.name] for n in names])
        w = np.array([ep.wet[n] - ep.wet[master.name] for n in names])
        if len(names) == 1:
            return d[0], w[0], "master"
        _, used = interpolate.weights(method, en, at)
        # the wet residual by inverse distance whatever the method: over 100+ km and hundreds of metres
        # of height it is not planar, and a plane extrapolated outside the network (CatNet: MATA, GARR)
        # predicts it worse than the standard atmosphere alone; inverse distance never extrapolates
        wet = interpolate.interpolate(WET_METHOD, en, w, at)
        # nor in height: the residual of a height model is not carried above or below the stations
        heights = [self.by_name[n].llh[2] for n in names]
        h = ecef_to_llh(position)[2]
        if not min(heights) - WET_HEIGHT_MARGIN <= h <= max(heights) + WET_HEIGHT_MARGIN:
            wet = np.where(np.isnan(wet), np.nan, 0.0)
        return interpolate.interpolate(method, en, d, at), wet, used

    def virtual(self, ep: NetworkEpoch, position: Sequence[float], *, method: str = "plane",
                components: Iterable[str] = COMPONENTS, master: str | None = None) -> VirtualEpoch | None:
        position = np.asarray(position, dtype=float)
        comps = set(components)
        unknown = comps - set(COMPONENTS)
        if unknown:
            raise CorsError(f"components {sorted(unknown)}: choose from {COMPONENTS}")
        msite = self.by_name[master] if master else self.master_for(ep, position)
        if msite is None or msite.name not in ep.sites:
            return None
        disp, wet, used = self.corrections_at(ep, msite, position, method)
        return virtual_records(ep.sites[msite.name], msite, position, self.nav,
                               dispersive=disp if "iono" in comps else None,
                               wet=wet if "tropo" in comps else None, method=used)

    def leave_one_out(self, ep: NetworkEpoch, method: str = "plane") -> dict[str, float]:
        """Per station: rms (m) of its dispersive correction predicted from the other stations."""
        names = list(ep.dispersive)
        if len(names) < 3:
            return {}
        ref = self.by_name[names[0]]
        m = enu_matrix(ref.llh)
        en = np.array([(m @ (self.by_name[n].ecef - ref.ecef))[:2] for n in names])
        vals = np.array([ep.dispersive[n] for n in names])
        out = {}
        for i, n in enumerate(names):
            others = [j for j in range(len(names)) if j != i]
            pred = interpolate.interpolate(method, en[others], vals[others], en[i])
            r = pred - vals[i]
            r = r[~np.isnan(r)]
            if len(r) > 1:
                r = r - r.mean()  # only between-satellite differences matter to a rover
                out[n] = float(np.sqrt(np.mean(r * r)))
        return out

    def close(self) -> None:
        for bl in self.baselines.values():
            bl.close()
        if self.monitor is not None:
            self.monitor.close()


def _zwd_model(llh: np.ndarray) -> float:
    return saastamoinen_zenith(llh, 0.7) - saastamoinen_zenith(llh, 0.0)
