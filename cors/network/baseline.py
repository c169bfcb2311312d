"""Network ambiguity resolution on one baseline between two stations of known coordinates.

RTKLIB does the estimation (pyrtklib ``rtkpos``, mode ``fixed``: both ends held at their known
coordinates). Per satellite it estimates the single-difference slant ionosphere on L1 (state
II(s) = vertical delay, mapped with the mean of both ends' ionospheric mapping functions), a zenith
wet delay per station (IT(0) rover end, IT(1) base end), and the float carrier biases. RTKLIB's own AR
(L1 and L2 jointly, all or nothing) is off: ``ambiguity.WidelaneL1`` fixes widelanes first, then L1
with partial fixing, and the network reads the ionosphere and wet delays from its fixed states.

What the network needs from a baseline is per satellite: the slant L1 ionosphere difference
(aux minus master) and both zenith wet delays, from the fixed solution when RTKLIB validated one.
"""
from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, field

import numpy as np
import pyrtklib as rtk

from cors.network.ambiguity import MIN_DD, FixResult, WidelaneL1
from cors.network.sites import Site
from cors.rtk import rtkpos_pair

# RTKLIB's state layout (rtkpos.c NP/NI/NT/II/IT): dynamics off, ionosphere and ZWD estimated.
NP = 3

NETWORK_CONF = """\
pos1-posmode       =fixed
pos1-frequency     =l1+2
pos1-soltype       =forward
pos1-elmask        =10
pos1-dynamics      =off
pos1-tidecorr      =off
pos1-ionoopt       =est-stec
pos1-tropopt       =est-ztd
pos1-sateph        =brdc
pos1-navsys        =61
pos2-armode        =off
pos2-gloarmode     =off
pos2-arthres       =3
pos2-arlockcnt     =5
pos2-arelmask      =15
pos2-arminfix      =20
pos2-elmaskhold    =15
pos2-aroutcnt      =5
pos2-maxage        =30
pos2-slipthres     =0.05
pos2-rejionno      =5
pos2-niter         =1
stats-eratio1      =100
stats-eratio2      =100
stats-errphase     =0.003
stats-errphaseel   =0.003
stats-stdbias      =30
stats-stdiono      =0.03
stats-stdtrop      =0.3
stats-prnbias      =0.0001
stats-prniono      =0.002
stats-prntrop      =0.0001
"""

_OPTS_LOCK = threading.Lock()


def network_options(conf_text: str = NETWORK_CONF):
    """prcopt_t for network baselines (RTKLIB keeps options in globals: one load at a time)."""
    with _OPTS_LOCK:
        rtk.resetsysopts()
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as tmp:
            tmp.write(conf_text)
            tmp.flush()
            rtk.loadopts(tmp.name, rtk.sysopts.ptr)
        popt, sopt, fopt = rtk.prcopt_t(), rtk.solopt_t(), rtk.filopt_t()
        rtk.getsysopts(popt, sopt, fopt)
    return popt


@dataclass
class BaselineState:
    """One epoch of one baseline (aux = rover end, master = base end)."""

    gpst: float
    fixed: bool  # L1 (hence L2) DD ambiguities fixed for at least 4 satellite pairs
    ratio: float
    sats: np.ndarray  # satellite numbers with an ionosphere state this epoch
    iono_vert: np.ndarray  # L1 ionosphere, aux minus master (m), vertical: slant = x * mean(mapf)
    zwd_aux: float
    zwd_master: float
    nsat: int
    wl_fixed: bool = False  # widelanes fixed for at least 4 satellite pairs
    n_wl: int = 0
    n_l1: int = 0
    iono_fixed: np.ndarray | None = None  # per entry of sats: its L1 DD ambiguity is fixed (or it is the reference)


@dataclass
class BaselineStats:
    epochs: int = 0
    fixed: int = 0
    wl_fixed: int = 0
    last_fixed: bool = False
    ratios: list = field(default_factory=list)

    @property
    def fix_rate(self) -> float:
        return self.fixed / self.epochs if self.epochs else 0.0

    @property
    def wl_fix_rate(self) -> float:
        return self.wl_fixed / self.epochs if self.epochs else 0.0


