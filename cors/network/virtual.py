"""Virtual observations: the master station's observations moved to a virtual position.

Per satellite and frequency f (lambda_f, gamma_f = (lambda_f / lambda_L1)^2, D = slant L1
ionosphere and T = troposphere at the virtual position minus at the master):

  phase (cycles):  L_v = L_m + (dR + T - gamma_f D - dant_m,f) / lambda_f
  code  (m):       P_v = P_m +  dR + T + gamma_f D - dant_m,f

dR = range(virtual) - range(master marker) with each receiver's own light time, minus the
satellite clock change over that light-time difference; dant_m,f = the master's ARP offset and
phase-centre model (RTKLIB ``antmodel``) removed, since the virtual antenna is null. The
ionosphere delays code and advances phase: the sign flips between them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyrtklib as rtk

from cors.network.geometry import CLIGHT, elevation, mapping, saastamoinen_zenith
from cors.network.sites import Site, ecef_to_llh

FREQ_L1 = 1.57542e9
NFREQ = int(rtk.NFREQ)


@dataclass
class VirtualEpoch:
    gpst: float
    position: np.ndarray
    master: str
    method: str
    owner: object = None  # Arr1Dobsd_t holding the records
    records: list = field(default_factory=list)

    @property
    def sats(self) -> list[int]:
        return [int(r.sat) for r in self.records]


def _dant(site: Site, az: np.ndarray, el: np.ndarray) -> np.ndarray:
    """(n, NFREQ) range corrections of the master antenna (ARP delta + PCO/PCV), RTKLIB antmodel."""
    out = np.zeros((len(el), NFREQ))
    pcv = site.pcv[0] if site.pcv is not None else rtk.pcv_t()
    dl, azel, dant = rtk.Arr1Ddouble(3), rtk.Arr1Ddouble(2), rtk.Arr1Ddouble(NFREQ)
    for i in range(3):
        dl[i] = float(site.antdel[i])
    for k in range(len(el)):
        azel[0], azel[1] = float(az[k]), float(el[k])
        rtk.antmodel(pcv, dl, azel, 0, dant)
        out[k] = [dant[f] for f in range(NFREQ)]
    return out


def virtual_records(master_epoch, master: Site, position: np.ndarray, nav, *,
                    dispersive: np.ndarray | None, wet: np.ndarray | None,
                    method: str = "") -> VirtualEpoch:
    """Virtual obsd_t records at ``position`` from the master's records of this epoch.

    ``dispersive``/``wet`` are per satellite index (sat-1), relative to the master; None leaves the
    component out (ablations). Satellites without a needed correction are left out.

    The standard-atmosphere troposphere change (Saastamoinen, Niell mapping) between master and
    virtual position is always applied: a rover models it for any base from the base's declared
    height, so without it a "geometry only" station would not behave as its master base does
    (CatNet: GARR is 510 m above MATA, ~0.15 m zenith).
    """
    recs = master_epoch.records
    geom = master_epoch.geometry
    r_m, e_m, _ = geom.ranges(master.ecef)
    r_v, e_v, dclk = geom.ranges(position, ref_range=r_m)
    dr = r_v - r_m - CLIGHT * dclk
    idx = geom.sats - 1
    llh_v = ecef_to_llh(position)
    az_m, el_m = elevation(e_m, master_epoch.llh)
    az_v, el_v = elevation(e_v, llh_v)
    keep = geom.ok & (el_v > 0) & (el_m > 0)
    # standard-atmosphere change (see above)
    t = recs[0].time
    mh_m, mw_m = mapping(t, master_epoch.llh, az_m, el_m)
    mh_v, mw_v = mapping(t, llh_v, az_v, el_v)
    zh_m, zh_v = saastamoinen_zenith(master_epoch.llh, 0.0), saastamoinen_zenith(llh_v, 0.0)
    zw_m = saastamoinen_zenith(master_epoch.llh, 0.7) - zh_m
    zw_v = saastamoinen_zenith(llh_v, 0.7) - zh_v
    tropo = (mh_v * zh_v + mw_v * zw_v) - (mh_m * zh_m + mw_m * zw_m)
    if wet is not None:  # zenith wet residual, virtual minus master, mapped at the virtual station
        tropo = tropo + mw_v * wet[idx]
        keep &= ~np.isnan(wet[idx])
    iono = np.zeros(len(recs))
    if dispersive is not None:
        iono = dispersive[idx]
        keep &= ~np.isnan(iono)
    dant = _dant(master, az_m, el_m)
    out = VirtualEpoch(float(recs[0].time.time) + float(recs[0].time.sec), position, master.name, method)
    arr = rtk.Arr1Dobsd_t(max(int(keep.sum()), 1))
    n = 0
    for k, rec in enumerate(recs):
        if not keep[k]:
            continue
        arr[n] = rec
        v = arr[n]
        v.rcv = 2
        for f in range(NFREQ):
            code = int(rec.code[f])
            if not code:
                continue
            freq = rtk.sat2freq(int(rec.sat), code, nav)
            if freq <= 0:
                v.L[f], v.P[f] = 0.0, 0.0
                continue
            lam = CLIGHT / freq
            gamma = (FREQ_L1 / freq) ** 2
            base = dr[k] + tropo[k] - dant[k, f]
            if rec.L[f] != 0.0:
                v.L[f] = rec.L[f] + (base - gamma * iono[k]) / lam
            if rec.P[f] != 0.0:
                v.P[f] = rec.P[f] + base + gamma * iono[k]
        out.records.append(v)
        n += 1
    out.owner = arr
    return out
