"""Widelane-first, partial ambiguity resolution for a network baseline (both ends known).

RTKLIB's filter (``rtkpos`` with its own AR off) gives the float states: per satellite the
single-difference (aux minus master) L1 ionosphere, both zenith wet delays and the L1/L2 carrier
biases (cycles). RTKLIB 2.4.3 fixes L1 and L2 jointly and all-or-nothing, which on 100-300 km
baselines fails most of the time. Here, per epoch and causally:

1. widelanes (N1 - N2, double differences) from Melbourne-Wuebbena combinations averaged over each
   satellite's arc (geometry- and ionosphere-free, so baseline length does not matter); a DD widelane
   is fixed only when its mean is within ``wl_frac`` of an integer with a small formal sigma;
2. L1 given the fixed widelanes: LAMBDA (RTKLIB's ``lambda``) on the conditional float L1 DDs, with
   partial fixing (lowest satellites dropped until the ratio test passes, never fewer than 4 DDs);
3. the fixes are applied to all states by the conditional update
   x_fix = x - P C' (C P C')^-1 (C x - c), C the fixed DD combinations, c their integers.
The ionosphere and wet delays the network uses then come from x_fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyrtklib as rtk

CLIGHT = float(rtk.CLIGHT)
MAXSAT = int(rtk.MAXSAT)
MIN_DD = 4  # fewest DD ambiguities a fix may have


@dataclass
class _Arc:
    """Running mean and variance (Welford) of one satellite's single-difference MW (WL cycles)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    start: float = 0.0
    last: float = 0.0
    lock: tuple = (0, 0)

    def add(self, t: float, v: float) -> None:
        if self.n == 0:
            self.start = t
        self.n += 1
        d = v - self.mean
        self.mean += d / self.n
        self.m2 += d * (v - self.mean)
        self.last = t

    def var_of_mean(self, floor: float) -> float:
        var = self.m2 / (self.n - 1) if self.n > 1 else floor ** 2
        # a few epochs can look quiet by chance, and 1 Hz epochs are correlated: floor the per-epoch
        # scatter and count at most one independent sample per 30 s
        n_ind = max(1.0, min(self.n, (self.last - self.start) / 30.0 + 1.0))
        return max(var, floor ** 2) / n_ind


@dataclass
class FixResult:
    wl: dict = field(default_factory=dict)  # sat -> fixed DD widelane vs its system's reference
    l1: dict = field(default_factory=dict)  # sat -> fixed DD L1 ambiguity
    refs: dict = field(default_factory=dict)  # system -> reference satellite
    ratio: float = 0.0
    x: dict = field(default_factory=dict)  # state index -> fixed value (only when anything is fixed)