class Baseline:
    """A causal RTKLIB filter between ``master`` (base end) and ``aux`` (rover end)."""

    def __init__(self, master: Site, aux: Site, nav, popt=None, *, resolve: bool = True):
        self.master, self.aux, self.nav = master, aux, nav
        opt = popt if popt is not None else network_options()
        for i in range(3):
            opt.ru[i] = float(aux.ecef[i])
            opt.rb[i] = float(master.ecef[i])
        opt.refpos = 0  # base position = opt.rb (POSOPT_POS)
        for k, site in enumerate((aux, master)):
            for i in range(3):
                opt.antdel[k, i] = float(site.antdel[i])
            if site.pcv is not None:
                opt.pcvr[k] = site.pcv[0]
        self.rtk = rtk.rtk_t()
        rtk.rtkinit(self.rtk, opt)
        # resolve=False leaves the network float (an ablation, and the reference the tests compare with)
        self.ar = WidelaneL1(self.rtk, nav, ratio=float(opt.thresar[0]) or 3.0,
                             elmask=float(opt.elmaskar) or np.radians(15.0)) if resolve else None
        nf = int(opt.nf)
        self.ni = int(rtk.MAXSAT)
        self.it0 = NP + self.ni
        self.nx = int(self.rtk.nx)
        self.nf = nf
        self.stats = BaselineStats()
        self.name = f"{master.name}-{aux.name}"
        self.last_fix = None

    @property
    def length_km(self) -> float:
        return float(np.linalg.norm(self.aux.ecef - self.master.ecef)) / 1000.0

    def step(self, gpst: float, aux_records, master_records) -> BaselineState | None:
        """One ``rtkpos`` call; None when either end has no data this epoch."""
        n_a, n_m = len(aux_records), len(master_records)
        if not n_a or not n_m:
            return None
        rtkpos_pair(self.rtk, self.nav, aux_records, master_records)
        sol = self.rtk.sol
        fix = self.last_fix = self.ar.step(gpst, aux_records, master_records) if self.ar else FixResult()
        fixed = len(fix.l1) >= MIN_DD
        wl_fixed = len(fix.wl) >= MIN_DD
        x = self.rtk.x

        def state(k):  # the conditionally fixed value when something was fixed, else the float one
            return fix.x.get(k, float(x[k]))

        sats = np.array(sorted({int(r.sat) for r in aux_records} & {int(r.sat) for r in master_records}))
        iono = np.full(len(sats), np.nan)
        for j, sat in enumerate(sats):
            ssat = self.rtk.ssat[sat - 1]
            if not ssat.vsat[0]:
                continue
            xv = state(NP + sat - 1)
            if xv != 0.0:
                iono[j] = xv
        ok = ~np.isnan(iono)
        l1 = set(fix.l1) | (set(fix.refs.values()) if fix.l1 else set())
        st = BaselineState(gpst, fixed, fix.ratio, sats[ok], iono[ok], state(self.it0), state(self.it0 + 1),
                           int(sol.ns), wl_fixed, len(fix.wl), len(fix.l1),
                           np.array([int(s) in l1 for s in sats[ok]], dtype=bool))
        self.stats.wl_fixed += wl_fixed
        self.stats.epochs += 1
        self.stats.fixed += fixed
        self.stats.last_fixed = fixed
        return st

    def close(self) -> None:
        rtk.rtkfree(self.rtk)


def iono_mapf(h: np.ndarray, el: np.ndarray) -> np.ndarray:
    """RTKLIB's single-layer mapping function (ionmapf: 350 km shell over RE_WGS84 + h)."""
    re = 6378137.0
    return 1.0 / np.cos(np.arcsin((re + h) / (re + 350e3) * np.sin(np.pi / 2 - el)))
