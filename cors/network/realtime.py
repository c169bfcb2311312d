"""Real-time path: RTCM 3 streams of the stations -> the same engine, epoch by epoch.

Each station's stream is decoded by RTKLIB (``input_rtcm3``). An epoch goes to the engine once
every station in use has sent it, or once a later epoch has arrived from any station (a late or
silent station is then simply missing from that epoch, as in RTKLIB's rtksvr).
"""
from __future__ import annotations

import pyrtklib as rtk

from cors.network.engine import NetworkEngine, NetworkEpoch
from cors.rtcm_encode import gtime_seconds
from cors.rtk import copy_records

DTTOL = 0.005


class StreamNetwork:
    def __init__(self, engine: NetworkEngine, time_hint):
        self.engine = engine
        self.decoders = {}
        for s in engine.sites:
            dec = rtk.rtcm_t()
            rtk.init_rtcm(dec)
            dec.time = time_hint  # MSM carries time of week only
            self.decoders[s.name] = dec
        self.pending: dict[float, dict[str, list]] = {}
        self.done_until = -1e18

    def feed(self, name: str, data: bytes) -> list[NetworkEpoch]:
        """Bytes from station ``name``; returns the epochs this completed, in time order."""
        dec = self.decoders[name]
        for byte in data:
            if rtk.input_rtcm3(dec, byte) == 1 and dec.obs.n > 0:
                t = round(gtime_seconds(dec.obs.data[0].time), 3)
                if t > self.done_until + DTTOL:
                    self.pending.setdefault(t, {})[name] = copy_records(dec.obs.data, dec.obs.n)
        return self._ready()

    def _ready(self) -> list[NetworkEpoch]:
        active = {s.name for s in self.engine.sites if not s.excluded}
        out = []
        newest = max(self.pending, default=None)
        for t in sorted(self.pending):
            got = self.pending[t]
            if not (active <= set(got) or (newest is not None and newest > t + DTTOL)):
                break
            out.append(self.engine.step(t, got))
            del self.pending[t]
            self.done_until = t
        return out

    def flush(self) -> list[NetworkEpoch]:
        out = []
        for t in sorted(self.pending):
            out.append(self.engine.step(t, self.pending.pop(t)))
            self.done_until = t
        return out

    def close(self) -> None:
        for dec in self.decoders.values():
            rtk.free_rtcm(dec)
