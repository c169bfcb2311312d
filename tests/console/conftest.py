"""A real `mapsvc serve` (gunicorn HTTP + NTRIP caster) over a throw-away $MAPSVC_HOME with two releases of a
shared Lanelet2 map (r1, and r2 with one lanelet's tags changed), r1's quality report, a token per role and a
registered station; and a headless Chromium for it. Screenshots go to test-artifacts/console/ (gitignored)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import LANELET2_DIR, REPO, mapsvc_cmd
from tests.console import browser as chromium

MAP_NAME = "mapping_example.osm"  # Karlsruhe: lanelets, areas, traffic lights, right of way; 10 tiles at level 15
LEVEL = 15
ARTIFACTS = REPO / "test-artifacts" / "console"
STATION = {"id": "GEONET3034", "mountpoint": "M3034", "password": "pw",
           "ecef": "-3959400.631,3385704.533,3667523.111"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def console_home(tmp_path_factory):
    src = LANELET2_DIR / MAP_NAME
    if not src.exists():
        pytest.skip(f"../shared/data/lanelet2/{MAP_NAME} absent: the console tests need a real map")
    from mapsvc.api.console import maplibre_dir

    if not (maplibre_dir() / "dist" / "maplibre-gl-csp.js").exists():
        pytest.skip("node_modules/maplibre-gl is absent: `make setup` installs it (npm ci from package-lock.json)")
    why = chromium.missing()
    if why:
        pytest.skip(why)
    from mapsvc.pipeline import publish
    from mapsvc.reports import store_report
    from tokens import TokenStore
    from standards import check_release
    from standards.report import render
    from tests.api.conftest import modified_copy
    from tiles import open_store

    home = tmp_path_factory.mktemp("console") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAPSVC_HOME", str(home))
        store_url = str(home / "store")
        publish(src, "r1", store_url, LEVEL)
        publish(modified_copy(src, home.parent / "modified.osm"), "r2", store_url, LEVEL)
        store = open_store(store_url)
        store_report(store, "r1", render(check_release(store, "r1", home), "json", "en"))
        tokens = TokenStore(home / "tokens.sqlite")
        toks = {role: tokens.create(role, f"console-{role}") for role in ("vehicle", "producer", "surveyor", "admin")}
        tokens.close()
    env = dict(os.environ, MAPSVC_HOME=str(home))
    add = subprocess.run(mapsvc_cmd() + ["stations", "add", STATION["id"], "--mountpoint", STATION["mountpoint"],
                                         "--ecef", STATION["ecef"], "--password", STATION["password"]],
                         env=env, capture_output=True, text=True, timeout=60)
    assert add.returncode == 0, add.stderr
    return {"home": home, "store": store, "tokens": toks, "env": env}


@pytest.fixture(scope="module")
def console(console_home):
    """`mapsvc serve` on free ports; stations go down after 2 s of silence."""
    http, ntrip = _free_port(), _free_port()
    proc = subprocess.Popen(mapsvc_cmd() + ["serve", "--port", str(http), "--ntrip-port", str(ntrip),
                                            "--down-after", "2"],
                            env=console_home["env"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    url = f"http://127.0.0.1:{http}"
    try:
        for _ in range(300):
            try:
                if requests.get(url + "/v1/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or gunicorn still starting its workers
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"mapsvc serve exited: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        else:
            raise RuntimeError("mapsvc serve did not answer within 30 s")
        yield {**console_home, "url": url, "ntrip_port": ntrip}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # serve and its gunicorn child (own session)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture
def browser():
    b = chromium.Browser()
    try:
        yield b
    finally:
        b.quit()


@pytest.fixture
def shot(request):
    """shot(browser, name): a screenshot kept as a test artifact."""
    def _shot(b, name):
        return b.screenshot(ARTIFACTS / f"{request.node.name}-{name}.png")
    return _shot
