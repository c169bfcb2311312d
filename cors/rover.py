"""The vehicle side: rover observations + RTCM 3 corrections over NTRIP -> RTK epoch by epoch.

Corrections are decoded by RTKLIB (``input_rtcm3``) into base observations, station position and
ephemerides; each rover epoch is solved by RTKLIB's ``rtkpos`` with the latest base epoch not
later than the rover epoch (what ``rnx2rtkp`` does without interpolation), so a run over a caster
equals RTKLIB's forward-only solution with the same conf.

The NTRIP download handshake is written here on asyncio streams (a GET and a status line);
pygnssutils' client is thread-based and owns its output handling.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyrtklib as rtk

from cors.errors import CorsError
from cors.replay import HANDSHAKE_TIMEOUT, MAX_BACKOFF, MIN_BACKOFF, Rejected
from cors.rtcm_encode import gtime_seconds, read_rinex
from cors.rtk import DTTOL, EpochStatus, RtkEngine, Summary, copy_records, load_options

AGENT = "NTRIP mapsvc-rover/0.1"
GGA_INTERVAL = 10.0  # s; casters dislike faster GGA


@dataclass(frozen=True)
class CasterURL:
    host: str
    port: int
    mountpoint: str
    user: str = ""
    password: str = ""

    def public(self) -> str:
        return f"ntrip://{self.host}:{self.port}/{self.mountpoint}"


def parse_caster(url: str) -> CasterURL:
    parts = urlsplit(url)
    if parts.scheme.lower() != "ntrip":
        raise CorsError(f"--caster {url!r}: expected ntrip://USER:TOKEN@HOST:PORT/MOUNT")
    try:
        port = parts.port or 2101
    except ValueError:
        raise CorsError(f"--caster {url!r}: bad port") from None
    mount = parts.path.lstrip("/")
    if not parts.hostname or not mount:
        raise CorsError(f"--caster {url!r}: host and mountpoint are needed")
    return CasterURL(parts.hostname, port, mount, unquote(parts.username or ""),
                     unquote(parts.password or ""))


def gga_sentence(ecef: Sequence[float]) -> bytes:
    """NMEA GGA of an ECEF position (pynmeagps builds and checksums it)."""
    from pynmeagps import NMEAMessage

    lon, lat, h = _ecef_to_llh().transform(*ecef)
    msg = NMEAMessage("GP", "GGA", 0, lat=lat, lon=lon, alt=h, sep=0.0, quality=1, numSV=10,
                      HDOP=1.0, altUnit="M", sepUnit="M")
    return msg.serialize()


@functools.cache
def _ecef_to_llh():
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)


class _Dechunk:
    """HTTP/1.1 chunked body -> bytes (NTRIP 2.0 data replies)."""

    def __init__(self):
        self.buf = bytearray()
        self.need = -1

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = bytearray()
        while True:
            if self.need < 0:
                i = self.buf.find(b"\n")
                if i < 0:
                    return bytes(out)
                line = bytes(self.buf[:i]).strip().split(b";")[0]
                del self.buf[:i + 1]
                if not line:
                    continue
                self.need = int(line, 16)
                if self.need == 0:
                    return bytes(out)
            else:
                if len(self.buf) < self.need:
                    return bytes(out)
                out += self.buf[:self.need]
                del self.buf[:self.need]
                self.need = -1


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

    def __init__(self, caster: CasterURL, version: int, sink: Callable[[bytes], None],
                 gga: Callable[[], bytes | None], log: Callable[[str], None]):
        if version not in (1, 2):
            raise CorsError(f"--ntrip-version {version}: 1 or 2")
        self.caster, self.version, self.sink, self.gga, self.log = caster, version, sink, gga, log
        self.connected = asyncio.Event()
        self.connects = 0
        self.error: Exception | None = None

    def _request(self, gga: bytes | None) -> bytes:
        c = self.caster
        lines = [f"GET /{c.mountpoint} HTTP/1.{1 if self.version == 2 else 0}"]
        if self.version == 2:
            lines += [f"Host: {c.host}:{c.port}", "Ntrip-Version: Ntrip/2.0"]
        lines.append(f"User-Agent: {AGENT}")
        if c.user or c.password:
            lines.append("Authorization: Basic "
                         + base64.b64encode(f"{c.user}:{c.password}".encode()).decode())
        if self.version == 2 and gga:
            lines.append("Ntrip-GGA: " + gga.decode().strip())
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def _session(self) -> None:
        c = self.caster
        reader, writer = await asyncio.wait_for(asyncio.open_connection(c.host, c.port),
                                                HANDSHAKE_TIMEOUT)
        try:
            gga = self.gga()
            writer.write(self._request(gga))
            await writer.drain()
            buf = b""
            while not (buf.startswith(b"ICY 200 OK\r\n") or b"\r\n\r\n" in buf):
                part = await asyncio.wait_for(reader.read(4096), HANDSHAKE_TIMEOUT)
                if not part or len(buf) > 16384:
                    break
                buf += part
            status = buf.split(b"\r\n", 1)[0].decode("latin-1").strip()
            if status.startswith("ICY 200"):
                rest, dechunk = buf[len(b"ICY 200 OK\r\n"):], None
            elif status.startswith("HTTP/1.") and status[9:12] == "200" and b"\r\n\r\n" in buf:
                head, rest = buf.split(b"\r\n\r\n", 1)
                if b"gnss/sourcetable" in head.lower():
                    raise ConnectionError(f"{c.public()}: mountpoint not live (caster sent its sourcetable)")
                dechunk = _Dechunk() if b"transfer-encoding: chunked" in head.lower() else None
            else:
                # unknown or not-yet-live mountpoint: the station may come up, so retry later
                if status.startswith("SOURCETABLE"):
                    raise ConnectionError(f"{c.public()}: mountpoint not live (caster sent its sourcetable)")
                if any(code in status for code in ("401", "403")):
                    raise Rejected(f"{c.public()}: caster refused: {status}")
                raise ConnectionError(f"{c.public()}: unexpected reply {status!r}")
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
        backoff = MIN_BACKOFF
        while True:
            try:
                await self._session()
            except Rejected as exc:
                self.error = exc
                self.log(f"rover: {exc}")
                return
            except (TimeoutError, OSError, ConnectionError) as exc:
                self.log(f"rover: {exc or type(exc).__name__}; reconnect in {backoff:.0f} s")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)


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
        return gga_sentence(pos)

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