class WidelaneL1:
    """Per-baseline resolver over an ``rtk_t`` whose own AR is off."""

    def __init__(self, state, nav, *, ratio: float = 3.0, elmask: float = np.radians(15.0),
                 wl_frac: float = 0.2, wl_sigma: float = 0.12, wl_min_s: float = 300.0,
                 mw_floor: float = 0.3, max_gap_s: float = 60.0, min_dd: int = MIN_DD):
        self.rtk, self.nav = state, nav
        opt = state.opt
        self.np_, self.ni, self.nt = 3, MAXSAT, 2
        self.nr = self.np_ + self.ni + self.nt
        self.nx = int(state.nx)
        self.ratio_min, self.elmask = ratio, elmask
        self.wl_frac, self.wl_sigma, self.wl_min_s = wl_frac, wl_sigma, wl_min_s
        self.mw_floor, self.max_gap_s, self.min_dd = mw_floor, max_gap_s, min_dd
        self.arcs: dict[int, _Arc] = {}
        self.wl_groups: dict[int, dict[int, int]] = {}
        self.wl_keep = 0.35  # cycles a held widelane's arc mean may drift before it is dropped
        if int(opt.nf) < 2:
            raise ValueError("widelane AR needs two frequencies")

    def ib(self, sat: int, f: int) -> int:
        return self.nr + MAXSAT * f + sat - 1

    # -- Melbourne-Wuebbena arcs ----------------------------------------------------------------
    def _mw(self, t: float, aux: dict, master: dict) -> dict[int, tuple[float, float]]:
        """Per satellite: (f1, f2) of this epoch, after updating its MW arc."""
        freqs = {}
        for sat, ra in aux.items():
            rm = master.get(sat)
            if rm is None:
                continue
            f = [rtk.sat2freq(sat, int(ra.code[k]), self.nav) for k in (0, 1)]
            obs = [ra.L[0], ra.L[1], ra.P[0], ra.P[1], rm.L[0], rm.L[1], rm.P[0], rm.P[1]]
            if f[0] <= 0 or f[1] <= 0 or any(v == 0.0 for v in obs):
                self.arcs.pop(sat, None)
                continue
            lw = CLIGHT / (f[0] - f[1])

            def mw(r):
                return (r.L[0] - r.L[1]) - (f[0] * r.P[0] + f[1] * r.P[1]) / (f[0] + f[1]) / lw

            v = mw(ra) - mw(rm)
            ss = self.rtk.ssat[sat - 1]
            lock = (int(ss.lock[0]), int(ss.lock[1]))
            arc = self.arcs.get(sat)
            slip = any((int(r.LLI[k]) & 1) for r in (ra, rm) for k in (0, 1))
            if arc is not None and (slip or t - arc.last > self.max_gap_s
                                    or lock[0] < arc.lock[0] or lock[1] < arc.lock[1]
                                    or (arc.n >= 5 and abs(v - arc.mean) > max(4 * np.sqrt(arc.m2 / (arc.n - 1)), 2.0))):
                arc = None  # a slip, an outage or RTKLIB re-initialised the bias: a new arc
            if arc is None:
                arc = self.arcs[sat] = _Arc()
            arc.add(t, v)
            arc.lock = lock
            freqs[sat] = (f[0], f[1])
        for sat in [s for s in self.arcs if s not in aux or s not in master]:
            if t - self.arcs[sat].last > self.max_gap_s:
                del self.arcs[sat]
        return freqs

    # -- one epoch -------------------------------------------------------------------------------
    def step(self, t: float, aux_records, master_records) -> FixResult:
        aux = {int(r.sat): r for r in aux_records}
        master = {int(r.sat): r for r in master_records}
        freqs = self._mw(t, aux, master)
        res = FixResult()
        x = self.rtk.x
        cand = []  # (sys, el, sat)
        for sat in freqs:
            ss = self.rtk.ssat[sat - 1]
            sys = int(ss.sys)
            el = float(ss.azel[1])
            # GLONASS (FDMA): DD ambiguities are not integers without inter-channel bias calibration
            if sys == int(rtk.SYS_GLO) or not (ss.vsat[0] and ss.vsat[1]) or el < self.elmask:
                continue
            if x[self.ib(sat, 0)] == 0.0 or x[self.ib(sat, 1)] == 0.0:
                continue
            cand.append((sys, el, sat))
        if not cand:
            return res
        # widelanes, per system against the highest satellite with a long enough arc
        wl, elev, sysof = {}, {}, {}
        for sys in sorted({c[0] for c in cand}):
            sats = sorted(((el, sat) for s, el, sat in cand if s == sys), reverse=True)
            ready = [(el, sat) for el, sat in sats
                     if self.arcs[sat].last - self.arcs[sat].start >= self.wl_min_s]
            if len(ready) < 2:
                continue
            ref = ready[0][1]
            res.refs[sys] = ref
            ra = self.arcs[ref]
            # a widelane once fixed stays fixed for its arc while the mean stays near it: no
            # flicker at the thresholds (held as single-difference integers of one datum per system)
            group = self.wl_groups.setdefault(sys, {})
            if ref not in group:
                group.clear()
                group[ref] = 0
            for el, sat in ready[1:]:
                a = self.arcs[sat]
                dd = a.mean - ra.mean
                if sat in group:
                    n = group[sat] - group[ref]
                    if abs(dd - n) <= self.wl_keep:
                        wl[sat], elev[sat], sysof[sat] = n, el, sys
                        continue
                    del group[sat]
                sig = np.sqrt(a.var_of_mean(self.mw_floor) + ra.var_of_mean(self.mw_floor))
                n = round(dd)
                if abs(dd - n) <= self.wl_frac and sig <= self.wl_sigma:
                    wl[sat], elev[sat], sysof[sat] = int(n), el, sys
                    group[sat] = group[ref] + int(n)
            for sat in [s for s in group if s != ref and s not in wl]:
                del group[sat]  # arc ended or not ready: fix it anew
        res.wl = wl
        if not wl:
            return res
        self._resolve_l1(res, wl, elev, sysof, cand)
        return res

    def _resolve_l1(self, res: FixResult, wl: dict, elev: dict, sysof: dict, cand: list) -> None:
        sats = [c[2] for c in cand]
        idx = [self.nr - 2, self.nr - 1] + [self.np_ + s - 1 for s in sats]
        idx += [self.ib(s, 0) for s in sats] + [self.ib(s, 1) for s in sats]
        pos = {k: i for i, k in enumerate(idx)}
        x = np.array([self.rtk.x[k] for k in idx])
        P = self._cov(idx)

        def row(sat, f):  # DD bias row (sat minus its reference) on frequency f
            r = np.zeros(len(idx))
            r[pos[self.ib(sat, f)]] = 1.0
            r[pos[self.ib(res.refs[sysof[sat]], f)]] = -1.0
            return r

        order = sorted(wl, key=lambda s: -elev[s])
        D1 = np.array([row(s, 0) for s in order])
        Dw = D1 - np.array([row(s, 1) for s in order])
        nw = np.array([wl[s] for s in order], dtype=float)
        a1, aw = D1 @ x, Dw @ x
        Q11, Q1w, Qww = D1 @ P @ D1.T, D1 @ P @ Dw.T, Dw @ P @ Dw.T
        try:
            G = Q1w @ np.linalg.inv(Qww)
        except np.linalg.LinAlgError:
            return
        a1c = a1 - G @ (aw - nw)
        Q1c = Q11 - G @ Q1w.T
        keep = len(order)
        fixed1 = None
        while keep >= self.min_dd:
            n1, ratio = _lambda(a1c[:keep], Q1c[:keep, :keep])
            if n1 is not None and ratio >= self.ratio_min:
                fixed1, res.ratio = n1, ratio
                break
            keep -= 1  # partial: drop the lowest remaining satellite
        rows, c = [Dw], [nw]
        if fixed1 is not None:
            res.l1 = {s: int(v) for s, v in zip(order[:keep], fixed1)}
            rows.append(D1[:keep])
            c.append(fixed1)
        C, c = np.vstack(rows), np.concatenate(c)
        S = C @ P @ C.T + 1e-8 * np.eye(len(c))
        K = P @ C.T @ np.linalg.inv(S)
        xf = x + K @ (c - C @ x)
        res.x = {k: float(v) for k, v in zip(idx, xf)}

    def _cov(self, idx: list[int]) -> np.ndarray:
        P, nx = self.rtk.P, self.nx
        n = len(idx)
        out = np.empty((n, n))
        for i, k in enumerate(idx):
            for j in range(i, n):
                out[i, j] = out[j, i] = P[k + idx[j] * nx]
        return out


def _lambda(a: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray | None, float]:
    """RTKLIB's LAMBDA (two best candidates); returns the best integer vector and the ratio."""
    n = len(a)
    fa, fq = rtk.Arr1Ddouble(n), rtk.Arr1Ddouble(n * n)
    F, s = rtk.Arr1Ddouble(2 * n), rtk.Arr1Ddouble(2)
    for i in range(n):
        fa[i] = float(a[i])
        for j in range(n):
            fq[i + j * n] = float(Q[i, j])
    if getattr(rtk, "lambda")(n, 2, fa, fq, F, s) != 0:
        return None, 0.0
    s0, s1 = float(s[0]), float(s[1])
    return np.array([round(F[i]) for i in range(n)], dtype=float), (s1 / s0 if s0 > 0 else 0.0)
