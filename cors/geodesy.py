"""WGS 84 ECEF <-> geodetic, one pyproj Transformer per direction, built once, applied to arrays.

Used by the station registry (approximate STR positions), the caster (NEAREST distances) and the
rover (GGA from its ECEF solution). EPSG:4978 is geocentric, EPSG:4979 geographic 3D (lat, lon, h).
"""
from __future__ import annotations

import functools

import numpy as np


@functools.cache
def _transformer(to_ecef: bool):
    from pyproj import Transformer  # pyproj loads its database: only when first needed

    src, dst = ("EPSG:4979", "EPSG:4978") if to_ecef else ("EPSG:4978", "EPSG:4979")
    return Transformer.from_crs(src, dst, always_xy=True)


def ecef_to_geodetic(x, y, z):
    """ECEF (m) -> (lat, lon in degrees, ellipsoidal height in m); scalars in, floats out, arrays in, arrays out."""
    lon, lat, h = _transformer(False).transform(x, y, z)
    if np.ndim(lat) == 0:
        return float(lat), float(lon), float(h)
    return np.asarray(lat), np.asarray(lon), np.asarray(h)


def geodetic_to_ecef(lat, lon, h) -> np.ndarray:
    """(lat, lon in degrees, ellipsoidal height in m) -> ECEF (m): shape (3,) for scalars, (n, 3) for arrays."""
    x, y, z = _transformer(True).transform(lon, lat, h)
    return np.stack([np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)], axis=-1)
