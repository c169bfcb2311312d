"""Station registry, token store and their CLI; ``mapsvc serve`` runs the caster for real."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cors.errors import CorsError
from cors.stations import Station, open_registry, parse_source
from servers import stored_text
from tokens import TokenError, open_tokens
from tests.gnss.ntrip_helpers import GMSD7, epochs_of

ARP = (-3959400.631, 3385704.533, 3667523.111)


def test_registry_roundtrip_and_password_stored_hashed(state_where):
    reg = open_registry(state_where("stations.sqlite"))
    reg.add(Station(id="3034", mountpoint="GEONET3034", ecef=ARP, name="Fujisawa"), password="pa55word")
    st = reg.get("3034")
    assert st.ecef == ARP and st.name == "Fujisawa" and st.source_spec.kind == "push"
    assert st.check_password("pa55word") and not st.check_password("pa55wore") and not st.check_password("")
    assert reg.by_mountpoint("GEONET3034").id == "3034" and reg.by_mountpoint("X") is None
    public = st.public()
    assert public["approx_lat"] == 35.33 and public["approx_lon"] == 139.47 and "ecef" not in public
    assert "pa55word" not in json.dumps(st.private()) and "password_hash" not in st.private()
    assert "pa55word" not in stored_text(state_where("stations.sqlite"), "stations")
    fp = reg.fingerprint()
    reg.remove("3034")
    assert reg.list() == [] and reg.fingerprint() != fp
    with pytest.raises(CorsError, match="no station"):
        reg.remove("3034")


@pytest.mark.parametrize("station, password, message", [
    (Station(id="a b", mountpoint="M", ecef=ARP), "p", "station id"),
    (Station(id="A", mountpoint="M;X", ecef=ARP), "p", "mountpoint"),
    (Station(id="A", mountpoint="NEAREST", ecef=ARP), "p", "reserved"),
    (Station(id="A", mountpoint="M", ecef=(1.0, 2.0, 3.0)), "p", "not on the Earth"),
    (Station(id="A", mountpoint="M", ecef=ARP), None, "needs --password"),
    (Station(id="A", mountpoint="M", ecef=ARP, name="x;y"), "p", "not allowed"),
    (Station(id="A", mountpoint="M", ecef=ARP, source="ftp://x"), "p", "unknown kind"),
    (Station(id="A", mountpoint="M", ecef=ARP, source="tcp://host"), "p", "needs a port"),
    (Station(id="A", mountpoint="M", ecef=ARP, source="ntrip://host:2101/"), "p", "mountpoint"),
    (Station(id="A", mountpoint="M", ecef=ARP, source="rinex:a.obs"), "p", "nav"),
])
def test_registry_rejects_bad_stations(state_where, station, password, message):
    reg = open_registry(state_where("s.sqlite"))
    with pytest.raises(CorsError, match=message):
        reg.add(station, password=password)
    assert reg.list() == []


def test_duplicates_rejected(state_where):
    reg = open_registry(state_where("s.sqlite"))
    reg.add(Station(id="A", mountpoint="M", ecef=ARP), password="p")
    with pytest.raises(CorsError, match="already exists"):
        reg.add(Station(id="A", mountpoint="N", ecef=ARP), password="p")
    with pytest.raises(CorsError, match="already used"):
        reg.add(Station(id="B", mountpoint="M", ecef=ARP), password="p")


def test_source_kinds():
    src = parse_source("ntrip://user%40x.org:se%3Acret@caster.example:2102/MNT_1")
    assert (src.kind, src.host, src.port, src.user, src.password, src.mountpoint) == \
        ("ntrip", "caster.example", 2102, "user@x.org", "se:cret", "MNT_1")
    assert "se:cret" not in src.public()
    assert parse_source("tcp://10.0.0.1:5017").port == 5017
    r = parse_source("rinex:/data/base.21o?nav=/data/base.21p")
    assert (r.obs, r.nav) == ("/data/base.21o", "/data/base.21p")
    assert parse_source("push").kind == "push"


def test_token_store(state_where):
    store = open_tokens(state_where("tokens.sqlite"))
    token = store.create("vehicle", "car-1", mountpoints=["A", "B"])
    assert len(token) >= 40
    rec = store.verify(token)
    assert rec.name == "car-1" and rec.role == "vehicle" and rec.may_access("A") and not rec.may_access("C")
    assert store.verify_basic("car-1", token).name == "car-1"
    assert store.verify_basic("car-1", token + "x") is None and store.verify_basic("car-2", token) is None
    assert store.verify("nope") is None and store.verify("") is None
    other = store.create("admin")
    assert store.verify(other).role == "admin" and store.verify(other).may_access("anything")
    with pytest.raises(TokenError, match="already exists"):
        store.create("vehicle", "car-1")
    with pytest.raises(TokenError, match="unknown role"):
        store.create("root", "x")
    with pytest.raises(TokenError, match="bad token name"):
        store.create("vehicle", "a:b")
    raw = stored_text(state_where("tokens.sqlite"), "tokens")
    assert token not in raw and other not in raw and rec.name in raw
    assert store.revoke("car-1") and not store.revoke("car-1")
    assert store.verify(token) is None and store.verify_basic("car-1", token) is None
    assert [(t.name, t.revoked) for t in store.list() if t.name == "car-1"] == [("car-1", True)]


def _deploy_env(state_where, tmp_path) -> dict:
    """MAPSVC_HOME, plus MAPSVC_STORE for the PostgreSQL deployment (its tokens and stations then live there)."""
    env = {"MAPSVC_HOME": str(tmp_path)}
    if "://" in state_where("tokens.sqlite"):
        env["MAPSVC_STORE"] = f"{state_where('tokens.sqlite')}?blobs={tmp_path / 'shared'}"
    return env


def test_cli_stations_and_tokens(tmp_path, monkeypatch, state_where):
    for key, value in _deploy_env(state_where, tmp_path).items():
        monkeypatch.setenv(key, value)
    from mapsvc.cli import cli, main

    run = CliRunner().invoke
    r = run(cli, ["stations", "add", "3034", "--mountpoint", "GEONET3034", "--ecef", ",".join(map(str, ARP)),
                  "--password", "pw", "--name", "Fujisawa", "--receiver", "TRIMBLE NETR9"])
    assert r.exit_code == 0, r.output
    r = run(cli, ["stations", "list"])
    assert "GEONET3034" in r.output and "35.33" in r.output and "3959400" not in r.output
    r = run(cli, ["stations", "show", "3034"])
    assert json.loads(r.output)["ecef"] == list(ARP)
    r = run(cli, ["tokens", "create", "--role", "vehicle", "--name", "car1"])
    token = r.stdout.strip().splitlines()[-1]
    assert open_tokens(state_where("tokens.sqlite")).verify(token).name == "car1"
    assert open_registry(state_where("stations.sqlite")).get("3034").name == "Fujisawa"
    assert "car1" in run(cli, ["tokens", "list"]).output and token not in run(cli, ["tokens", "list"]).output
    assert run(cli, ["tokens", "revoke", "car1"]).exit_code == 0
    assert run(cli, ["stations", "remove", "3034"]).exit_code == 0
    # domain errors: one line, exit status 2
    for argv in (["stations", "show", "3034"], ["stations", "add", "X", "--mountpoint", "M", "--ecef", "1,2"],
                 ["tokens", "revoke", "car1"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    on_postgres = "://" in state_where("tokens.sqlite")
    # a PostgreSQL deployment keeps no token or station file in the home: nodes share the database instead
    assert (tmp_path / "tokens.sqlite").exists() != on_postgres
    assert (tmp_path / "stations.sqlite").exists() != on_postgres


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mapsvc_serve_runs_the_caster(tmp_path, state_where):
    env = dict(os.environ, **_deploy_env(state_where, tmp_path))
    open_registry(state_where("stations.sqlite")).add(
        Station(id="3034", mountpoint="GEONET3034", ecef=ARP), password="pw")
    port = _free_port()
    exe = Path(sys.executable).with_name("mapsvc")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from mapsvc.cli import main; main()"]
    proc = subprocess.Popen(cmd + ["serve", "--no-http", "--ntrip-port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError(proc.stderr.read1().decode())
        s.sendall(b"SOURCE pw /GEONET3034\r\nSource-Agent: NTRIP pytest\r\n\r\n")
        assert s.recv(100) == b"ICY 200 OK\r\n"
        if GMSD7.exists():
            s.sendall(b"".join(epochs_of(GMSD7)[:3]))
        q = socket.create_connection(("127.0.0.1", port), timeout=5)
        q.sendall(b"GET / HTTP/1.0\r\nUser-Agent: NTRIP pytest\r\n\r\n")
        reply = b""
        while chunk := q.recv(4096):
            reply += chunk
        assert reply.startswith(b"SOURCETABLE 200 OK") and b"CAS;127.0.0.1;%d;" % port in reply
        # the status the HTTP API (other processes) serves as GET /v1/stations and /metrics
        from cors.caster import read_status

        prom_line = b'cors_frames_total{station="3034",type="1077"} 3.0'
        prom = tmp_path / "cors_status.prom"
        for _ in range(100):  # the JSON and the Prometheus file are written one after the other
            doc = read_status(tmp_path / "cors_status.json")
            if doc and doc["stations"][0]["frames"] > 0 and (
                    not GMSD7.exists() or (prom.exists() and prom_line in prom.read_bytes())):
                break
            time.sleep(0.1)
        st = doc["stations"][0]
        assert st["id"] == "3034" and st["source_connected"] and "ecef" not in st
        if GMSD7.exists():
            assert st["up"] and st["message_types"]["1077"]["count"] == 3
            assert prom_line in prom.read_bytes()
        s.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode in (0, 130, -2)
