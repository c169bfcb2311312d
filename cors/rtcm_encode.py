"""RINEX observations -> RTCM 3 frames, encoded by RTKLIB itself (pyrtklib ``gen_rtcm3``).

No bit packing here: RTKLIB's encoder writes every frame; we only decide which message goes out
when (the schedule of a CORS mountpoint) and check each frame with pyrtcm (CRC and type).

Schedule per epoch (times are the file's own GNSS times):
  1006 (ARP + antenna height), 1033 (receiver/antenna descriptors), 1230 if GLONASS is present:
  every 10 s; MSM4/MSM7 for every constellation in the file, at the file's rate;
  ephemerides 1019/1020/1042/1044/1045/1046: every 60 s, the broadcast set valid at that epoch.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyrtklib as rtk
from pyrtcm import RTCMReader
from pyrtcm.rtcmtypes_core import VALCKSUM

from cors.errors import CorsError

# RTKLIB navigation-system bits (rtklib.h SYS_*).
SYS_GPS, SYS_SBS, SYS_GLO, SYS_GAL, SYS_QZS, SYS_CMP, SYS_IRN = 1, 2, 4, 8, 16, 32, 64
SYS_NAME = {SYS_GPS: "GPS", SYS_SBS: "SBS", SYS_GLO: "GLO", SYS_GAL: "GAL", SYS_QZS: "QZS",
            SYS_CMP: "BDS", SYS_IRN: "IRN"}

# MSM message number = base + 4 (MSM4) or + 7 (MSM7); order = order inside an epoch.
MSM_BASE = {SYS_GPS: 1070, SYS_GLO: 1080, SYS_GAL: 1090, SYS_SBS: 1100, SYS_QZS: 1110,
            SYS_CMP: 1120}
# Broadcast ephemeris message per system; Galileo picks F/NAV (1045) or I/NAV (1046) per record.
EPH_TYPE = {SYS_GPS: 1019, SYS_GLO: 1020, SYS_CMP: 1042, SYS_QZS: 1044}
GAL_FNAV, GAL_INAV = 1045, 1046
# How far from toe an ephemeris is still broadcast (s), as RTKLIB's MAXDTOE* in ephemeris.c.
MAX_DTOE = {SYS_GPS: 7200.0, SYS_QZS: 7200.0, SYS_GAL: 14400.0, SYS_CMP: 21600.0,
            SYS_GLO: 1800.0}

STATION_INTERVAL = 10.0  # s, 1006 / 1033 / 1230
EPH_INTERVAL = 60.0  # s, ephemerides
_EPS = 1e-3


@dataclass(frozen=True)
class Frame:
    msg_type: int
    raw: bytes


@dataclass
class EncodedEpoch:
    """All frames of one observation epoch; ``gpst`` = GPS time in seconds (RTKLIB gtime_t scale)."""

    gpst: float
    frames: list[Frame] = field(default_factory=list)

    @property
    def raw(self) -> bytes:
        return b"".join(f.raw for f in self.frames)


def gtime_seconds(t) -> float:
    return float(t.time) + float(t.sec)


def satsys(sat: int) -> tuple[int, int]:
    prn = rtk.Arr1Dint(1)
    sys = rtk.satsys(sat, prn)
    return sys, prn[0]


def check_frame(raw: bytes, msg_type: int) -> None:
    """pyrtcm must parse the frame with a good CRC-24Q and see the intended message number."""
    try:
        parsed = RTCMReader.parse(raw, validate=VALCKSUM)
    except Exception as exc:  # pyrtcm raises its own error types
        raise CorsError(f"RTCM {msg_type}: frame does not decode with pyrtcm: {exc}") from exc
    if str(parsed.identity) != str(msg_type):
        raise CorsError(f"RTCM {msg_type}: pyrtcm decodes it as {parsed.identity}")


@dataclass
class RinexSource:
    """A RINEX observation file (+ navigation files) as read by RTKLIB's readrnx."""

    obs_path: Path
    nav_paths: tuple[Path, ...]
    obs: object
    nav: object
    sta: object
    epochs: list[tuple[int, int]]  # [start, end) record ranges of obs.data, one per epoch
    systems: tuple[int, ...]

    @property
    def header_ecef(self) -> tuple[float, float, float]:
        return tuple(float(self.sta.pos[i]) for i in range(3))  # type: ignore[return-value]

    @property
    def antenna_height(self) -> float:
        return float(self.sta.hgt) if self.sta.deltype else _sta_delta(self.sta)[2]


