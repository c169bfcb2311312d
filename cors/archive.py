"""The RINEX archive: a bus consumer that keeps each station's data as hourly RINEX 3 files for surveyors.

Per station and GPS-time hour of the observation epoch they belong to (read from each observation message's
header, not the time they were received: a late epoch still goes in its own hour, and hours are GPS time, as
RINEX files are), the RTCM frames from the bus are appended to ``<id>/<YYYY>/<DDD>/<hour>.rtcm3`` (fsynced, with a sidecar recording the byte length and last stream entry, so a restart truncates
a torn append and skips what it already holds; entries are acknowledged only after that). A finished hour is
converted by RTKLIB itself (pyrtklib ``convrnx``, the function behind ``convbin``) to RINEX 3.04 observations and
mixed navigation, the observations Hatanaka-compressed (``hatanaka``), both gzipped, under the standard long
names, e.g. ``GMSD00XXX_S_20121014000_01H_01S_MO.crx.gz`` and ``..._01H_MN.rnx.gz``.

Why the RTCM hour is kept, not decoded here: RTKLIB's RTCM decoder needs an approximate time for the GPS
week, and converting a whole hour in one pass gives exactly what ``convbin`` gives for the same bytes.
"""
from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import os
import re
from pathlib import Path

from cors.errors import CorsError
from cors.monitor import TOW_FIELD, WEEK_S, constellation, gps_seconds, message_number

log = logging.getLogger("cors.archive")
GPS_EPOCH = dt.datetime(1980, 1, 6)

RINEX_NAME = re.compile(r"^[A-Z0-9]{9}_[RSU]_\d{11}_01H_(\d{2}[SMHD]_MO\.crx|MN\.rnx)\.gz$")


def station_code(station_id: str, country: str = "XXX") -> str:
    """RINEX 3 nine-character station name: 4-char marker, monument 0, receiver 0, ISO country."""
    marker = re.sub(r"[^A-Z0-9]", "", station_id.upper())[:4].ljust(4, "0")
    return f"{marker}00{(country or 'XXX').upper()[:3]}"


def long_name(code: str, start: dt.datetime, kind: str, interval_s: float | None = None) -> str:
    stamp = start.strftime("%Y%j%H%M")
    if kind == "obs":
        iv = int(round(interval_s or 1))
        freq = f"{iv:02d}S" if iv < 60 else f"{iv // 60:02d}M"
        return f"{code}_S_{stamp}_01H_{freq}_MO.crx.gz"
    return f"{code}_S_{stamp}_01H_MN.rnx.gz"


def convrnx_options(trtcm: dt.datetime, station: str):
    """RTKLIB RINEX options as ``convbin`` sets them by default (RINEX 3.04, code + phase, every system,
    every frequency and signal)."""
    import pyrtklib as rtk

    opt = rtk.rnxopt_t()
    opt.rnxver = 304
    opt.navsys = rtk.SYS_ALL
    opt.obstype = rtk.OBSTYPE_PR | rtk.OBSTYPE_CP
    opt.freqtype = 255
    for i in range(7):
        for j in range(64):
            opt.mask[i, j] = "1"
    opt.ttol = 0.005
    e = trtcm
    ep = rtk.Arr1Ddouble(6)
    for i, v in enumerate((e.year, e.month, e.day, e.hour, e.minute, e.second)):
        ep[i] = float(v)
    opt.trtcm = rtk.epoch2time(ep)
    for i, ch in enumerate("mapsvc archive"):
        opt.prog[i] = ch
    for i, ch in enumerate(station[:31]):
        opt.marker[i] = ch
    return opt


def rtcm_to_rinex(rtcm: Path, obs: Path, nav: Path, trtcm: dt.datetime, station: str = "") -> None:
    """One RTCM 3 file to RINEX 3.04 obs + mixed nav with RTKLIB (what ``convbin -r rtcm3 -tr`` does)."""
    import pyrtklib as rtk

    files = [str(obs), str(nav)] + [""] * 7
    n = rtk.convrnx(rtk.STRFMT_RTCM3, convrnx_options(trtcm, station), str(rtcm), files)
    if n <= 0 or not obs.exists():
        raise CorsError(f"{rtcm}: RTKLIB found no observations to convert")


