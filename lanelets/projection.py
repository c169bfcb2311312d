"""Map projections, all through pyproj: the UTM zone of a place, and Lanelet2's local frames.

Lanelet2's ``UtmProjector(Origin(lat, lon))`` puts a point at its UTM easting/northing minus the origin's,
in the origin's UTM zone; Autoware's local maps store exactly those metres as ``local_x``/``local_y``.
Transformers are built once per CRS pair (cached) and applied to whole numpy arrays.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer


def utm_epsg(lat: float, lon: float) -> int:
    """EPSG code of the WGS-84 UTM zone containing (lat, lon) (the Norway/Svalbard exceptions aside)."""
    zone = int(np.floor((lon + 180.0) / 6.0)) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


@lru_cache(maxsize=64)
def transformer(src: int | str, dst: int | str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def lonlat_to_utm(lon, lat, epsg: int):
    return transformer(4326, epsg).transform(np.asarray(lon, float), np.asarray(lat, float))


def utm_to_lonlat(x, y, epsg: int):
    return transformer(epsg, 4326).transform(np.asarray(x, float), np.asarray(y, float))


def local_to_lonlat(x, y, lat0: float, lon0: float):
    """Lanelet2/Autoware local metres (relative to the origin's UTM position) to lon/lat."""
    epsg = utm_epsg(lat0, lon0)
    e0, n0 = lonlat_to_utm(lon0, lat0, epsg)
    return utm_to_lonlat(np.asarray(x, float) + e0, np.asarray(y, float) + n0, epsg)


def lonlat_to_local(lon, lat, lat0: float, lon0: float):
    epsg = utm_epsg(lat0, lon0)
    e0, n0 = lonlat_to_utm(lon0, lat0, epsg)
    x, y = lonlat_to_utm(lon, lat, epsg)
    return x - e0, y - n0
