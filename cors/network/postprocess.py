"""Post-processing path ("virtual RINEX"): station RINEX files -> the engine -> RINEX 3 of a VRS.

Epochs are fed in time order, one at a time, exactly as the caster feeds decoded RTCM: the
solution at an epoch depends only on that epoch and earlier ones (causal, forward only).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

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


def virtual_rinex(engine: NetworkEngine, position: Sequence[float], out: str | Path, *,
                  start: float | None = None, end: float | None = None, method: str = "plane",
                  components: Iterable[str] = COMPONENTS, marker: str = "VRS",
                  on_epoch: Callable[[NetworkEpoch, VirtualEpoch | None], None] | None = None) -> dict:
    """Write the virtual station's RINEX 3; returns a summary (epochs, satellites, baselines)."""
    comps = tuple(components)
    times = epoch_times(engine.sites, start, end)
    interval = float(np.median(np.diff(times))) if len(times) > 1 else None
    writer = Rinex3Writer(out, position, marker=marker, interval=interval, comments=[
        "virtual reference station (network RTK), mapsvc",
        "stations: " + " ".join(s.name for s in engine.sites),
        f"interpolation: {method}; corrections: {'+'.join(comps) or 'geometry only'}"])
    n_ep = n_obs = 0
    for ep in run_network(engine, times):
        ve = engine.virtual(ep, position, method=method, components=comps)
        if on_epoch:
            on_epoch(ep, ve)
        if ve is None or not ve.records:
            continue
        writer.add(ve.records[0].time, ve.records)
        n_ep += 1
        n_obs += len(ve.records)
    if not n_ep:
        from cors.errors import CorsError

        raise CorsError(f"{out}: no epoch with station data in the requested span")
    writer.close()
    return {"epochs": n_ep, "observations": n_obs,
            "baselines": {bl.name: {"km": round(bl.length_km, 1), "fix_rate": round(bl.stats.fix_rate, 3),
                                    "epochs": bl.stats.epochs} for bl in engine.baselines.values()}}
