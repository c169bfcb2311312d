"""Ingest monitoring: every RTCM 3 frame CRC-checked and decoded with pyrtcm, per-station health.

``Monitor.observe(station_id, frame)`` is called by the caster for every complete frame a source
delivers. It keeps per station: message types with counts and rates, satellites per constellation
(from MSM headers), age and latency, epoch gaps, bad frames, and an up/down state (down after a
silence timeout). ``Monitor.status()`` is the JSON for ``GET /v1/stations``; ``metrics_text()`` the
Prometheus exposition (own registry, not the process-global one).
"""
from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pyrtcm import VALCKSUM, VALNONE, RTCMReader
from pyrtcm.exceptions import RTCMMessageError, RTCMParseError, RTCMStreamError, RTCMTypeError

from cors.ntrip import crc24q

MAX_FRAME = 3 + 1023 + 3  # header + max payload + CRC-24Q
MIN_PAYLOAD = 2  # the 12-bit message number: a shorter frame carries no message

# MSM message number ranges -> constellation (RTCM 10403.3 table 3.5-78); legacy observation types.
MSM_RANGES = {
    range(1071, 1078): "GPS", range(1081, 1088): "GLO", range(1091, 1098): "GAL",
    range(1101, 1108): "SBS", range(1111, 1118): "QZS", range(1121, 1128): "BDS",
    range(1131, 1138): "IRN",
}
LEGACY_OBS = {1001: "GPS", 1002: "GPS", 1003: "GPS", 1004: "GPS",
              1009: "GLO", 1010: "GLO", 1011: "GLO", 1012: "GLO"}
# Where each observation message keeps its satellite count and its multiple-message/sync flag.
LEGACY_NSAT = {"GPS": "DF006", "GLO": "DF035"}
LEGACY_SYNC = {"GPS": "DF005", "GLO": "DF039"}
# Epoch time-of-week field (ms) per constellation, and its offset to GPS time (s).
TOW_FIELD = {"GPS": ("DF004", 0.0), "GAL": ("DF248", 0.0), "QZS": ("DF428", 0.0), "BDS": ("DF427", 14.0)}
GPS_EPOCH_UNIX = 315964800
GPS_LEAP_SECONDS = 18
WEEK_S = 604800.0


def message_number(frame: bytes) -> int:
    """The 12-bit message number of a whole RTCM 3 frame (0 for one too short to carry it)."""
    return (frame[3] << 4) | (frame[4] >> 4) if len(frame) > 5 else 0


def constellation(msg_type: int) -> str | None:
    for rng, name in MSM_RANGES.items():
        if msg_type in rng:
            return name
    return LEGACY_OBS.get(msg_type)


class RtcmFramer:
    """Splits an arbitrary byte stream into CRC-valid RTCM 3 frames (0xD3, 10-bit length, CRC-24Q).

    Hand-written because pyrtcm's RTCMReader pulls from a blocking stream while NTRIP data arrive in
    arbitrary TCP chunks inside an event loop; full decoding is left to pyrtcm. A candidate whose
    CRC fails is counted once as a bad frame and the search resumes one byte later, so a false
    preamble (joining mid-stream, line noise) never swallows the real frames behind it. A CRC-valid
    frame too short to hold a message number is counted as bad and dropped: rovers never get it.
    """

    __slots__ = ("_buf", "junk_bytes", "bad_frames", "_resync")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.junk_bytes = 0
        self.bad_frames = 0
        self._resync = False  # inside a corrupted stretch: count its CRC failures once

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        frames = []
        pos = 0
        n = len(buf)
        while True:
            start = buf.find(0xD3, pos)
            if start < 0:
                self.junk_bytes += n - pos
                pos = n
                break
            self.junk_bytes += start - pos
            if n - start < 3:
                pos = start
                break
            if buf[start + 1] & 0xFC:  # 6 reserved bits must be zero: not a frame start
                self.junk_bytes += 1
                pos = start + 1
                continue
            length = ((buf[start + 1] & 0x03) << 8) | buf[start + 2]
            end = start + 3 + length + 3
            if end > n:
                pos = start
                break
            if crc24q(buf[start:end - 3]) == int.from_bytes(buf[end - 3:end], "big"):
                self._resync = False
                pos = end
                if length < MIN_PAYLOAD:
                    self.bad_frames += 1
                    continue
                frames.append(bytes(buf[start:end]))
            else:
                if not self._resync:
                    self.bad_frames += 1
                    self._resync = True
                self.junk_bytes += 1
                pos = start + 1
        del buf[:pos]
        return frames

    def pending(self) -> int:
        return len(self._buf)


