"""Does a registered station position agree with the station's own data?

RTKLIB's single-point solution (``pntpos`` via pyrtklib: broadcast ephemerides, Klobuchar
ionosphere, Saastamoinen troposphere) over the first epochs, median per axis. SPP is good to a
few metres, so a registered ARP tens of metres (or kilometres) away is a wrong coordinate, not noise.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import pyrtklib as rtk

from cors.rtcm_encode import SYS_GAL, SYS_GLO, SYS_GPS, SYS_QZS, RinexSource

DEFAULT_TOLERANCE_M = 30.0
SPP_EPOCHS = 30
_IONO_BRDC, _TROP_SAAS = 1, 1  # rtklib.h IONOOPT_BRDC, TROPOPT_SAAS


def spp_position(source: RinexSource, epochs: int = SPP_EPOCHS) -> tuple[float, float, float] | None:
    """Median ECEF of RTKLIB's single-point solutions over the first ``epochs`` epochs, or None
    when no epoch solves (no navigation data, too few satellites)."""
    # pyrtklib exposes RTKLIB's global default options (no copy constructor): set ours, restore after.
    opt = rtk.prcopt_default
    saved = (opt.ionoopt, opt.tropopt, opt.navsys)
    opt.ionoopt, opt.tropopt = _IONO_BRDC, _TROP_SAAS
    opt.navsys = SYS_GPS | SYS_GLO | SYS_GAL | SYS_QZS
    try:
        fixes = _solve(source, epochs, opt)
    finally:
        opt.ionoopt, opt.tropopt, opt.navsys = saved
    if not fixes:
        return None
    return tuple(statistics.median(f[i] for f in fixes) for i in range(3))  # type: ignore[return-value]


def _solve(source: RinexSource, epochs: int, opt) -> list[list[float]]:
    fixes = []
    for start, end in source.epochs[:epochs]:
        n = end - start
        arr = rtk.Arr1Dobsd_t(n)
        for k in range(n):
            arr[k] = source.obs.data[start + k]
        sol, azel, msg = rtk.sol_t(), rtk.Arr1Ddouble(2 * n), rtk.Arr1Dchar(128)
        # ssat must be None: RTKLIB would write MAXSAT entries into it.
        if rtk.pntpos(arr.ptr, n, source.nav, opt, sol, azel, None, msg) and sol.stat:
            fixes.append([float(sol.rr[i]) for i in range(3)])
    return fixes


def position_warning(source: RinexSource, ecef: Sequence[float],
                     tolerance_m: float = DEFAULT_TOLERANCE_M) -> str | None:
    """One warning line when ``ecef`` is more than ``tolerance_m`` from the data's own SPP position
    (or when the data give no position to check against), else None."""
    spp = spp_position(source)
    if spp is None:
        return (f"{source.obs_path}: cannot check the station position: no single-point solution "
                "from the first epochs (give --nav)")
    dist = math.dist(spp, ecef)
    if dist <= tolerance_m:
        return None
    return (f"{source.obs_path}: station position is {dist:.1f} m from the data's own single-point "
            f"position ({spp[0]:.1f}, {spp[1]:.1f}, {spp[2]:.1f}); tolerance {tolerance_m:g} m")
