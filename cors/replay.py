"""Replay a RINEX observation file as a live reference station: RTCM 3 pushed to any NTRIP caster.

``iter_rtcm_frames`` is the paced frame source (also used by the caster for ``rinex:`` sources);
``replay`` pushes it with NTRIP 1.0 ``SOURCE`` or NTRIP 2.0 ``POST`` (or raw TCP / a file), and
reconnects with a back-off of at least 10 s, as public casters demand.

The upload request, reply parsing and back-off come from ``cors.ntrip`` (the kept Python NTRIP
code, pygnssutils, has a client for downloads only, threaded).
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cors import ntrip
from cors.errors import CorsError
from cors.rtcm_encode import EncodedEpoch, RinexSource, RtcmEncoder, read_rinex

AGENT = "NTRIP mapsvc-replay/0.1"
Target = ntrip.NtripURL  # where frames go: ntrip://ID:PASSWORD@HOST:PORT/MOUNT, tcp://HOST:PORT or file:PATH


def parse_target(url: str) -> Target:
    return ntrip.parse_url(url, schemes=("ntrip", "tcp", "file"), what="--to")


# --- paced frames ---------------------------------------------------------------------------------

@dataclass
class ReplayConfig:
    obs: str | Path
    nav: Sequence[str | Path] = ()
    ecef: Sequence[float] | None = None
    speed: float = 1.0
    loop: bool = False
    msm: int = 7
    station_id: int = 0
    antenna_height: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.nav, (str, Path)):
            self.nav = (self.nav,)
        if not self.speed or self.speed <= 0:
            raise CorsError(f"--speed {self.speed}: must be > 0")


async def paced_epochs(cfg: ReplayConfig, source: RinexSource | None = None
                       ) -> AsyncIterator[tuple[float, EncodedEpoch]]:
    """(due wall time, epoch) at the file's rate divided by ``speed``; epochs keep their GNSS time.

    With ``loop`` the file starts again (fresh encoder state: lock times restart) right after its
    last epoch plus one interval.
    """
    if source is None:
        source = await asyncio.to_thread(read_rinex, cfg.obs, cfg.nav)
    if cfg.ecef is None:
        raise CorsError(f"{cfg.obs}: no station ECEF (give --ecef or register the station)")
    start = time.monotonic()
    offset = 0.0  # GNSS seconds already played in earlier loops
    while True:
        encoder = RtcmEncoder(source, station_id=cfg.station_id, ecef=cfg.ecef, msm=cfg.msm,
                              antenna_height=cfg.antenna_height)
        try:
            t0 = last = None
            for start_i, end_i in source.epochs:
                epoch = encoder.encode_epoch(start_i, end_i)
                if t0 is None:
                    t0 = epoch.gpst
                due = start + (offset + epoch.gpst - t0) / cfg.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                yield due, epoch
                last = epoch.gpst
        finally:
            encoder.close()
        if not cfg.loop or t0 is None:
            return
        step = (last - t0) / max(len(source.epochs) - 1, 1) if last is not None else 1.0
        offset += (last - t0) + step


async def iter_rtcm_frames(obs, nav, ecef, speed: float = 1.0, loop: bool = False, msm: int = 7,
                           station_id: int = 0, antenna_height: float | None = None
                           ) -> AsyncIterator[bytes]:
    """Complete RTCM 3 frames of a RINEX file, paced like a live station (see ``paced_epochs``).

    Each item is one frame (1006, 1033, 1230, MSM..., ephemerides); the frames of one epoch come
    back to back, MSM with the multiple-message bit set on all but the epoch's last MSM.
    """
    cfg = ReplayConfig(obs, nav, ecef, speed, loop, msm, station_id, antenna_height)
    async for _due, epoch in paced_epochs(cfg):
        for frame in epoch.frames:
            yield frame.raw


# --- pushing ---------------------------------------------------------------------------------------

class Rejected(CorsError):
    """The caster answered and refused (bad password, unknown mountpoint): retrying will not help."""


class _Sink:
    async def open(self) -> None: ...
    async def send(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


class _FileSink(_Sink):
    def __init__(self, target: Target):
        self.target = target
        self.fh = None

    async def open(self) -> None:
        self.fh = open(self.target.path, "ab")

    async def send(self, data: bytes) -> None:
        self.fh.write(data)
        self.fh.flush()

    async def close(self) -> None:
        if self.fh:
            self.fh.close()
            self.fh = None


class _TcpSink(_Sink):
    """Raw TCP (e.g. into ``str2str -in tcpsvr://``) or an NTRIP upload (v1 SOURCE / v2 POST)."""

    def __init__(self, target: Target, ntrip_version: int):
        self.target = target
        self.version = ntrip_version
        self.reader = self.writer = None
        self.chunked = False

    async def open(self) -> None:
        t = self.target
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(t.host, t.port), ntrip.HANDSHAKE_TIMEOUT)
        if t.scheme == "tcp":
            return
        self.writer.write(ntrip.source_request(t, self.version, agent=AGENT))
        await self.writer.drain()
        reply, _rest = await ntrip.read_reply(self.reader)
        if not reply.ok:
            await self.close()
            msg = f"{t.public()}: caster refused the upload: {reply.line or 'connection closed'}"
            if reply.refused:
                raise Rejected(msg)
            raise ConnectionError(msg)
        self.chunked = self.version == 2

    async def send(self, data: bytes) -> None:
        if self.reader is not None and self.reader.at_eof():
            raise ConnectionError(f"{self.target.public()}: caster closed the connection")
        self.writer.write(ntrip.chunk(data) if self.chunked else data)
        await self.writer.drain()

    async def close(self) -> None:
        if self.writer is not None:
            try:
                if self.chunked:
                    self.writer.write(b"0\r\n\r\n")
                self.writer.close()
                await asyncio.wait_for(self.writer.wait_closed(), 2.0)
            except (TimeoutError, OSError):
                pass
            self.writer = self.reader = None