def read_rinex(obs_path: str | Path, nav_paths: Sequence[str | Path] = ()) -> RinexSource:
    obs_path = Path(obs_path)
    if not obs_path.is_file():
        raise CorsError(f"{obs_path}: no such RINEX observation file")
    obs, nav, sta = rtk.obs_t(), rtk.nav_t(), rtk.sta_t()
    if rtk.readrnx(str(obs_path), 1, "", obs, nav, sta) <= 0 or obs.n <= 0:
        raise CorsError(f"{obs_path}: not a RINEX observation file RTKLIB can read")
    navs = tuple(Path(n) for n in nav_paths if n)
    for nav_path in navs:
        if not nav_path.is_file():
            raise CorsError(f"{nav_path}: no such RINEX navigation file")
        if rtk.readrnx(str(nav_path), 0, "", rtk.obs_t(), nav, rtk.sta_t()) <= 0:
            raise CorsError(f"{nav_path}: not a RINEX navigation file RTKLIB can read")
    rtk.sortobs(obs)
    rtk.uniqnav(nav)
    epochs: list[tuple[int, int]] = []
    systems: set[int] = set()
    start, prev = 0, None
    for i in range(obs.n):
        rec = obs.data[i]
        key = (rec.time.time, rec.time.sec)
        systems.add(satsys(rec.sat)[0])
        if prev is not None and key != prev:
            epochs.append((start, i))
            start = i
        prev = key
    epochs.append((start, obs.n))
    ordered = tuple(s for s in MSM_BASE if s in systems)
    return RinexSource(obs_path, navs, obs, nav, sta, epochs, ordered)


def _sta_delta(sta) -> list[float]:
    """RTKLIB's sta_t names its antenna delta ``del``, a Python keyword."""
    arr = getattr(sta, "del")
    return [float(arr[i]) for i in range(3)]


