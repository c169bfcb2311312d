"""RINEX 3.04 observation output of virtual stations.

Written here because RTKLIB's RINEX writers (outrnxobsh/outrnxobsb) take a C ``FILE*``, which
pyrtklib cannot hand over, and no kept Python library writes RINEX 3 observations. Values, codes and
satellite ids come from RTKLIB (code2obs, satno2id) so the file reads back through ``readrnx``.
"""
from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyrtklib as rtk

from cors.network.geometry import CLIGHT

NFREQ = int(rtk.NFREQ)
SYS_CHAR = "GREJCIS"


def _line(text: str, label: str) -> str:
    return f"{text:<60.60}{label}\n"


def _sat_id(sat: int) -> str:
    buf = rtk.Arr1Dchar(8)
    rtk.satno2id(sat, buf)
    return str(buf[0])


def _epoch_fields(t) -> list[float]:
    ep = rtk.Arr1Ddouble(6)
    rtk.time2epoch(t, ep)
    return [ep[i] for i in range(6)]


def record_values(rec) -> tuple[str, dict[str, tuple[float, int]]]:
    """(satellite id, {RINEX 3 code: (value, LLI)}) of one obsd_t."""
    sid = _sat_id(int(rec.sat))
    vals = {}
    for f in range(NFREQ):
        code = int(rec.code[f])
        if not code:
            continue
        o = str(rtk.code2obs(code))
        vals["C" + o] = (float(rec.P[f]), 0)
        vals["L" + o] = (float(rec.L[f]), int(rec.LLI[f]) & 0x7)
        vals["D" + o] = (float(rec.D[f]), 0)
        vals["S" + o] = (float(rec.SNR[f]) * 0.25, 0)
    return sid, vals


def obs_types(rows: Iterable[tuple[str, dict]]) -> dict[str, list[str]]:
    """System letter -> RINEX 3 observation codes present (C, L, D, S per signal)."""
    sigs: dict[str, set[str]] = {}
    for sid, vals in rows:
        sigs.setdefault(sid[0], set()).update(k[1:] for k, (v, _) in vals.items() if v)
    return {s: [t + o for o in sorted(v) for t in "CLDS"] for s, v in sorted(sigs.items())}


class Rinex3Writer:
    """Header first (needs the obs types of the whole span), then epochs; written atomically."""

    def __init__(self, path: str | Path, position: Sequence[float], *, marker: str = "VRS",
                 comments: Sequence[str] = (), interval: float | None = None):
        self.path = Path(path)
        self.position = np.asarray(position, dtype=float)
        self.marker = marker
        self.comments = list(comments)
        self.interval = interval
        self.epochs: list[tuple[list[float], list]] = []

    def add(self, t, records: list) -> None:
        """Values are copied now: the records may be reused by their owner afterwards."""
        self.epochs.append((_epoch_fields(t), [record_values(r) for r in records]))

    def _header(self, types: dict[str, list[str]]) -> str:
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d %H%M%S UTC")
        sysch = "M" if len(types) != 1 else next(iter(types))
        h = [_line(f"{'3.04':>9}{'':11}{'OBSERVATION DATA':<20}{sysch:<20}", "RINEX VERSION / TYPE"),
             _line(f"{'mapsvc vrs':<20}{'mapsvc':<20}{now:<20}", "PGM / RUN BY / DATE")]
        h += [_line(c, "COMMENT") for c in self.comments]
        h += [_line(self.marker, "MARKER NAME"), _line("NON_PHYSICAL", "MARKER TYPE"),
              _line(f"{'':20}{'mapsvc network':<40}", "OBSERVER / AGENCY"),
              _line(f"{'':20}{'VIRTUAL':<20}{'':20}", "REC # / TYPE / VERS"),
              _line("", "ANT # / TYPE"),  # null antenna: no type, no offsets
              _line("".join(f"{v:14.4f}" for v in self.position), "APPROX POSITION XYZ"),
              _line("".join(f"{0.0:14.4f}" for _ in range(3)), "ANTENNA: DELTA H/E/N")]
        for sys, codes in types.items():
            for i in range(0, len(codes), 13):
                head = f"{sys}  {len(codes):3d}" if i == 0 else " " * 6
                h.append(_line(head + "".join(f" {c}" for c in codes[i:i + 13]), "SYS / # / OBS TYPES"))
        if self.interval:
            h.append(_line(f"{self.interval:10.3f}", "INTERVAL"))
        if self.epochs:
            ep = self.epochs[0][0]
            h.append(_line(f"{int(ep[0]):6d}{int(ep[1]):6d}{int(ep[2]):6d}{int(ep[3]):6d}{int(ep[4]):6d}"
                           f"{ep[5]:13.7f}     GPS", "TIME OF FIRST OBS"))
        h.append(_line("", "END OF HEADER"))
        return "".join(h)

    def _epoch(self, ep: list[float], rows: list, types: dict[str, list[str]]) -> str:
        out = [f"> {int(ep[0]):4d} {int(ep[1]):02d} {int(ep[2]):02d} {int(ep[3]):02d} {int(ep[4]):02d}"
               f"{ep[5]:11.7f}  0{len(rows):3d}\n"]
        for sid, vals in sorted(rows):
            cells = []
            for c in types[sid[0]]:
                v, lli = vals.get(c, (0.0, 0))
                if v == 0.0 or not np.isfinite(v) or abs(v) >= 1e10:
                    cells.append(" " * 16)
                else:
                    cells.append(f"{v:14.3f}{lli if lli else ' '} ")
            out.append(sid + "".join(cells).rstrip() + "\n")
        return "".join(out)

    def close(self) -> Path:
        types = obs_types(r for _, rows in self.epochs for r in rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".vrs-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(self._header(types))
                for ep, rows in self.epochs:
                    if rows:
                        fh.write(self._epoch(ep, rows, types))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.path


__all__ = ["Rinex3Writer", "obs_types", "CLIGHT"]
