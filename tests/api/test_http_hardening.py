"""The embedded server (`python -m mapsvc.http`, as `mapsvc serve` runs it) under attack, over raw sockets on
127.0.0.1: a slowloris of 300 sockets, a slow body, and the malformed requests gunicorn answers itself."""
from __future__ import annotations

import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import time

import pytest

SLOW_SOCKETS = 300
HEADER_TIMEOUT = 5.0   # mapsvc.http.GUNICORN_DEFAULTS["keepalive"]
BODY_TIMEOUT = 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes, read until the server closes (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(data)
        out = b""
        while True:
            try:
                chunk = c.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                head, body = out.split(b"\r\n\r\n", 1)
                length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length:")), None)
                if length is not None and len(body) >= length:
                    break
        return out


def health(port: int) -> tuple[float, bytes]:
    t0 = time.monotonic()
    out = raw(port, b"GET /v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    return time.monotonic() - t0, out


def parse(resp: bytes) -> tuple[int, dict, bytes]:
    head, body = resp.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """The API as `mapsvc serve` runs it (mapsvc.http defaults), 2 workers, over an empty home."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * SLOW_SOCKETS:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * SLOW_SOCKETS), hard))
    home = tmp_path_factory.mktemp("hardening") / "home"
    port = _free_port()
    env = {**os.environ, "MAPSVC_HOME": str(home), "MAPSVC_BODY_TIMEOUT": str(BODY_TIMEOUT)}
    proc = subprocess.Popen([sys.executable, "-m", "mapsvc.http", "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            if parse(health(port)[1])[0] == 200:
                break
        except (OSError, ValueError, IndexError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the embedded server did not start")
        time.sleep(0.2)
    for _ in range(6):  # both workers past their first request
        health(port)
    yield port
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_slowloris_300_sockets_health_answers_and_slow_sockets_are_closed(embedded):
    port = embedded
    slow: list[socket.socket] = []
    try:
        for _ in range(SLOW_SOCKETS):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"GET /v1/health HTTP/1.1\r\nHost: t\r\n")
            c.setblocking(False)
            slow.append(c)
        t0 = time.monotonic()
        closed_at: dict[int, float] = {}
        sel = selectors.DefaultSelector()
        for i, c in enumerate(slow):
            sel.register(c, selectors.EVENT_READ, i)
        latencies, line, next_drip = [], 0, t0
        # bounded: at most header timeout + 7 s, stops by itself
        while time.monotonic() - t0 < HEADER_TIMEOUT + 7 and len(closed_at) < SLOW_SOCKETS:
            now = time.monotonic()
            if now >= next_drip:  # one more header line per open slow socket, every second
                line += 1
                for i, c in enumerate(slow):
                    if i not in closed_at:
                        try:
                            c.send(b"X-Slow-%d: 1\r\n" % line)
                        except OSError:
                            closed_at[i] = now - t0
                            sel.unregister(c)
                next_drip = now + 1.0
            latency, out = health(port)
            assert parse(out)[0] == 200
            latencies.append(latency)
            for key, _ in sel.select(timeout=0.2):
                try:
                    gone = key.fileobj.recv(4096) == b""
                except OSError:
                    gone = True
                if gone:
                    closed_at[key.data] = time.monotonic() - t0
                    sel.unregister(key.fileobj)
        assert len(latencies) >= 10
        # /v1/health answered promptly the whole time (the old gthread default took 10 s and more)
        assert max(latencies) < 1.5, sorted(latencies)[-5:]
        # every slow socket was closed by the server, after the header timeout and not long after it
        assert len(closed_at) == SLOW_SOCKETS, f"{SLOW_SOCKETS - len(closed_at)} slow sockets still open"
        assert min(closed_at.values()) >= HEADER_TIMEOUT - 1.0
        assert max(closed_at.values()) <= HEADER_TIMEOUT + 4.0
    finally:
        for c in slow:
            c.close()


def test_slow_body_is_answered_408_problem(embedded):
    t0 = time.monotonic()
    out = raw(embedded, b"POST /v1/health HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
    elapsed = time.monotonic() - t0
    status, headers, body = parse(out)
    assert status == 408 and headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == 408
    assert BODY_TIMEOUT - 0.5 <= elapsed < BODY_TIMEOUT + 3


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /v1/health HTTP/1.1\r\nHost: t\r\nX-Bad: a\x00b\r\n\r\n", 400),          # NUL in a header value
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),                 # request line over 4 kB
    (b"GARBAGE\r\n\r\n", 400),                                                         # bad request line
    (b"GET /v1/health HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(60)) + b"\r\n", 431),
    (b"GET /v1/health HTTP/9.9\r\nHost: t\r\n\r\n", 400),                             # unknown HTTP version
], ids=["nul-header", "long-path", "bad-request-line", "too-many-headers", "bad-version"])
def test_errors_gunicorn_raises_are_problem_documents(embedded, request_bytes, status):
    out = raw(embedded, request_bytes)
    got, headers, body = parse(out)
    assert got == status, out[:300]
    assert headers["content-type"] == "application/problem+json"
    doc = json.loads(body)
    assert doc["status"] == status and doc["title"] and doc["type"] == "about:blank"
    assert b"<html" not in out.lower()