def gps_seconds(unix: float) -> float:
    """GPS time (seconds since 1980-01-06) of a Unix time, with today's leap seconds."""
    return unix - GPS_EPOCH_UNIX + GPS_LEAP_SECONDS


def gps_now(now_unix: float | None = None) -> float:
    """Seconds of the current GPS week."""
    return gps_seconds(time.time() if now_unix is None else now_unix) % WEEK_S


@dataclass
class TypeStats:
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    bytes: int = 0

    def interval(self) -> float | None:
        return (self.last - self.first) / (self.count - 1) if self.count > 1 else None


@dataclass
class StationState:
    station_id: str
    mountpoint: str = ""
    frames: int = 0
    bad_frames: int = 0
    undecoded: int = 0
    bytes: int = 0
    first_frame: float | None = None
    last_frame: float | None = None
    last_frame_wall: float | None = None
    up: bool = False
    downs: int = 0
    types: dict = field(default_factory=dict)          # msg type -> TypeStats
    satellites: dict = field(default_factory=dict)     # constellation -> sorted PRNs of last MSM
    epoch_arrivals: deque = field(default_factory=lambda: deque(maxlen=64))
    epochs: int = 0
    gaps: int = 0
    missing_epochs: int = 0
    longest_gap_s: float = 0.0
    latency_s: float | None = None
    station_rtcm_id: int | None = None
    recent: deque = field(default_factory=lambda: deque(maxlen=256))  # (t, nbytes) for the bitrate


