"""Post-processing path ("virtual RINEX"): station RINEX files -> the engine -> RINEX 3 of a VRS.

Epochs are fed in time order, one at a time, exactly as the caster feeds decoded RTCM: the
solution at an epoch depends only on that epoch and earlier ones (causal, forward only).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cors.errors import CorsError
from cors.network.engine import COMPONENTS, NetworkEngine, NetworkEpoch
from cors.network.rinex3 import Rinex3Writer
from cors.network.sites import DTTOL, Site
from cors.network.virtual import VirtualEpoch


def epoch_times(sites: Sequence[Site], start: float | None = None, end: float | None = None) -> np.ndarray:
    times = np.unique(np.round(np.concatenate([s.times for s in sites if len(s.times)]), 3))
    if start is not None:
        times = times[times >= start - DTTOL]
    if end is not None:
        times = times[times <= end + DTTOL]
    return times


def run_network(engine: NetworkEngine, times: Iterable[float]) -> Iterator[NetworkEpoch]:
    for t in times:
        records = {s.name: s.epoch_records(t) for s in engine.sites}
        yield engine.step(float(t), records)


@dataclass
class Output:
    """One virtual RINEX to write: where, with which interpolation and corrections."""

    path: str | Path
    method: str = "plane"
    components: tuple[str, ...] = COMPONENTS


def virtual_rinex(engine: NetworkEngine, position: Sequence[float], out: str | Path, *,
                  start: float | None = None, end: float | None = None, method: str = "plane",
                  components: Iterable[str] = COMPONENTS, marker: str = "VRS",
                  on_epoch: Callable[[NetworkEpoch, VirtualEpoch | None], None] | None = None) -> dict:
    """Write the virtual station's RINEX 3; returns a summary (epochs, satellites, baselines)."""
    return virtual_rinex_set(engine, position, [Output(out, method, tuple(components))],
                             start=start, end=end, marker=marker, on_epoch=on_epoch)


def virtual_rinex_set(engine: NetworkEngine, position: Sequence[float], outputs: Sequence[Output], *,
                      start: float | None = None, end: float | None = None, marker: str = "VRS",
                      on_epoch: Callable[[NetworkEpoch, VirtualEpoch | None], None] | None = None) -> dict:
    """Several virtual RINEX files at one position from one network run (ablations share it)."""
    times = epoch_times(engine.sites, start, end)
    interval = float(np.median(np.diff(times))) if len(times) > 1 else None
    writers = [Rinex3Writer(o.path, position, marker=marker, interval=interval, comments=[
        "virtual reference station (network RTK), mapsvc",
        "stations: " + " ".join(s.name for s in engine.sites),
        f"interpolation: {o.method}; corrections: {'+'.join(o.components) or 'geometry only'}"])
        for o in outputs]
    n_ep = n_obs = 0
    timing = {"network_s": 0.0, "virtual_s": 0.0, "baseline_epochs": 0, "virtual_epochs": 0}
    for t in times:
        t0 = time.perf_counter()
        ep = engine.step(float(t), {s.name: s.epoch_records(t) for s in engine.sites})
        t1 = time.perf_counter()
        timing["network_s"] += t1 - t0
        timing["baseline_epochs"] += len(ep.baselines)
        first = None
        for o, w in zip(outputs, writers):
            t1 = time.perf_counter()
            ve = engine.virtual(ep, position, method=o.method, components=o.components)
            timing["virtual_s"] += time.perf_counter() - t1
            timing["virtual_epochs"] += 1
            first = first or ve
            if ve is not None and ve.records:
                w.add(ve.records[0].time, ve.records)
                if w is writers[0]:
                    n_ep += 1
                    n_obs += len(ve.records)
        if on_epoch:
            on_epoch(ep, first)
    if not n_ep:
        raise CorsError(f"{outputs[0].path}: no epoch with station data in the requested span")
    for w in writers:
        w.close()
    return {"epochs": n_ep, "observations": n_obs, "timing": timing,
            "baselines": {bl.name: {"km": round(bl.length_km, 1), "fix_rate": round(bl.stats.fix_rate, 3),
                                    "wl_fix_rate": round(bl.stats.wl_fix_rate, 3),
                                    "epochs": bl.stats.epochs} for bl in engine.baselines.values()}}
