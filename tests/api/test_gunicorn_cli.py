"""The production path end to end: `python -m mapsvc.http` (gunicorn) in a subprocess, the `mapsvc fetch`
and `mapsvc keys` commands in subprocesses."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests



def mapsvc_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("mapsvc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mapsvc"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gunicorn_server(api_home):
    port = _free_port()
    env = {**os.environ, "MAPSVC_HOME": str(api_home["home"]), "MAPSVC_RATE_LIMIT": "100000 per minute"}
    proc = subprocess.Popen([sys.executable, "-m", "mapsvc.http", "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if requests.get(url + "/v1/health", timeout=5).status_code == 200:
                break
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or a busy machine
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"gunicorn did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    yield url, proc
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    # the access log names tokens, never prints them; no private key material in the log either
    for tok in api_home["tokens"].values():
        assert tok.encode() not in err
    assert b"PRIVATE KEY" not in err
    assert b'"GET /v1/releases/r1/tiles/' in err


def test_gunicorn_serves_and_cli_fetches(gunicorn_server, api_home, store, tmp_path):
    url, _ = gunicorn_server
    r = requests.get(url + "/v1/releases", timeout=5)
    assert r.status_code == 401 and r.headers["Content-Type"] == "application/problem+json"
    assert r.headers["Server"].startswith("gunicorn")
    env = {**os.environ, "MAPSVC_HOME": str(api_home["home"])}
    pub = tmp_path / "pinned.pem"
    pub.write_bytes(subprocess.run(mapsvc_cmd() + ["keys", "export"], env=env, check=True,
                                   capture_output=True).stdout)
    cache = tmp_path / "cache"
    base = mapsvc_cmd() + ["fetch", "--server", url, "--token", api_home["tokens"]["vehicle"], "--lat", str(api_home["lat"]),
                           "--lon", str(api_home["lon"]), "--radius-m", "1500", "--cache", str(cache)]
    out = subprocess.run(base + ["--release", "r1", "--pubkey", str(pub), "--match"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout)
    assert first["release"] == "r1" and sorted(first["downloaded"]) == first["tiles"]
    assert (cache / "merged.osm").exists()
    out = subprocess.run(base, env=env, capture_output=True, text=True)  # latest (r2), pinned key from the cache
    assert out.returncode == 0, out.stderr
    second = json.loads(out.stdout)
    diff = store.diff("r1", "r2")
    assert second["release"] == "r2" and second["used_delta"]
    assert sorted(second["downloaded"]) == sorted(set(diff["changed"] + diff["added"]) & set(second["tiles"]))
    # a bad token: one-line error, exit status 2
    bad = subprocess.run(base[:5] + ["nope"] + base[6:], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("mapsvc: error: GET /v1/releases/latest: HTTP 401")


def test_keys_cli(tmp_path):
    env = {**os.environ, "MAPSVC_HOME": str(tmp_path / "home")}
    made = subprocess.run(mapsvc_cmd() + ["keys", "create"], env=env, capture_output=True, text=True, check=True)
    kid = made.stdout.split()[2]
    listed = json.loads(subprocess.run(mapsvc_cmd() + ["keys", "list", "--json"], env=env, capture_output=True,
                                       text=True, check=True).stdout)
    assert [k["key_id"] for k in listed] == [kid] and listed[0]["active"]
    assert "PRIVATE" not in made.stdout + json.dumps(listed)
    key = tmp_path / "home" / "keys" / f"{kid}.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
