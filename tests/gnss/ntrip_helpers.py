"""Shared pieces of the caster tests: real captures, a caster on its own loop thread, raw peers."""
from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from pathlib import Path

import pytest
from pyrtcm import RTCMReader

from cors.caster import Caster
from cors.monitor import LEGACY_OBS, LEGACY_SYNC, RtcmFramer, constellation
from cors.stations import Station, StationRegistry
from tokens import TokenStore

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
RTCM_DIR = DATA / "gnss" / "rtcm3"
GMSD7 = RTCM_DIR / "GMSD7_20121014.rtcm3"
TESTGLO = RTCM_DIR / "testglo.rtcm3"

# Approximate ECEF of the two capture stations (GMSD, Tanegashima; testglo from its 1005).
GMSD_ECEF = (-3607665.0, 4147868.0, 3223717.0)
TESTGLO_ECEF = (-3869297.5138, 3436571.3345, 3717369.3757)


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"../shared/data/{path.relative_to(DATA)} absent: real RTCM capture needed")
    return path


def frames_of(path: Path) -> list[bytes]:
    framer = RtcmFramer()
    return framer.feed(need(path).read_bytes())


def epochs_of(path: Path) -> list[bytes]:
    """The capture cut into epochs: each ends with the observation message that closes it."""
    epochs, cur = [], []
    for f in frames_of(path):
        cur.append(f)
        mtype = (f[3] << 4) | (f[4] >> 4)
        sys_ = constellation(mtype)
        if sys_ is None:
            continue
        msg = RTCMReader.parse(f)
        more = getattr(msg, LEGACY_SYNC[sys_], 0) if mtype in LEGACY_OBS else getattr(msg, "DF393", 0)
        if not more:
            epochs.append(b"".join(cur))
            cur = []
    return epochs


class CasterThread:
    """A real Caster on 127.0.0.1 (free port) running in its own event-loop thread."""

    def __init__(self, tmp: Path, **kwargs):
        self.registry = StationRegistry(tmp / "stations.sqlite")
        self.tokens = TokenStore(tmp / "tokens.sqlite")
        kwargs.setdefault("registry_poll_s", 0.2)
        self.kwargs = kwargs
        self.loop = asyncio.new_event_loop()
        self.caster: Caster | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def boot():
            self.caster = Caster(self.registry, self.tokens, port=0, **self.kwargs)
            await self.caster.start()
            self._started.set()

        self.loop.run_until_complete(boot())
        self.loop.run_forever()

    def start(self) -> "CasterThread":
        self._thread.start()
        assert self._started.wait(10), "caster did not start"
        return self

    @property
    def port(self) -> int:
        return self.caster.port

    def call(self, fn, *args, timeout=5.0):
        """Run fn(*args) on the caster's loop and return its result (thread-safe reads)."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def add_station(self, sid, mountpoint, ecef, password="pw", **kw) -> Station:
        st = self.registry.add(Station(id=sid, mountpoint=mountpoint, ecef=ecef, **kw),
                               password=password if kw.get("source", "push") == "push" else None)
        self.wait(lambda: mountpoint in self.caster.mounts, what=f"mount {mountpoint}")
        return st

    def wait(self, cond, timeout=10.0, what="condition"):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.call(cond):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self):
        if self.caster is not None:
            asyncio.run_coroutine_threadsafe(self.caster.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.registry.close()
        self.tokens.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request(port: int, text: str, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(text.encode("latin-1"))
    return s


def read_head(s: socket.socket) -> tuple[bytes, bytes]:
    """Reply head and the bytes after it; an NTRIP 1.0 ``ICY 200 OK`` is one line only."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if buf.startswith(b"ICY 200 OK\r\n"):
            return buf[:10], buf[12:]
        part = s.recv(65536)
        if not part:
            break
        buf += part
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            part = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not part:
            break
        out += part
    return out


def get(port: int, mount: str, *, user=None, password=None, v2=False, extra="") -> socket.socket:
    lines = [f"GET /{mount} HTTP/{'1.1' if v2 else '1.0'}", "User-Agent: NTRIP pytest/1.0"]
    if v2:
        lines += [f"Host: 127.0.0.1:{port}", "Ntrip-Version: Ntrip/2.0"]
    if user is not None:
        lines.append(f"Authorization: {basic(user, password)}")
    text = "\r\n".join(lines) + "\r\n" + extra + "\r\n"
    return request(port, text)


def dechunk(body: bytes) -> tuple[bytes, list[int]]:
    """Decode an HTTP chunked body (strictly: every chunk must be well formed)."""
    out, sizes, pos = b"", [], 0
    while pos < len(body):
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol], 16)
        sizes.append(size)
        if size == 0:
            break
        start = eol + 2
        assert body[start + size:start + size + 2] == b"\r\n", "chunk not terminated by CRLF"
        out += body[start:start + size]
        pos = start + size + 2
    return out, sizes


class Pusher(threading.Thread):
    """An NTRIP server pushing epochs of a real capture (v1 SOURCE or v2 POST, chunked)."""

    def __init__(self, port, mount, password, epochs, period=0.05, v2=False, user="", loop=False):
        super().__init__(daemon=True)
        self.port, self.mount, self.password = port, mount, password
        self.epochs, self.period, self.v2, self.user, self.loop_ = epochs, period, v2, user, loop
        self.reply = b""
        self.sent = []          # (monotonic time, epoch bytes) actually written
        self.stop_event = threading.Event()
        self.done = threading.Event()

    def run(self):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            if self.v2:
                s.sendall((f"POST /{self.mount} HTTP/1.1\r\nHost: 127.0.0.1\r\nNtrip-Version: Ntrip/2.0\r\n"
                           f"User-Agent: NTRIP pytest\r\nAuthorization: {basic(self.user, self.password)}\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n").encode())
            else:
                s.sendall(f"SOURCE {self.password} /{self.mount}\r\nSource-Agent: NTRIP pytest\r\n\r\n".encode())
            self.reply = s.recv(4096)
            if b" 200 OK" not in self.reply:
                return
            while not self.stop_event.is_set():
                for ep in self.epochs:
                    if self.stop_event.is_set():
                        break
                    s.sendall(b"%X\r\n%b\r\n" % (len(ep), ep) if self.v2 else ep)
                    self.sent.append((time.monotonic(), ep))
                    time.sleep(self.period)
                if not self.loop_:
                    break
            if self.v2:
                s.sendall(b"0\r\n\r\n")
            s.close()
        except OSError:
            pass
        finally:
            self.done.set()

    def stop(self):
        self.stop_event.set()
        self.join(5)


class Feeder(threading.Thread):
    """A plain TCP server streaming epochs of a capture (what a receiver's TCP port looks like)."""

    def __init__(self, epochs, period=0.05, close_after: float | None = None, loop: bool = True):
        super().__init__(daemon=True)
        self.epochs, self.period, self.close_after, self.loop_ = epochs, period, close_after, loop
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections: list[float] = []
        self.stop_event = threading.Event()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop_event.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections.append(time.monotonic())
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        began = time.monotonic()
        try:
            i = 0
            while not self.stop_event.is_set():
                if self.close_after is not None and time.monotonic() - began > self.close_after:
                    break
                if i >= len(self.epochs) and not self.loop_:
                    time.sleep(self.period)  # stay connected, send nothing more
                    continue
                conn.sendall(self.epochs[i % len(self.epochs)])
                i += 1
                time.sleep(self.period)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.stop_event.set()
        self.sock.close()
        self.join(5)
