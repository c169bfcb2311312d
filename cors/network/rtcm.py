"""Virtual stations as RTCM 3: RTKLIB's encoder (pyrtklib ``gen_rtcm3``), 1006 at the virtual position.

The antenna of a virtual station is null: 1006 carries antenna height 0 and 1033 no antenna type.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyrtklib as rtk

from cors.rtcm_encode import MSM_BASE, check_frame, read_rinex, satsys

STATION_INTERVAL = 10.0


class VirtualRtcm:
    """Encoder state of one virtual station (lock times, 1006 schedule)."""

    def __init__(self, position: Sequence[float], *, station_id: int = 0, msm: int = 7, check: bool = True):
        self.enc = rtk.rtcm_t()
        rtk.init_rtcm(self.enc)
        self.enc.staid = station_id
        self.station_id = station_id
        for i in range(3):
            self.enc.sta.pos[i] = float(position[i])
        self.enc.sta.hgt = 0.0
        self.enc.sta.deltype = 0
        self.msm = msm
        self.check = check
        self._last_station: float | None = None

    def _gen(self, msg: int, sync: int) -> bytes | None:
        if not rtk.gen_rtcm3(self.enc, msg, 0, sync):
            return None
        raw = bytes(self.enc.buff[i] for i in range(self.enc.nbyte))
        if self.check:
            check_frame(raw, msg)
        return raw

    def encode(self, records: list) -> bytes:
        """One epoch of virtual obsd_t records -> 1006 (every 10 s) + MSM frames."""
        if not records:
            return b""
        n = min(len(records), int(rtk.MAXOBS))
        for k in range(n):
            self.enc.obs.data[k] = records[k]
        self.enc.obs.n = n
        self.enc.time = records[0].time
        t = float(records[0].time.time) + float(records[0].time.sec)
        out = []
        if self._last_station is None or t - self._last_station >= STATION_INTERVAL - 1e-3:
            out.append(self._gen(1006, 0))
            self._last_station = t
        present = [s for s in MSM_BASE if any(satsys(int(records[k].sat))[0] == s for k in range(n))]
        for i, sys in enumerate(present):
            out.append(self._gen(MSM_BASE[sys] + self.msm, 1 if i < len(present) - 1 else 0))
        return b"".join(f for f in out if f)

    def close(self) -> None:
        rtk.free_rtcm(self.enc)


def rinex_to_rtcm(obs: str | Path, navs: Sequence, out: str | Path, position: Sequence[float]) -> int:
    """A virtual RINEX file as an RTCM 3 file (what the network mountpoint would have sent)."""
    src = read_rinex(obs, navs)
    enc = VirtualRtcm(np.asarray(position))
    data = bytearray()
    try:
        for s, e in src.epochs:
            data += enc.encode([src.obs.data[k] for k in range(s, e)])
    finally:
        enc.close()
    Path(out).write_bytes(bytes(data))
    return len(data)
