"""Reference stations of a network: known marker coordinate, antenna, observations."""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyrtklib as rtk

from cors.errors import CorsError
from cors.geodesy import ecef_to_geodetic, geodetic_to_ecef
from cors.rtcm_encode import RinexSource, _sta_delta, gtime_seconds, read_rinex

DTTOL = 0.005  # s, RTKLIB's "same epoch"


@dataclass
class Site:
    """One station: name, marker ECEF (m), antenna delta (E, N, U of the ARP, m) and PCV model."""

    name: str
    ecef: np.ndarray
    antdel: tuple[float, float, float] = (0.0, 0.0, 0.0)
    antenna: str = ""
    pcv: object | None = None  # rtk.pcv_t when an antenna file names this antenna
    source: RinexSource | None = None
    excluded: str = ""  # why the integrity monitor left it out ("" = in use)
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def llh(self) -> np.ndarray:
        return ecef_to_llh(self.ecef)

    def epoch_records(self, t: float) -> list:
        """obsd_t records of the source epoch at GPS time t (empty when the station has none)."""
        if self.source is None or not len(self.times):
            return []
        i = int(np.searchsorted(self.times, t - DTTOL))
        if i >= len(self.times) or abs(self.times[i] - t) > DTTOL:
            return []
        s, e = self.source.epochs[i]
        return [self.source.obs.data[k] for k in range(s, e)]


def ecef_to_llh(ecef: Sequence[float]) -> np.ndarray:
    """(lat rad, lon rad, h m): cors.geodesy (the project's one pyproj transformer), in radians."""
    lat, lon, h = ecef_to_geodetic(*(float(v) for v in ecef))
    return np.array([np.radians(float(lat)), np.radians(float(lon)), float(h)])


def llh_to_ecef(lat_deg: float, lon_deg: float, h: float) -> np.ndarray:
    return np.asarray(geodetic_to_ecef(lat_deg, lon_deg, h), dtype=float)


def enu_matrix(llh: Sequence[float]) -> np.ndarray:
    """Rows E, N, U at (lat, lon) in radians: enu = M @ (ecef - origin)."""
    sl, cl = np.sin(llh[0]), np.cos(llh[0])
    so, co = np.sin(llh[1]), np.cos(llh[1])
    return np.array([[-so, co, 0.0], [-sl * co, -sl * so, cl], [cl * co, cl * so, sl]])


@functools.lru_cache(maxsize=8)
def _antenna_file(path: str):
    pcvs = rtk.pcvs_t()
    if not rtk.readpcv(path, pcvs):
        raise CorsError(f"{path}: not an ANTEX file RTKLIB can read")
    return pcvs


def antenna_model(atx: str | Path | None, antenna: str, t) -> object | None:
    """RTKLIB pcv_t of a receiver antenna from an ANTEX file (radome NONE when the header has none)."""
    if not atx or not antenna.strip():
        return None
    pcvs = _antenna_file(str(atx))
    # Look the type up here: pyrtklib's searchpcv hands back a pointer it later frees.
    wanted = {antenna.strip()}
    if len(antenna.split()) == 1:  # no radome field: RTKLIB's rule, radome NONE
        wanted.add(f"{antenna.strip():<16}NONE")
    for i in range(pcvs.n):
        pcv = pcvs.pcv[i]
        if int(pcv.sat) == 0 and _cstr(pcv.type).strip() in wanted:
            own = rtk.Arr1Dpcv_t(1)
            own[0] = pcv
            return own
    return None


def load_site(obs: str | Path, ecef: Sequence[float] | None = None, *, nav: Sequence = (),
              atx: str | Path | None = None, name: str | None = None) -> Site:
    """A station from its RINEX file; ``ecef`` (the known marker coordinate) overrides the header."""
    source = read_rinex(obs, nav)
    pos = np.array(ecef if ecef is not None else source.header_ecef, dtype=float)
    if pos.shape != (3,) or float(pos @ pos) < 6.0e6 ** 2:
        raise CorsError(f"{obs}: station ECEF {list(pos)} is not on the Earth's surface")
    sta = source.sta
    delta = _sta_delta(sta)
    if sta.deltype:  # delta given as XYZ: turn it into E/N/U
        delta = list(enu_matrix(ecef_to_llh(pos)) @ np.array(delta))
    else:  # RINEX H/E/N -> E, N, U
        delta = [delta[0], delta[1], delta[2]]
    antenna = _cstr(sta.antdes)
    site = Site(name or (_cstr(sta.name).strip()[:4] or Path(obs).stem[:4]).upper(), pos,
                tuple(float(v) for v in delta), antenna, source=source)
    site.pcv = antenna_model(atx, antenna, source.obs.data[0].time)
    site.times = np.array([gtime_seconds(source.obs.data[s].time) for s, _ in source.epochs])
    return site


def _cstr(arr) -> str:
    """A C char[] of RTKLIB (pyrtklib returns the string from element 0)."""
    try:
        return str(arr[0] or "")
    except Exception:
        return ""
