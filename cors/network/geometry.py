"""Satellite geometry of one epoch, vectorised over satellites (numpy) on RTKLIB's broadcast orbits.

RTKLIB (``satposs``) gives satellite position, velocity and clock at the transmit time seen by one
receiver; ranges to other receivers take their own light time (the satellite moves up to ~0.1 m
while the signal crosses a 50 km baseline), Sagnac included, as RTKLIB's ``geodist`` does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyrtklib as rtk

CLIGHT = 299792458.0
OMGE = 7.2921151467e-5  # rad/s, WGS 84 Earth rotation (rtklib.h OMGE)


@dataclass
class SatGeometry:
    sats: np.ndarray  # satellite numbers
    rs: np.ndarray  # (n, 3) ECEF at transmit time for the reference receiver
    vs: np.ndarray  # (n, 3) velocity
    dts: np.ndarray  # (n,) clock bias (s)
    ddts: np.ndarray  # (n,) clock drift (s/s)
    ok: np.ndarray  # (n,) bool: healthy, orbit known

    @classmethod
    def of_records(cls, records, nav) -> "SatGeometry":
        n = len(records)
        arr = rtk.Arr1Dobsd_t(max(n, 1))
        for k, rec in enumerate(records):
            arr[k] = rec
        rs, dts = rtk.Arr1Ddouble(6 * n), rtk.Arr1Ddouble(2 * n)
        var, svh = rtk.Arr1Ddouble(n), rtk.Arr1Dint(n)
        rtk.satposs(records[0].time, arr.ptr, n, nav, 0, rs, dts, var, svh)
        rsv = np.array([rs[i] for i in range(6 * n)]).reshape(n, 6)
        dt = np.array([dts[i] for i in range(2 * n)]).reshape(n, 2)
        ok = (np.array([svh[i] for i in range(n)]) == 0) & (np.linalg.norm(rsv[:, :3], axis=1) > 1e6)
        return cls(np.array([int(r.sat) for r in records]), rsv[:, :3], rsv[:, 3:], dt[:, 0], dt[:, 1], ok)

    def ranges(self, rr: np.ndarray, ref_range: np.ndarray | None = None):
        """Geometric range (m, with Sagnac) and unit vectors from receiver ``rr``.

        ``ref_range``: ranges of the receiver the orbits were computed for; the satellite is
        moved back by the extra light time, and the returned clock change is (dts' - dts) (s).
        """
        rs, dclk = self.rs, np.zeros(len(self.sats))
        if ref_range is not None:
            approx = np.linalg.norm(rs - rr, axis=1)
            dtau = (approx - ref_range) / CLIGHT
            rs = rs - self.vs * dtau[:, None]
            dclk = -self.ddts * dtau
        d = rs - rr
        r = np.linalg.norm(d, axis=1)
        e = d / r[:, None]
        r = r + OMGE * (rs[:, 0] * rr[1] - rs[:, 1] * rr[0]) / CLIGHT
        return r, e, dclk


def elevation(e: np.ndarray, llh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation (rad) of unit vectors ``e`` (n, 3) seen from (lat, lon)."""
    from cors.network.sites import enu_matrix

    enu = e @ enu_matrix(llh).T
    el = np.arcsin(np.clip(enu[:, 2], -1, 1))
    az = np.arctan2(enu[:, 0], enu[:, 1]) % (2 * np.pi)
    return az, el


def saastamoinen_zenith(llh: np.ndarray, humidity: float) -> float:
    """Zenith delay (m) of the Saastamoinen model in standard atmosphere, as RTKLIB's tropmodel.

    Written out (not a call of ``tropmodel``) so it can be split into its hydrostatic
    (humidity 0) and wet parts and evaluated at any height.
    """
    h = max(float(llh[2]), 0.0)
    if h > 1e4:
        return 0.0
    pres = 1013.25 * (1.0 - 2.2557e-5 * h) ** 5.2568
    temp = 15.0 - 6.5e-3 * h + 273.16
    e = 6.108 * humidity * np.exp((17.15 * temp - 4684.0) / (temp - 38.45))
    hyd = 0.0022768 * pres / (1.0 - 0.00266 * np.cos(2.0 * llh[0]) - 0.00028 * h / 1e3)
    wet = 0.002277 * (1255.0 / temp + 0.05) * e
    return hyd + wet


def mapping(t, llh: np.ndarray, az: np.ndarray, el: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Niell hydrostatic and wet mapping functions (RTKLIB ``tropmapf``), per satellite."""
    pos, azel, mw = rtk.Arr1Ddouble(3), rtk.Arr1Ddouble(2), rtk.Arr1Ddouble(1)
    for i in range(3):
        pos[i] = float(llh[i])
    mh = np.zeros(len(el))
    mwv = np.zeros(len(el))
    for k in range(len(el)):
        if el[k] <= 0:
            continue
        azel[0], azel[1] = float(az[k]), float(el[k])
        mh[k] = rtk.tropmapf(t, pos, azel, mw)
        mwv[k] = mw[0]
    return mh, mwv
