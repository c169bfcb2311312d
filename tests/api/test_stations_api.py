"""GET /v1/stations, /v1/stations/{id} and /v1/metrics through a real `mapsvc serve` (HTTP + NTRIP)."""
import os
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import GNSS_DIR, mapsvc_cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _frames(path, n):
    from pyrtcm import RTCMReader

    out = []
    with open(path, "rb") as f:
        for raw, _ in RTCMReader(f):
            out.append(raw)
            if len(out) == n:
                break
    return out


def test_station_status_over_http(tmp_path):
    rtcm = GNSS_DIR / "rtcm3" / "GMSD7_20121014.rtcm3"
    if not rtcm.exists():
        pytest.skip("../shared/data/gnss is absent: real RTCM stream needed")
    env = dict(os.environ, MAPSVC_HOME=str(tmp_path))
    run = lambda *a: subprocess.run(mapsvc_cmd() + list(a), env=env, capture_output=True, text=True, timeout=60)
    assert run("stations", "add", "GMSD", "--mountpoint", "GMSD7", "--ecef",
               "-3590000.0,4070000.0,3230000.0", "--password", "pw").returncode == 0
    vehicle = run("tokens", "create", "--role", "vehicle", "--name", "car1").stdout.strip().split()[-1]
    admin = run("tokens", "create", "--role", "admin", "--name", "ops").stdout.strip().split()[-1]
    http, ntrip = _free_port(), _free_port()
    proc = subprocess.Popen(mapsvc_cmd() + ["serve", "--port", str(http), "--ntrip-port", str(ntrip)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{http}/v1"
        for _ in range(150):
            try:
                requests.get(f"{base}/health", timeout=1)
                socket.create_connection(("127.0.0.1", ntrip), timeout=1).close()
                break
            except (requests.ConnectionError, OSError):
                time.sleep(0.1)
        src = socket.create_connection(("127.0.0.1", ntrip), timeout=5)
        src.sendall(b"SOURCE pw /GMSD7\r\nSource-Agent: NTRIP pytest\r\n\r\n")
        assert src.recv(100).startswith(b"ICY 200 OK")
        frames = _frames(rtcm, 40)
        src.sendall(b"".join(frames))
        want_1077 = sum(1 for f in frames if ((f[3] << 4) | (f[4] >> 4)) == 1077)
        auth = {"Authorization": f"Bearer {vehicle}"}
        for _ in range(60):
            doc = requests.get(f"{base}/stations", headers=auth, timeout=5).json()
            st = {s["id"]: s for s in doc["stations"]}.get("GMSD")
            if st and st["message_types"].get("1077", {}).get("count") == want_1077:
                break
            time.sleep(0.2)
        assert doc["caster_running"] and st["up"] and st["source_connected"]
        assert st["message_types"]["1077"]["count"] == want_1077
        assert "ecef" not in st and "-3590000" not in str(doc)  # precise ARP never leaves over HTTP
        one = requests.get(f"{base}/stations/GMSD", headers=auth, timeout=5)
        assert one.status_code == 200 and one.json()["id"] == "GMSD"
        assert requests.get(f"{base}/stations/NOPE", headers=auth, timeout=5).status_code == 404
        assert requests.get(f"{base}/stations", timeout=5).status_code == 401
        assert requests.get(f"{base}/metrics", headers=auth, timeout=5).status_code == 403
        m = requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {admin}"}, timeout=5)
        assert m.status_code == 200 and f'cors_frames_total{{station="GMSD",type="1077"}} {want_1077}.0' in m.text
        src.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("mapsvc serve did not stop on SIGINT")