def obs_interval(obs_text: str) -> float:
    """Median spacing of a RINEX 3 observation file's epochs (for its name)."""
    import numpy as np

    t = []
    for line in obs_text.splitlines():
        if line.startswith(">"):
            y, mo, d, h, mi = (int(v) for v in line[2:].split()[:5])
            s = float(line[2:].split()[5])
            t.append(dt.datetime(y, mo, d, h, mi).timestamp() + s)
    return float(np.median(np.diff(t))) if len(t) > 1 else 1.0


def frames_of(payload: bytes) -> list[bytes]:
    """The RTCM frames of a bus entry (complete CRC-checked frames, back to back)."""
    out, pos = [], 0
    while pos + 3 <= len(payload):
        end = pos + 6 + (((payload[pos + 1] & 0x03) << 8) | payload[pos + 2])
        out.append(payload[pos:end])
        pos = end
    return out


def epoch_gpst(frame: bytes, received: float) -> float | None:
    """GPS seconds (since 1980-01-06) of the observation epoch a frame carries, or None for a frame without a
    time-of-week epoch (station, ephemeris and GLONASS messages). The week comes from the receive time.

    Why not pyrtcm: it decodes a whole MSM (cells, signals) to reach the 30-bit epoch field that follows the
    message number and station id in every GPS/Galileo/QZSS/BeiDou observation message (RTCM 10403.3 DF004,
    DF248, DF428, DF427)."""
    if len(frame) < 13:
        return None
    tow = TOW_FIELD.get(constellation(message_number(frame)))
    if tow is None:
        return None
    ms = (int.from_bytes(frame[3:10], "big") >> 2) & ((1 << 30) - 1)
    tow_s = ms / 1000.0 + tow[1]
    approx = gps_seconds(received)
    return round((approx - tow_s) / WEEK_S) * WEEK_S + tow_s