class Monitor:
    """Per-station stream health, fed by the caster; thread-safe enough for read-only status calls."""

    def __init__(self, down_after: float = 10.0, clock=time.monotonic):
        self.down_after = float(down_after)
        self.clock = clock
        self.stations: dict[str, StationState] = {}
        self.extra_collectors: list = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_MonitorCollector(self))

    # -- feeding -----------------------------------------------------------------------------------
    def track(self, station_id: str, mountpoint: str = "") -> StationState:
        st = self.stations.get(station_id)
        if st is None:
            st = self.stations[station_id] = StationState(station_id, mountpoint)
        elif mountpoint:
            st.mountpoint = mountpoint
        return st

    def forget(self, station_id: str) -> None:
        self.stations.pop(station_id, None)

    def observe(self, station_id: str, frame: bytes, now: float | None = None, crc_checked: bool = False,
                decode: bool = True):
        """Check and decode one frame; returns the pyrtcm message (True if undecodable), None if bad.

        ``crc_checked``: the caster already verified the CRC-24Q on its forwarding path. Without
        ``decode`` (a source over its decode budget) the frame is only counted by type.
        """
        now = self.clock() if now is None else now
        st = self.track(station_id)
        if len(frame) < 6 + MIN_PAYLOAD:
            st.bad_frames += 1
            return None
        try:
            msg = RTCMReader.parse(frame, validate=VALNONE if crc_checked else VALCKSUM) if decode else None
        except (RTCMParseError, RTCMStreamError):
            st.bad_frames += 1
            return None
        except (RTCMMessageError, RTCMTypeError, ValueError, IndexError, KeyError):
            # CRC fine but pyrtcm cannot decode the content (e.g. an unknown proprietary type)
            msg = None
            st.undecoded += 1
        st.frames += 1
        st.bytes += len(frame)
        st.recent.append((now, len(frame)))
        if st.first_frame is None:
            st.first_frame = now
        st.last_frame = now
        st.last_frame_wall = time.time()
        msg_type = message_number(frame)
        ts = st.types.get(msg_type)
        if ts is None:
            ts = st.types[msg_type] = TypeStats(first=now)
        ts.count += 1
        ts.last = now
        ts.bytes += len(frame)
        if msg is not None:
            self._observation(st, msg_type, msg, now)
        if not st.up:
            st.up = True
        return msg if msg is not None else True

    def _observation(self, st: StationState, msg_type: int, msg, now: float) -> None:
        sys_ = constellation(msg_type)
        if sys_ is None:
            if msg_type in (1005, 1006):
                st.station_rtcm_id = getattr(msg, "DF003", None)
            return
        if msg_type in LEGACY_OBS:
            nsat = getattr(msg, LEGACY_NSAT[sys_], 0)
            prns = sorted({v for k, v in vars(msg).items() if k.startswith(("DF009_", "DF038_"))})
            more = getattr(msg, LEGACY_SYNC[sys_], 0)
        else:
            nsat = getattr(msg, "NSat", 0)
            prns = sorted(int(v) for k, v in vars(msg).items() if k.startswith("PRN_"))
            more = getattr(msg, "DF393", 0)
        st.satellites[sys_] = prns if prns else list(range(nsat))
        st.station_rtcm_id = getattr(msg, "DF003", st.station_rtcm_id)
        tow = TOW_FIELD.get(sys_)
        if tow and hasattr(msg, tow[0]):
            lat = (gps_now() - (getattr(msg, tow[0]) / 1000.0 + tow[1])) % WEEK_S
            st.latency_s = lat - WEEK_S if lat > WEEK_S / 2 else lat
        if not more:  # last observation message of this epoch
            self._epoch(st, now)

    @staticmethod
    def _epoch(st: StationState, now: float) -> None:
        arr = st.epoch_arrivals
        if arr:
            step = now - arr[-1]
            if len(arr) >= 4:
                typical = statistics.median(b - a for a, b in zip(list(arr)[:-1], list(arr)[1:]))
                if typical > 0 and step > 1.5 * typical:
                    st.gaps += 1
                    st.missing_epochs += max(0, round(step / typical) - 1)
                    st.longest_gap_s = max(st.longest_gap_s, step)
        arr.append(now)
        st.epochs += 1

    # -- health ------------------------------------------------------------------------------------
    def is_up(self, station_id: str, now: float | None = None) -> bool:
        st = self.stations.get(station_id)
        if st is None or st.last_frame is None:
            return False
        now = self.clock() if now is None else now
        return now - st.last_frame <= self.down_after

    def check(self, now: float | None = None) -> list[tuple[str, bool]]:
        """Mark silent stations down; returns the (station_id, up) transitions since the last call."""
        now = self.clock() if now is None else now
        changes = []
        for sid, st in self.stations.items():
            up = st.last_frame is not None and now - st.last_frame <= self.down_after
            if up != st.up:
                st.up = up
                if not up:
                    st.downs += 1
                changes.append((sid, up))
        return changes

    def observed_details(self, station_id: str) -> str:
        """STR format-details from what the station actually sends: ``1077(1),1033(10)``."""
        st = self.stations.get(station_id)
        if st is None:
            return ""
        parts = []
        for t in sorted(st.types):
            iv = st.types[t].interval()
            parts.append(f"{t}({max(1, round(iv))})" if iv else str(t))
        return ",".join(parts)

    def observed_systems(self, station_id: str) -> str:
        st = self.stations.get(station_id)
        return "+".join(sorted(st.satellites)) if st else ""

    def bitrate(self, station_id: str, now: float | None = None, window: float = 30.0) -> int:
        st = self.stations.get(station_id)
        if st is None or not st.recent:
            return 0
        now = self.clock() if now is None else now
        nbytes = sum(n for t, n in st.recent if now - t <= window)
        span = min(window, max(1.0, now - (st.first_frame or now)))
        return int(8 * nbytes / span)

    def station_status(self, station_id: str, now: float | None = None) -> dict:
        st = self.stations.get(station_id)
        if st is None:
            return {"id": station_id, "up": False, "frames": 0}
        now = self.clock() if now is None else now
        types = {}
        for t, ts in sorted(st.types.items()):
            iv = ts.interval()
            types[str(t)] = {"count": ts.count, "interval_s": round(iv, 3) if iv else None,
                             "rate_hz": round(1.0 / iv, 3) if iv else None, "bytes": ts.bytes}
        return {
            "id": st.station_id,
            "mountpoint": st.mountpoint,
            "up": self.is_up(station_id, now),
            "age_s": round(now - st.last_frame, 3) if st.last_frame is not None else None,
            "latency_s": round(st.latency_s, 3) if st.latency_s is not None else None,
            "last_frame_utc": st.last_frame_wall,
            "frames": st.frames,
            "bad_frames": st.bad_frames,
            "undecoded_frames": st.undecoded,
            "bytes": st.bytes,
            "bitrate_bps": self.bitrate(station_id, now),
            "epochs": st.epochs,
            "gaps": st.gaps,
            "missing_epochs": st.missing_epochs,
            "longest_gap_s": round(st.longest_gap_s, 3),
            "downs": st.downs,
            "message_types": types,
            "satellites": {k: len(v) for k, v in sorted(st.satellites.items())},
            "satellite_prns": {k: v for k, v in sorted(st.satellites.items())},
            "rtcm_station_id": st.station_rtcm_id,
        }

    def status(self, now: float | None = None) -> list[dict]:
        now = self.clock() if now is None else now
        return [self.station_status(sid, now) for sid in sorted(self.stations)]

    def metrics_text(self) -> bytes:
        return generate_latest(self.registry)