def make_sink(target: Target, ntrip_version: int = 2) -> _Sink:
    if ntrip_version not in (1, 2):
        raise CorsError(f"--ntrip-version {ntrip_version}: 1 or 2")
    return _FileSink(target) if target.scheme == "file" else _TcpSink(target, ntrip_version)


@dataclass
class ReplayStats:
    epochs: int = 0
    frames: Counter = field(default_factory=Counter)
    bytes: int = 0
    connects: int = 0
    dropped_epochs: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"epochs": self.epochs, "frames": dict(sorted(self.frames.items())),
                "bytes": self.bytes, "connects": self.connects,
                "dropped_epochs": self.dropped_epochs, "seconds": round(self.seconds, 3)}


async def replay(cfg: ReplayConfig, to: str, *, ntrip_version: int = 2,
                 max_epochs: int | None = None, log: Callable[[str], None] | None = None,
                 hold: float = 0.0, ready: asyncio.Event | None = None,
                 backoff: ntrip.Backoff | None = None) -> ReplayStats:
    """Push the paced RTCM of ``cfg`` to ``to`` until the file ends (forever with ``loop``).

    The first connection is made before the first epoch and announces the station (1006, 1033):
    a caster lists the mountpoint as up from then on. ``hold`` seconds (or until ``ready`` is set)
    pass before the epochs start, so clients can attach and see the whole file.
    Lost connections are re-opened after ``backoff`` (``cors.ntrip.Backoff``: >= 10 s, doubling to
    2 min by default); epochs whose
    time passed while disconnected are dropped, as a live station's would be.
    """
    log = log or (lambda _m: None)
    target = parse_target(to)
    sink = make_sink(target, ntrip_version)
    stats = ReplayStats()
    began = time.monotonic()
    source = await asyncio.to_thread(read_rinex, cfg.obs, cfg.nav)
    if cfg.ecef is None:
        raise CorsError(f"{cfg.obs}: no station ECEF (give --ecef or register the station)")
    announce_enc = RtcmEncoder(source, station_id=cfg.station_id, ecef=cfg.ecef, msm=cfg.msm,
                               antenna_height=cfg.antenna_height)
    announce = b"".join(f.raw for f in announce_enc.station_frames())
    announce_enc.close()
    backoff = backoff or ntrip.Backoff()

    async def connect() -> bool:
        try:
            await sink.open()
            await sink.send(announce)
        except Rejected:
            raise
        except (TimeoutError, OSError, ConnectionError, ntrip.ProtocolError) as exc:
            await sink.close()
            log(f"replay: {target.public()}: {exc or type(exc).__name__}; retry in {backoff.gap:.0f} s")
            return False
        stats.connects += 1
        stats.bytes += len(announce)
        log(f"replay: connected to {target.public()}")
        return True

    try:
        while not await connect():
            await asyncio.sleep(backoff.next_delay())
        backoff.reset()
        if ready is not None:
            try:
                await asyncio.wait_for(ready.wait(), hold if hold > 0 else None)
            except TimeoutError:
                pass
        elif hold > 0:
            await asyncio.sleep(hold)
        connected, resume_at = True, 0.0
        async for due, epoch in paced_epochs(cfg, source):
            if max_epochs is not None and stats.epochs + stats.dropped_epochs >= max_epochs:
                break
            if not connected:
                if time.monotonic() < resume_at or not await connect():
                    if time.monotonic() >= resume_at:
                        resume_at = time.monotonic() + backoff.next_delay()
                    stats.dropped_epochs += 1
                    continue
                connected = True
                if due < time.monotonic() - 1.0:
                    stats.dropped_epochs += 1  # went stale while we were away
                    continue
            try:
                await sink.send(epoch.raw)
            except (OSError, ConnectionError) as exc:
                delay = backoff.next_delay()
                log(f"replay: {target.public()}: lost ({exc or type(exc).__name__}); "
                    f"retry in {delay:.0f} s")
                await sink.close()
                connected = False
                resume_at = time.monotonic() + delay
                stats.dropped_epochs += 1
                continue
            backoff.reset()
            stats.epochs += 1
            stats.bytes += len(epoch.raw)
            stats.frames.update(f.msg_type for f in epoch.frames)
    finally:
        await sink.close()
        stats.seconds = time.monotonic() - began
    return stats


def station_defaults(station_ref: str, registry: str | Path) -> dict:
    """ECEF of a registered station, by station id or mountpoint, from the registry at ``registry`` (a SQLite
    path or a URL, as :func:`cors.stations.open_registry` takes)."""
    from cors.stations import open_registry

    if "://" not in str(registry) and not Path(registry).exists():  # a SQLite registry not made yet
        return {}
    reg = open_registry(registry)
    try:
        try:
            st = reg.get(station_ref)
        except CorsError:
            st = reg.by_mountpoint(station_ref)
        return {"ecef": tuple(st.ecef)} if st else {}
    finally:
        reg.close()


def rtcm_station_id(text: str) -> int:
    """RTCM DF003 station id from a station name: its digits if it has 1..4 of them, else 0."""
    digits = "".join(ch for ch in text if ch.isdigit())
    return int(digits) if digits and int(digits) <= 4095 else 0
