"""Epoch-by-epoch RTK with RTKLIB (pyrtklib ``rtkinit``/``rtkpos``): the engine a vehicle runs.

Options come from an RTKLIB ``rnx2rtkp`` conf file (the same file the post-processing reference
uses), so a real-time run and ``rnx2rtkp`` in forward mode see identical settings.
"""
from __future__ import annotations

import statistics
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyrtklib as rtk

from cors.errors import CorsError
from cors.rtcm_encode import gtime_seconds

# Solution status as RTKLIB numbers it (rtklib.h SOLQ_*).
SOLQ_NAME = {0: "none", 1: "fix", 2: "float", 3: "sbas", 4: "dgps", 5: "single", 6: "ppp"}
POSOPT_POS, POSOPT_RTCM = 0, 4
DTTOL = 0.005  # s, RTKLIB's tolerance for "same epoch" (rtklib.h DTTOL)

# Used when no conf is given: kinematic dual-frequency GPS+Galileo RTK, fix-and-hold, 15 deg mask
# (the settings of the shared GEONET/car reference, which suit a CORS within ~20 km).
DEFAULT_CONF = """\
pos1-posmode       =kinematic
pos1-frequency     =l1+2
pos1-soltype       =forward
pos1-elmask        =15
pos1-ionoopt       =brdc
pos1-tropopt       =saas
pos1-sateph        =brdc
pos1-navsys        =9
pos2-armode        =fix-and-hold
pos2-arthres       =3
pos2-arminfix      =10
pos2-maxage        =30
ant2-postype       =rtcm
"""

# RTKLIB keeps its option table in process globals (sysopts): load one conf at a time.
_OPTS_LOCK = threading.Lock()


@dataclass
class Options:
    prcopt: object
    solopt: object
    filopt: object
    source: str

    @property
    def base_from_conf(self) -> bool:
        """The conf fixes the base position (ant2-postype llh/xyz), as rnx2rtkp would use it."""
        return int(self.prcopt.refpos) == POSOPT_POS and any(self.prcopt.rb[i] for i in range(3))


def load_options(conf: str | Path | None = None) -> Options:
    """prcopt/solopt/filopt from an rnx2rtkp conf file (or DEFAULT_CONF)."""
    with _OPTS_LOCK:
        rtk.resetsysopts()
        if conf is None:
            with tempfile.NamedTemporaryFile("w", suffix=".conf") as tmp:
                tmp.write(DEFAULT_CONF)
                tmp.flush()
                rtk.loadopts(tmp.name, rtk.sysopts.ptr)
            source = "default"
        else:
            path = Path(conf)
            if not path.is_file():
                raise CorsError(f"{path}: no such RTKLIB conf file")
            if not rtk.loadopts(str(path), rtk.sysopts.ptr):
                raise CorsError(f"{path}: RTKLIB cannot read this conf file")
            source = str(path)
        popt, sopt, fopt = rtk.prcopt_t(), rtk.solopt_t(), rtk.filopt_t()
        rtk.getsysopts(popt, sopt, fopt)
    if int(popt.mode) < 2:
        raise CorsError(f"{source}: pos1-posmode must be an RTK mode (kinematic, static, ...)")
    return Options(popt, sopt, fopt, source)


@dataclass
class EpochStatus:
    """One solved epoch: GPS time (s), RTKLIB quality, satellites, age of differential, ratio."""

    gpst: float
    stat: int
    ns: int
    age: float
    ratio: float
    ecef: tuple[float, float, float]
    base_gpst: float | None = None

    @property
    def quality(self) -> str:
        return SOLQ_NAME.get(self.stat, str(self.stat))

    def line(self) -> str:
        week, tow = gpst_week_tow(self.gpst)
        if not self.stat:
            return f"{week:4d} {tow:10.3f}  none   (no solution: no or stale corrections?)"
        x, y, z = self.ecef
        return (f"{week:4d} {tow:10.3f}  {self.quality:6s} ns={self.ns:2d} age={self.age:5.1f}s "
                f"ratio={self.ratio:5.1f}  ecef={x:.4f},{y:.4f},{z:.4f}")


GPST0 = 315964800  # 1980-01-06 in RTKLIB's gtime_t seconds