def gps_hour(gpst: float) -> dt.datetime:
    return GPS_EPOCH + dt.timedelta(seconds=(gpst // 3600) * 3600)


class Archive:
    """Files of the archive under ``root``; ``listing(id)`` / ``path(id, name)`` serve them over HTTP."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def hour_dir(self, station_id: str, hour: dt.datetime) -> Path:
        return self.root / station_id / f"{hour:%Y}" / f"{hour:%j}"

    # -- writing -------------------------------------------------------------------------------------
    def append(self, station_id: str, hour: dt.datetime, data: bytes, entry_id: str) -> bool:
        """Append one bus entry to its hour's RTCM file; False if the file already holds it."""
        d = self.hour_dir(station_id, hour)
        d.mkdir(parents=True, exist_ok=True)
        raw, side = d / f"{hour:%H}.rtcm3", d / f"{hour:%H}.rtcm3.json"
        state = json.loads(side.read_text()) if side.exists() else {"bytes": 0, "last": "0-0"}
        if _id(entry_id) <= _id(state["last"]):
            return False
        with open(raw, "ab") as f:
            f.truncate(state["bytes"])  # drop a torn append from before a crash
            f.seek(state["bytes"])
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        tmp = side.with_suffix(".tmp")
        tmp.write_text(json.dumps({"bytes": size, "last": entry_id, "hour": hour.isoformat()}))
        os.replace(tmp, side)
        return True

    def finish(self, station_id: str, hour: dt.datetime, country: str = "XXX") -> list[Path]:
        """Convert a finished hour to RINEX (Hatanaka + gzip, long names); returns the files written."""
        import hatanaka

        from lanelets.files import write_atomic

        d = self.hour_dir(station_id, hour)
        raw = d / f"{hour:%H}.rtcm3"
        if not raw.exists():
            return []
        obs, nav = d / f"{hour:%H}.obs.tmp", d / f"{hour:%H}.nav.tmp"
        code = station_code(station_id, country)
        try:
            rtcm_to_rinex(raw, obs, nav, hour, code)
            text = obs.read_bytes()
            out = [d / long_name(code, hour, "obs", obs_interval(text.decode("ascii", "replace")))]
            write_atomic(out[0], hatanaka.compress(text, compression="gz"), mode=0o644)
            if nav.exists() and nav.stat().st_size:
                out.append(d / long_name(code, hour, "nav"))
                write_atomic(out[1], gzip.compress(nav.read_bytes(), mtime=0), mode=0o644)
        finally:
            obs.unlink(missing_ok=True)
            nav.unlink(missing_ok=True)
        return out

    # -- reading -------------------------------------------------------------------------------------
    def listing(self, station_id: str) -> list[dict]:
        base = self.root / station_id
        if not base.is_dir():
            return []
        return [{"name": p.name, "bytes": p.stat().st_size}
                for p in sorted(base.glob("*/*/*.gz")) if RINEX_NAME.match(p.name)]

    def path(self, station_id: str, name: str) -> Path:
        if not RINEX_NAME.match(name):
            raise CorsError(f"{name!r} is not a RINEX file name of this archive")
        hits = list((self.root / station_id).glob(f"*/*/{name}"))
        if not hits:
            raise CorsError(f"station {station_id!r} has no {name}")
        return hits[0]


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Archiver:
    """The bus consumer: entries -> hourly RTCM -> RINEX once the hour is over (``grace_s`` after it)."""

    def __init__(self, bus_url: str, root, stations, group: str = "rinex-archive", name: str = "1",
                 grace_s: float = 120.0, countries: dict | None = None):
        from cors.bus import StreamConsumer

        self.archive = Archive(root)
        self.stations = stations      # station id by mountpoint
        self.consumer = StreamConsumer(bus_url, group, name)
        self.grace_s = grace_s
        self.countries = countries or {}
        self.open_hours: set[tuple[str, dt.datetime]] = set()
        self._hour: dict[str, dt.datetime] = {}  # per station: the hour of its latest observation epoch

    def by_hour(self, sid: str, data: bytes, received: float) -> list[tuple[dt.datetime, bytes]]:
        """An entry's frames grouped by the GPS hour of their epoch; a frame without an epoch (1005, 1019,
        GLONASS...) goes with the station's latest epoch (before its first one: the receive time's hour)."""
        groups: list[tuple[dt.datetime, list[bytes]]] = []
        for frame in frames_of(data):
            t = epoch_gpst(frame, received)
            if t is not None:
                self._hour[sid] = gps_hour(t)
            hour = self._hour.get(sid) or gps_hour(gps_seconds(received))
            if groups and groups[-1][0] == hour:
                groups[-1][1].append(frame)
            else:
                groups.append((hour, [frame]))
        return [(h, b"".join(f)) for h, f in groups]

    def step(self, block_ms: int | None = 1000, now: float | None = None) -> int:
        entries = self.consumer.read(list(self.stations), block_ms=block_ms)
        for e in entries:
            sid = self.stations[e.mountpoint]
            # an entry split over two hours is recorded in both files under its id: a replay skips each part
            for hour, data in self.by_hour(sid, e.data, e.received):
                self.archive.append(sid, hour, data, e.id)
                self.open_hours.add((sid, hour))
        if entries:
            self.consumer.ack(entries)
        self.close_hours(now)
        return len(entries)

    def close_hours(self, now: float | None = None) -> list[Path]:
        import time

        now = time.time() if now is None else now
        now_gps = gps_seconds(now)
        done = []
        for sid, hour in sorted(self.open_hours):
            end = (hour - GPS_EPOCH).total_seconds() + 3600 + self.grace_s
            if now_gps >= end:
                done += self.archive.finish(sid, hour, self.countries.get(sid, "XXX"))
                self.open_hours.discard((sid, hour))
        return done