class RtcmEncoder:
    """One station's RTKLIB encoder state (lock times, sequence) over a run of epochs."""

    def __init__(self, source: RinexSource, *, station_id: int, ecef: Sequence[float] | None = None,
                 msm: int = 7, antenna_height: float | None = None, check: bool = True):
        if msm not in (4, 7):
            raise CorsError(f"--msm {msm}: only MSM4 and MSM7 are offered")
        if not 0 <= station_id <= 4095:
            raise CorsError(f"station id {station_id}: RTCM station ids are 0..4095")
        self.source = source
        self.msm = msm
        self.check = check
        self.enc = rtk.rtcm_t()
        rtk.init_rtcm(self.enc)
        self.enc.sta = source.sta  # marker, receiver and antenna descriptors for 1033
        self.enc.staid = station_id
        pos = list(ecef) if ecef is not None else list(source.header_ecef)
        if len(pos) != 3 or sum(v * v for v in pos) < 6.0e6**2:
            raise CorsError(f"{source.obs_path}: station ECEF {pos} is not on the Earth's surface")
        for i in range(3):
            self.enc.sta.pos[i] = float(pos[i])
        delta = _sta_delta(source.sta)
        # 1006 carries the antenna height (ARP above marker); RINEX H/E/N has it as the up delta.
        self.enc.sta.hgt = float(antenna_height if antenna_height is not None
                                 else (source.sta.hgt if source.sta.deltype else delta[2]))
        self.enc.sta.deltype = 0
        self.msm_types = [MSM_BASE[s] + msm for s in source.systems]
        self.has_glonass = SYS_GLO in source.systems
        self._eph_index = self._index_ephemerides(source.nav)
        self._last_station: float | None = None
        self._last_eph: float | None = None

    # -- ephemerides -------------------------------------------------------------------------
    @staticmethod
    def _index_ephemerides(nav) -> dict[tuple[int, int], list[tuple[float, object]]]:
        """(sat, message type) -> [(toe seconds, record)]: the broadcast sets we can re-send."""
        index: dict[tuple[int, int], list[tuple[float, object]]] = {}
        for i in range(nav.n):
            eph = nav.eph[i]
            sys, _ = satsys(eph.sat)
            if sys == SYS_GAL:
                msg = GAL_FNAV if eph.code & 0x2 else GAL_INAV
            elif sys in EPH_TYPE:
                msg = EPH_TYPE[sys]
            else:
                continue
            index.setdefault((eph.sat, msg), []).append((gtime_seconds(eph.toe), eph))
        for i in range(nav.ng):
            geph = nav.geph[i]
            index.setdefault((geph.sat, 1020), []).append((gtime_seconds(geph.toe), geph))
        return index

    def _ephemeris_frames(self, t: float) -> list[Frame]:
        frames = []
        for (sat, msg), candidates in sorted(self._eph_index.items()):
            sys, prn = satsys(sat)
            toe, rec = min(candidates, key=lambda c: abs(c[0] - t))
            if abs(toe - t) > MAX_DTOE.get(sys, 7200.0):
                continue
            self.enc.ephsat = sat
            if msg == 1020:
                self.enc.nav.geph[prn - 1] = rec
            else:
                self.enc.nav.eph[sat - 1] = rec
            frame = self._gen(msg, 0)
            if frame is not None:
                frames.append(frame)
        return frames

    # -- one epoch -------------------------------------------------------------------------
    def _gen(self, msg_type: int, sync: int) -> Frame | None:
        if not rtk.gen_rtcm3(self.enc, msg_type, 0, sync):
            return None
        buff = self.enc.buff
        # Element-wise copy: the binding exposes the C buffer only per byte (~1 kB per epoch).
        raw = bytes(buff[i] for i in range(self.enc.nbyte))
        if self.check:
            check_frame(raw, msg_type)
        return Frame(msg_type, raw)

    def station_frames(self) -> list[Frame]:
        """1006, 1033 (and 1230): what a station sends first on a new connection."""
        station = [1006, 1033] + ([1230] if self.has_glonass else [])
        return [f for f in (self._gen(m, 0) for m in station) if f is not None]

    def encode_epoch(self, start: int, end: int) -> EncodedEpoch:
        obs = self.source.obs
        t0 = obs.data[start].time
        t = gtime_seconds(t0)
        n = min(end - start, rtk.MAXOBS)
        for k in range(n):
            self.enc.obs.data[k] = obs.data[start + k]
        self.enc.obs.n = n
        self.enc.time = t0
        out = EncodedEpoch(t)
        if self._last_eph is None or t - self._last_eph >= EPH_INTERVAL - _EPS:
            # load GLONASS ephemerides before MSM: the encoder needs their frequency channels
            eph_frames = self._ephemeris_frames(t)
            self._last_eph = t
        else:
            eph_frames = []
        if self._last_station is None or t - self._last_station >= STATION_INTERVAL - _EPS:
            out.frames.extend(self.station_frames())
            self._last_station = t
        present = {satsys(obs.data[start + k].sat)[0] for k in range(n)}
        msm = [MSM_BASE[s] + self.msm for s in self.source.systems if s in present]
        for i, msg in enumerate(msm):
            frame = self._gen(msg, 1 if i < len(msm) - 1 else 0)  # multiple-message bit
            if frame is not None:
                out.frames.append(frame)
        out.frames.extend(eph_frames)
        self.enc.time = t0
        return out

    def close(self) -> None:
        rtk.free_rtcm(self.enc)


def encode_rinex(obs_path: str | Path, nav_paths: Sequence[str | Path] = (), *,
                 station_id: int = 0, ecef: Sequence[float] | None = None, msm: int = 7,
                 antenna_height: float | None = None, check: bool = True,
                 source: RinexSource | None = None) -> Iterator[EncodedEpoch]:
    """Every epoch of the file as RTCM 3 frames (RTKLIB encoder), in file order."""
    source = source or read_rinex(obs_path, nav_paths)
    encoder = RtcmEncoder(source, station_id=station_id, ecef=ecef, msm=msm,
                          antenna_height=antenna_height, check=check)
    try:
        for start, end in source.epochs:
            yield encoder.encode_epoch(start, end)
    finally:
        encoder.close()
