"""The vehicle side: rover observations + RTCM 3 corrections over NTRIP -> RTK epoch by epoch.

Corrections are decoded by RTKLIB (``input_rtcm3``) into base observations, station position and
ephemerides; each rover epoch is solved by RTKLIB's ``rtkpos`` with the latest base epoch not
later than the rover epoch (what ``rnx2rtkp`` does without interpolation), so a run over a caster
equals RTKLIB's forward-only solution with the same conf.

The NTRIP download runs on asyncio streams; its request, reply parsing, chunked decoding and
back-off come from ``cors.ntrip`` (pygnssutils' client is thread-based and owns its output).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyrtklib as rtk

from cors import ntrip
from cors.errors import CorsError
from cors.replay import Rejected
from cors.rtcm_encode import gtime_seconds, read_rinex
from cors.rtk import DTTOL, EpochStatus, RtkEngine, Summary, copy_records, load_options

AGENT = "NTRIP mapsvc-rover/0.1"
GGA_INTERVAL = 10.0  # s; casters dislike faster GGA


def parse_caster(url: str) -> ntrip.NtripURL:
    return ntrip.parse_url(url, schemes=("ntrip",), what="--caster")


class Corrections:
    """RTCM 3 bytes -> base epochs (RTKLIB input_rtcm3), kept until the rover has used them."""

    def __init__(self, time_hint, keep: int = 7200):
        self.dec = rtk.rtcm_t()
        rtk.init_rtcm(self.dec)
        self.dec.time = time_hint  # MSM carries time of week only: RTKLIB needs the week
        self.epochs: deque[tuple[float, list]] = deque(maxlen=keep)
        self.base_pos: tuple[float, float, float] | None = None
        self.messages = 0
        self.ephemerides = 0
        self.bytes = 0
        self.changed = asyncio.Event()

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        dec = self.dec
        for byte in data:
            ret = rtk.input_rtcm3(dec, byte)
            if ret <= 0:
                continue
            self.messages += 1
            if ret == 1 and dec.obs.n > 0:
                t = gtime_seconds(dec.obs.data[0].time)
                if self.epochs and t < self.epochs[-1][0] - DTTOL:
                    self.epochs.clear()  # the station restarted its time (a looping replay)
                self.epochs.append((t, copy_records(dec.obs.data, dec.obs.n, rcv=2)))
            elif ret == 2:
                self.ephemerides += 1
            elif ret == 5:
                pos = tuple(float(dec.sta.pos[i]) for i in range(3))
                if sum(v * v for v in pos) > 1e12:
                    self.base_pos = pos
        self.changed.set()

    @property
    def latest(self) -> float | None:
        return self.epochs[-1][0] if self.epochs else None

    def select(self, t: float):
        """Latest base epoch with time <= t + DTTOL; older ones are dropped (time only moves on)."""
        chosen = None
        while self.epochs and self.epochs[0][0] <= t + DTTOL:
            if len(self.epochs) > 1 and self.epochs[1][0] <= t + DTTOL:
                self.epochs.popleft()
                continue
            chosen = self.epochs[0]
            break
        return chosen

    def close(self) -> None:
        rtk.free_rtcm(self.dec)


class NtripDownload:
    """One NTRIP client connection (v1 or v2), re-opened with back-off >= 10 s when lost."""

    def __init__(self, caster: ntrip.NtripURL, version: int, sink: Callable[[bytes], None],
                 gga: Callable[[], bytes | None], log: Callable[[str], None],
                 backoff: ntrip.Backoff | None = None):
        if version not in (1, 2):
            raise CorsError(f"--ntrip-version {version}: 1 or 2")
        self.caster, self.version, self.sink, self.gga, self.log = caster, version, sink, gga, log
        self.backoff = backoff or ntrip.Backoff()
        self.connected = asyncio.Event()
        self.connects = 0
        self.error: Exception | None = None

    async def _session(self) -> None:
        c = self.caster
        reader, writer = await asyncio.wait_for(asyncio.open_connection(c.host, c.port),
                                                ntrip.HANDSHAKE_TIMEOUT)
        try:
            gga = self.gga()
            writer.write(ntrip.client_request(c, self.version, agent=AGENT, gga=gga))
            await writer.drain()
            reply, rest = await ntrip.read_reply(reader)
            if not reply.ok:
                # unknown or not-yet-live mountpoint: the station may come up, so retry later
                if reply.sourcetable:
                    raise ConnectionError(f"{c.public()}: mountpoint not live (caster sent its sourcetable)")
                if reply.status in (401, 403):
                    raise Rejected(f"{c.public()}: caster refused: {reply.line}")
                raise ConnectionError(f"{c.public()}: unexpected reply {reply.line!r}")
            dechunk = ntrip.ChunkDecoder() if reply.chunked else None
            self.connects += 1
            self.connected.set()
            self.log(f"rover: connected to {c.public()} (NTRIP {self.version}.0)")
            if self.version == 1 and gga:
                writer.write(gga)  # v1: GGA goes in-stream
            last_gga = time.monotonic()
            data = rest
            while True:
                if data:
                    self.sink(dechunk.feed(data) if dechunk else data)
                if gga and time.monotonic() - last_gga >= GGA_INTERVAL:
                    gga = self.gga()
                    if gga:
                        writer.write(gga)
                    last_gga = time.monotonic()
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError(f"{c.public()}: caster closed the stream")
        finally:
            self.connected.clear()
            writer.close()

    async def run(self) -> None:
        while True:
            began = time.monotonic()
            try:
                await self._session()
            except Rejected as exc:
                self.error = exc
                self.log(f"rover: {exc}")
                return
            except (TimeoutError, OSError, ConnectionError, ntrip.ProtocolError) as exc:
                delay = self.backoff.next_delay(time.monotonic() - began)
                self.log(f"rover: {exc or type(exc).__name__}; reconnect in {delay:.0f} s")
                await asyncio.sleep(delay)


@dataclass
class RoverConfig:
    obs: str | Path
    caster: str
    nav: Sequence[str | Path] = ()
    conf: str | Path | None = None
    ntrip_version: int = 2
    max_wait: float = 2.0  # s wall: how long an epoch waits for its base epoch
    connect_timeout: float = 30.0
    send_gga: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.nav, (str, Path)):
            self.nav = (self.nav,)


@dataclass
class RoverResult:
    summary: dict
    statuses: list[EpochStatus] = field(default_factory=list)
    seconds: float = 0.0
    corrections: dict = field(default_factory=dict)


async def run_rover(cfg: RoverConfig, *, on_epoch: Callable[[EpochStatus], None] | None = None,
                    log: Callable[[str], None] | None = None,
                    stop: asyncio.Event | None = None) -> RoverResult:
    """Solve every rover epoch of ``cfg.obs`` with corrections from ``cfg.caster``."""
    log = log or (lambda _m: None)
    began = time.monotonic()
    caster = parse_caster(cfg.caster)
    options = load_options(cfg.conf)
    rover = await asyncio.to_thread(read_rinex, cfg.obs, cfg.nav)
    first_time = rover.obs.data[0].time
    corr = Corrections(first_time)
    # Broadcast orbits: the rover's own nav file when given (as rnx2rtkp), else those in the stream.
    nav = rover.nav if (cfg.nav and rover.nav.n + rover.nav.ng > 0) else corr.dec.nav
    engine = RtkEngine(options, nav)
    position = [rover.header_ecef]

    def gga() -> bytes | None:
        pos = position[-1]
        if not cfg.send_gga or sum(v * v for v in pos) < 1e12:
            return None
        return ntrip.gga_from_ecef(pos)

    download = NtripDownload(caster, cfg.ntrip_version, corr.feed, gga, log)
    task = asyncio.create_task(download.run())
    summary = Summary()
    statuses: list[EpochStatus] = []
    try:
        connect_deadline = time.monotonic() + cfg.connect_timeout
        while not download.connected.is_set():
            if task.done() or time.monotonic() > connect_deadline:
                raise CorsError(str(download.error or f"{caster.public()}: no connection "
                                                        f"within {cfg.connect_timeout:.0f} s"))
            await asyncio.sleep(0.02)
        while corr.latest is None and not task.done():  # first corrections: up to connect_timeout
            if time.monotonic() > connect_deadline:
                raise CorsError(f"{caster.public()}: no RTCM observations within {cfg.connect_timeout:.0f} s")
            corr.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(corr.changed.wait(), 0.5)
        for start, end in rover.epochs:
            if stop is not None and stop.is_set():
                break
            t = gtime_seconds(rover.obs.data[start].time)
            deadline = time.monotonic() + cfg.max_wait
            while (corr.latest is None or corr.latest < t - DTTOL) and download.connected.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                corr.changed.clear()
                try:
                    await asyncio.wait_for(corr.changed.wait(), remaining)
                except TimeoutError:
                    break
            if corr.base_pos is not None:
                engine.set_base_position(corr.base_pos)
            chosen = corr.select(t)
            base = chosen[1] if chosen else []
            records = [rover.obs.data[k] for k in range(start, end)]
            status = engine.solve(records, base)
            if status.stat:
                position.append(status.ecef)
            summary.add(status)
            statuses.append(status)
            if on_epoch:
                on_epoch(status)
            await asyncio.sleep(0)
    finally:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
        engine.close()
        stream = {"bytes": corr.bytes, "messages": corr.messages,
                  "ephemerides": corr.ephemerides, "connects": download.connects}
        corr.close()
    return RoverResult(summary.as_dict() | {"summary": summary.line()}, statuses,
                       time.monotonic() - began, stream)


def rover(cfg: RoverConfig, **kw) -> RoverResult:
    """Blocking wrapper of ``run_rover``."""
    return asyncio.run(run_rover(cfg, **kw))