class _MonitorCollector:
    """Builds the metric families at scrape time from the monitor's state (no double bookkeeping)."""

    def __init__(self, monitor: Monitor):
        self.monitor = monitor

    def collect(self):
        m = self.monitor
        now = m.clock()
        up = GaugeMetricFamily("cors_station_up", "1 if the station sent data within the silence timeout",
                               labels=["station"])
        age = GaugeMetricFamily("cors_station_age_seconds", "Seconds since the last frame", labels=["station"])
        frames = CounterMetricFamily("cors_frames", "CRC-valid RTCM frames received", labels=["station", "type"])
        bad = CounterMetricFamily("cors_bad_frames", "Frames failing the CRC-24Q check", labels=["station"])
        nbytes = CounterMetricFamily("cors_received_bytes", "Bytes of valid frames received", labels=["station"])
        gaps = CounterMetricFamily("cors_epoch_gaps", "Observation epoch gaps", labels=["station"])
        sats = GaugeMetricFamily("cors_satellites", "Satellites in the last MSM per constellation",
                                 labels=["station", "constellation"])
        lat = GaugeMetricFamily("cors_latency_seconds", "Wall clock minus the epoch time of the last MSM",
                                labels=["station"])
        for sid, st in list(m.stations.items()):
            up.add_metric([sid], 1.0 if m.is_up(sid, now) else 0.0)
            if st.last_frame is not None:
                age.add_metric([sid], now - st.last_frame)
            for t, ts in list(st.types.items()):
                frames.add_metric([sid, str(t)], ts.count)
            bad.add_metric([sid], st.bad_frames)
            nbytes.add_metric([sid], st.bytes)
            gaps.add_metric([sid], st.gaps)
            for sys_, prns in list(st.satellites.items()):
                sats.add_metric([sid, sys_], len(prns))
            if st.latency_s is not None:
                lat.add_metric([sid], st.latency_s)
        yield from (up, age, frames, bad, nbytes, gaps, sats, lat)
        for extra in m.extra_collectors:
            yield from extra()