def gpst_week_tow(gpst: float) -> tuple[int, float]:
    d = gpst - GPST0
    week = int(d // 604800)
    return week, d - week * 604800


@dataclass
class Summary:
    epochs: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    ratios: list[float] = field(default_factory=list)
    ages: list[float] = field(default_factory=list)
    first_fix_epoch: int | None = None

    def add(self, st: EpochStatus) -> None:
        if st.stat == 1 and self.first_fix_epoch is None:
            self.first_fix_epoch = self.epochs
        self.epochs += 1
        self.counts[st.quality] = self.counts.get(st.quality, 0) + 1
        if st.stat in (1, 2):
            self.ratios.append(st.ratio)
            self.ages.append(st.age)

    def as_dict(self) -> dict:
        # as RTKLIB's .pos: epochs without a solution are not output, so not in the rate
        solved = self.epochs - self.counts.get("none", 0)
        return {
            "epochs": self.epochs,
            "solved": solved,
            "fix": self.counts.get("fix", 0),
            "float": self.counts.get("float", 0),
            "fix_rate": self.counts.get("fix", 0) / max(solved, 1),
            "counts": dict(self.counts),
            "first_fix_epoch": self.first_fix_epoch,
            "median_ratio": statistics.median(self.ratios) if self.ratios else None,
            "median_age": statistics.median(self.ages) if self.ages else None,
        }

    def line(self) -> str:
        d = self.as_dict()
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        return (f"{d['epochs']} epochs: {parts}; fix rate {100 * d['fix_rate']:.1f} % of {d['solved']} solved"
                + (f", median ratio {d['median_ratio']:.1f}" if d["median_ratio"] else ""))


class RtkEngine:
    """rtk_t of one rover; ``solve`` = one ``rtkpos`` call (rover records first, then base)."""

    def __init__(self, options: Options, nav):
        self.options = options
        self.nav = nav
        self.rtk = rtk.rtk_t()
        rtk.rtkinit(self.rtk, options.prcopt)
        if not options.base_from_conf:
            # rtkpos then keeps rtk.rb as we set it from RTCM 1005/1006 (RTKLIB's rtksvr does so)
            self.rtk.opt.refpos = POSOPT_RTCM
        self.base_known = options.base_from_conf

    def set_base_position(self, ecef: Sequence[float]) -> None:
        if self.options.base_from_conf:
            return
        for i in range(3):
            self.rtk.rb[i] = float(ecef[i])
        for i in range(3, 6):
            self.rtk.rb[i] = 0.0
        self.base_known = True

    def solve(self, rover: Sequence, base: Sequence = ()) -> EpochStatus:
        n_r, n_b = len(rover), len(base) if self.base_known else 0
        arr = rtk.Arr1Dobsd_t(max(n_r + n_b, 1))
        for k, rec in enumerate(rover):
            arr[k] = rec
        for k in range(n_b):
            arr[n_r + k] = base[k]
        rtk.rtkpos(self.rtk, arr.ptr, n_r + n_b, self.nav)
        sol = self.rtk.sol
        return EpochStatus(
            gpst=gtime_seconds(sol.time) if sol.stat else gtime_seconds(rover[0].time),
            stat=int(sol.stat), ns=int(sol.ns), age=float(sol.age), ratio=float(sol.ratio),
            ecef=(float(sol.rr[0]), float(sol.rr[1]), float(sol.rr[2])),
            base_gpst=gtime_seconds(base[0].time) if n_b else None,
        )

    def close(self) -> None:
        rtk.rtkfree(self.rtk)


def rtkpos_pair(state, nav, rover: Sequence, base: Sequence) -> None:
    """One ``rtkpos`` call on an epoch of rover (labelled rcv 1) and base (rcv 2) records."""
    n_r, n_b = len(rover), len(base)
    arr = rtk.Arr1Dobsd_t(n_r + n_b)
    for k, rec in enumerate(rover):
        arr[k] = rec
        arr[k].rcv = 1
    for k, rec in enumerate(base):
        arr[n_r + k] = rec
        arr[n_r + k].rcv = 2
    rtk.rtkpos(state, arr.ptr, n_r + n_b, nav)


def copy_records(src, n: int, rcv: int | None = None) -> list:
    """Own copies of ``n`` obsd_t (RTKLIB reuses its decode buffers); optionally relabel rcv."""
    arr = rtk.Arr1Dobsd_t(max(n, 1))
    out = []
    for k in range(n):
        arr[k] = src[k]
        rec = arr[k]
        if rcv is not None:
            rec.rcv = rcv
        out.append(rec)
    return _Records(arr, out)


class _Records(list):
    """A list of obsd_t views that keeps the owning Arr1Dobsd_t alive."""

    def __init__(self, owner, items: Iterable):
        super().__init__(items)
        self.owner = owner

