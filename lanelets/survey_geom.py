"""Small metric polyline helpers for the survey builder (numpy on whole coordinate arrays).

Shapely 2 has no vectorised "cut a line between two distances" nor "move a line's end smoothly"; these are
the few lines of numpy that do it, on local metric coordinates (never degrees).
"""
from __future__ import annotations

import numpy as np


def cumlen(xy: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])


def point_at(xy: np.ndarray, s: np.ndarray | float) -> np.ndarray:
    c = cumlen(xy)
    s = np.clip(np.asarray(s, float), 0.0, c[-1])
    return np.stack([np.interp(s, c, xy[:, 0]), np.interp(s, c, xy[:, 1])], axis=-1)


def cut(xy: np.ndarray, s0: float, s1: float) -> np.ndarray:
    """The part of polyline `xy` between arc lengths s0 < s1, with interpolated end vertices."""
    c = cumlen(xy)
    inner = (c > s0 + 1e-9) & (c < s1 - 1e-9)
    return np.vstack([point_at(xy, s0)[None], xy[inner], point_at(xy, s1)[None]])


def direction_at(xy: np.ndarray, s: float, ds: float = 5.0) -> np.ndarray:
    """Unit tangent at arc length s (in digitising direction), from a chord of about ds metres."""
    c = cumlen(xy)
    a, b = max(s - ds / 2, 0.0), min(s + ds / 2, c[-1])
    if b - a < 1e-6:
        a, b = 0.0, c[-1]
    v = point_at(xy, b) - point_at(xy, a)
    return v / np.linalg.norm(v)


def shift_end(xy: np.ndarray, d: np.ndarray, at_end: bool, length: float) -> np.ndarray:
    """Move one end of a polyline by vector d, fading smoothly (smoothstep) to 0 over `length` metres.

    Used to lead a ramp's centre line onto the outer lanes of the road it merges into / diverges from.
    """
    c = cumlen(xy)
    xy = xy.copy()
    if length > 1.0:  # densify the faded part so the bend stays smooth
        s_new = np.arange(0.0, length, 5.0)
        s_new = (c[-1] - s_new) if at_end else s_new
        c_all = np.union1d(c, s_new[(s_new > 0) & (s_new < c[-1])])
        xy = point_at(xy, c_all)
        c = c_all
    u = (c - (c[-1] - length)) / length if at_end else (length - c) / length
    u = np.clip(u, 0.0, 1.0)
    w = u * u * (3.0 - 2.0 * u)
    return xy + w[:, None] * d[None, :]


def bezier(p0: np.ndarray, t0: np.ndarray, p3: np.ndarray, t3: np.ndarray, n: int) -> np.ndarray:
    """Cubic Bezier from p0 (leaving along t0) to p3 (arriving along t3): a turning lane's bound."""
    k = 0.4 * np.linalg.norm(p3 - p0)
    p1, p2 = p0 + k * t0, p3 - k * t3
    t = np.linspace(0.0, 1.0, n)[:, None]
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t * t * p2 + (t ** 3) * p3


MIN_VERTEX_GAP_M = 0.05  # Lanelet2's points_too_close threshold


def interior(xy: np.ndarray, first: np.ndarray, last: np.ndarray, tol: float = MIN_VERTEX_GAP_M) -> np.ndarray:
    """The inner vertices of `xy` to keep between the end points actually used (`first`, `last`, which may be
    shared points placed a little differently): drops any vertex closer than `tol` to the vertex before it or to
    the last point, so a line string never has two points closer than Lanelet2's 5 cm."""
    inner = xy[1:-1]
    if not len(inner):
        return inner
    prev = np.vstack([np.asarray(first, float)[None], inner[:-1]])
    keep = (np.hypot(*(inner - prev).T) >= tol) & (np.hypot(*(inner - np.asarray(last, float)).T) >= tol)
    return inner[keep]
