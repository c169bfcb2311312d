"""Interpolation of per-satellite corrections to a position: a registry of methods.

Every method is linear in the station values, so it is a weight vector over the stations
(v_at = w @ v_stations), computed once per position and station set and applied to all satellites
at once. Station coordinates are local east/north (m) around the master.

- ``plane``  (LIM): v = a E + b N + c, least squares over the stations (exact for three);
- ``surface`` (LSM): adds E², EN, N² terms when six or more stations allow it, else ``plane``;
- ``idw``    (DIM): inverse squared distance, never extrapolates beyond the station values.

Outside the network a plane's weights grow (Dai et al. 2003: > 1): when any weight magnitude
exceeds ``MAX_WEIGHT``, or fewer than three stations span a plane, the method falls back to ``idw``.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

MAX_WEIGHT = 1.5  # |w| beyond this = extrapolating too far for a plane: use inverse distance
METHODS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray | None]] = {}


def method(name: str):
    def register(fn):
        METHODS[name] = fn
        return fn
    return register


def _design(en: np.ndarray, order: int) -> np.ndarray:
    e, n = en[:, 0] / 1e5, en[:, 1] / 1e5  # 100 km units keep the normal matrix well scaled
    cols = [np.ones_like(e), e, n] + ([e * e, e * n, n * n] if order == 2 else [])
    return np.stack(cols, axis=1)


def _ls_weights(stations: np.ndarray, at: np.ndarray, order: int) -> np.ndarray | None:
    a = _design(stations, order)
    n = a.T @ a
    if np.linalg.cond(n) > 1e10:  # stations (nearly) on a line: no plane through them
        return None
    # v_at = g(at) @ coef, coef = (A'A)^-1 A' v  ->  w = g(at) @ (A'A)^-1 A'
    return _design(at[None, :], order)[0] @ np.linalg.solve(n, a.T)


@method("plane")
def plane(stations: np.ndarray, at: np.ndarray) -> np.ndarray | None:
    return _ls_weights(stations, at, 1) if len(stations) >= 3 else None


@method("surface")
def surface(stations: np.ndarray, at: np.ndarray) -> np.ndarray | None:
    if len(stations) >= 6:
        w = _ls_weights(stations, at, 2)
        if w is not None:
            return w
    return plane(stations, at)


@method("idw")
def idw(stations: np.ndarray, at: np.ndarray) -> np.ndarray:
    d2 = np.sum((stations - at) ** 2, axis=1)
    if np.any(d2 < 1.0):
        w = (d2 < 1.0).astype(float)
    else:
        w = 1.0 / d2
    return w / w.sum()


_CACHE: dict[tuple, tuple[np.ndarray, str]] = {}


def weights(name: str, stations: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, str]:
    """Weights of method ``name`` (with the inverse-distance fallback) and the method used.

    Cached: a virtual station keeps its position and stations for many epochs.
    """
    key = (name, stations.tobytes(), at.tobytes())
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        hit = _CACHE[key] = _weights(name, stations, at)
    return hit


def _weights(name: str, stations: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, str]:
    if name not in METHODS:
        raise KeyError(f"interpolation {name!r}: one of {', '.join(sorted(METHODS))}")
    w = METHODS[name](stations, at)
    if w is None or np.max(np.abs(w)) > MAX_WEIGHT:
        return idw(stations, at), "idw"
    return w, name


def interpolate(name: str, stations: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """values (n_stations, n_sats), NaN where a station lacks a satellite -> (n_sats,) at ``at``.

    Satellites are grouped by which stations see them, so each group costs one weight solve.
    """
    out = np.full(values.shape[1], np.nan)
    have = ~np.isnan(values)
    for pattern in {tuple(col) for col in have.T}:
        rows = np.array(pattern, dtype=bool)
        if not rows.any():
            continue
        cols = np.all(have == rows[:, None], axis=0)
        w, _ = weights(name, stations[rows], at)
        out[cols] = w @ values[rows][:, cols]
    return out


def leave_one_out(name: str, stations: np.ndarray, values: np.ndarray, keep: int = 0) -> np.ndarray:
    """Prediction minus value at each station from all the others (row ``keep``, the master, stays in).

    Returns (n_stations, n_sats) residuals, NaN where not predictable.
    """
    res = np.full(values.shape, np.nan)
    for i in range(len(stations)):
        if i == keep or len(stations) < 3:
            continue
        others = np.array([j for j in range(len(stations)) if j != i])
        res[i] = interpolate(name, stations[others], values[others], stations[i]) - values[i]
    return res
