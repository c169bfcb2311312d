"""The caster against real peers on 127.0.0.1: RTKLIB str2str (NTRIP 1.0 client and server) and
pygnssutils' GNSSNTRIPClient (NTRIP 2.0, chunked), on the real GMSD7 capture."""
from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import time

import pytest

from tests.gnss.ntrip_helpers import (
    GMSD7, GMSD_ECEF, CasterThread, Feeder, Pusher, epochs_of, get, read_all, read_head,
)

STR2STR = shutil.which("str2str")


@pytest.fixture
def caster(tmp_path):
    c = CasterThread(tmp_path, down_after=2.0).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def epochs():
    return epochs_of(GMSD7)


def wait_up(c, sid="GMSD"):
    c.wait(lambda: c.caster.monitor.is_up(sid) and c.caster.monitor.stations[sid].epochs >= 2, what="up")


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)  # str2str flushes and closes its streams on SIGINT
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err.decode(errors="replace").replace("\r", "\n")


@pytest.mark.skipif(STR2STR is None, reason="RTKLIB str2str not installed (Debian package rtklib)")
def test_str2str_ntrip1_client_gets_the_pushed_bytes(caster, epochs, tmp_path):
    token = caster.tokens.create("vehicle", "rover1")
    caster.add_station("GMSD", "GMSD7", GMSD_ECEF, password="src")
    pusher = Pusher(caster.port, "GMSD7", "src", epochs[:150], period=0.02)
    pusher.start()
    wait_up(caster)
    out = tmp_path / "str2str_client.rtcm3"
    proc = subprocess.Popen([STR2STR, "-in", f"ntrip://rover1:{token}@127.0.0.1:{caster.port}/GMSD7",
                             "-out", f"file://{out}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pusher.join(15)
    time.sleep(0.5)
    log = stop(proc)
    received = out.read_bytes()
    pushed = b"".join(ep for _, ep in pusher.sent)
    assert len(received) > 20_000, log[-500:]
    assert received == pushed[len(pushed) - len(received):]


@pytest.mark.skipif(STR2STR is None, reason="RTKLIB str2str not installed (Debian package rtklib)")
def test_str2str_ntrip1_server_pushes_into_the_caster(caster, epochs):
    token = caster.tokens.create("vehicle", "rover1")
    caster.add_station("GMSD", "GMSD7", GMSD_ECEF, password="s3cret")
    feeder = Feeder(epochs[:200], period=0.02, loop=False)
    feeder.start()
    proc = subprocess.Popen([STR2STR, "-in", f"tcpcli://127.0.0.1:{feeder.port}",
                             "-out", f"ntrips://:s3cret@127.0.0.1:{caster.port}/GMSD7"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_up(caster)
        s = get(caster.port, "GMSD7", user="rover1", password=token)
        head, received = read_head(s)
        assert head == b"ICY 200 OK"
        s.settimeout(1.0)
        received += read_all(s)   # until the feeder's 200 epochs are through and the stream idles
        status = caster.call(caster.caster.station_status, "GMSD")
    finally:
        stop(proc)
        feeder.stop()
    stream = b"".join(epochs[:200])
    assert len(received) > 20_000
    assert received == stream[len(stream) - len(received):]
    assert status["bad_frames"] == 0 and status["message_types"]["1077"]["count"] >= 100


def test_pygnssutils_ntrip2_client(caster, epochs):
    from pygnssutils import GNSSNTRIPClient

    token = caster.tokens.create("vehicle", "rover2")
    caster.add_station("GMSD", "GMSD7", GMSD_ECEF, password="src")
    pusher = Pusher(caster.port, "GMSD7", "src", epochs[:120], period=0.02)
    pusher.start()
    wait_up(caster)
    # sourcetable over NTRIP 2.0 (chunked) as pygnssutils parses it
    out = queue.Queue()
    table_client = GNSSNTRIPClient(verbosity=0)
    table_client.run(server="127.0.0.1", port=caster.port, mountpoint="", version="2.0",
                     ntripuser="rover2", ntrippassword=token, output=out)
    table, _closest = out.get(timeout=5)
    assert [r[0] for r in table] == ["GMSD7", "NEAREST"] and table[0][8:10] == ["30.56", "131.02"]
    # the data stream: chunked RTCM, re-assembled and parsed by pygnssutils
    out = queue.Queue()
    client = GNSSNTRIPClient(verbosity=0)
    client.run(server="127.0.0.1", port=caster.port, mountpoint="GMSD7", version="2.0",
               ntripuser="rover2", ntrippassword=token, output=out)
    pusher.join(15)
    time.sleep(0.5)
    client.stop()
    frames = []
    while not out.empty():
        raw, parsed = out.get()
        frames.append((raw, parsed))
    received = b"".join(raw for raw, _ in frames)
    pushed = b"".join(ep for _, ep in pusher.sent)
    assert len(frames) > 100
    assert {p.identity for _, p in frames} >= {"1077", "1087", "1117", "1127"}
    assert received == pushed[len(pushed) - len(received):]
