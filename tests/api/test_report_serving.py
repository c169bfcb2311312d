"""Reports are rendered when they are made and served as stored files (issue 14 item 3): under the embedded
server, parallel report downloads do not delay other tokens' tile requests, and what is served is what was
stored, byte for byte."""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import pytest
import requests

from .conftest import assert_problem, auth, stored_report

DOWNLOADERS = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reports(store):
    return stored_report(store)


@pytest.fixture(scope="module")
def embedded(api_home, reports):
    port = _free_port()
    env = {**os.environ, "MAPSVC_HOME": str(api_home["home"]), "MAPSVC_RATE_LIMIT": "1000000 per minute",
           "MAPSVC_ACCESS_LOG": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "mapsvc.http", "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(url + "/v1/health", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the embedded server did not start")
        time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("query, headers, key, mime", [
    ("?format=pdf&lang=zh", {}, "report.zh.pdf", "application/pdf"),
    ("?format=pdf", {"Accept-Language": "en-GB"}, "report.en.pdf", "application/pdf"),
    ("?lang=zh-CN", {"Accept": "text/html"}, "report.zh.html", "text/html"),
    ("?format=html&lang=en", {}, "report.en.html", "text/html"),
    ("", {}, "report.json", "application/json"),
])
def test_served_report_is_the_stored_one(embedded, api_home, reports, query, headers, key, mime):
    r = requests.get(f"{embedded}/v1/releases/r1/report{query}", timeout=30,
                     headers={**auth(api_home["tokens"]["surveyor"]), **headers})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith(mime)
    assert r.content == reports[key]
    if key.endswith(".pdf"):
        assert r.content.startswith(b"%PDF")


def test_report_in_an_unrendered_language_or_missing_rendering(embedded, api_home):
    h = auth(api_home["tokens"]["surveyor"])
    assert_problem(requests.get(f"{embedded}/v1/releases/r1/report?format=pdf&lang=fr", headers=h, timeout=10), 400)
    # r2 has no report at all
    assert_problem(requests.get(f"{embedded}/v1/releases/r2/report?format=pdf", headers=h, timeout=10), 404)


@pytest.mark.slow
def test_parallel_report_downloads_do_not_delay_tiles(embedded, api_home, store, reports):
    """16 surveyor threads download the PDF back to back while a vehicle fetches tiles: every tile answers
    within a bound (rendering per request took about 2.5 s of CPU per PDF and timed such tiles out)."""
    tiles = [t["id"] for t in store.manifest("r1")["tiles"]]
    surveyor, vehicle = auth(api_home["tokens"]["surveyor"]), auth(api_home["tokens"]["vehicle"])
    with requests.Session() as s:  # warm: each worker has loaded the release and its tiles once
        for tid in tiles * 3:
            assert s.get(f"{embedded}/v1/releases/r1/tiles/{tid}", headers=vehicle, timeout=30).status_code == 200
    stop = threading.Event()
    downloads, errors = [], []

    def download():
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    r = s.get(f"{embedded}/v1/releases/r1/report?format=pdf&lang=zh", headers=surveyor, timeout=30)
                    downloads.append(r.status_code == 200 and r.content == reports["report.zh.pdf"])
                except requests.RequestException as exc:
                    errors.append(exc)

    threads = [threading.Thread(target=download) for _ in range(DOWNLOADERS)]
    for t in threads:
        t.start()
    latencies = []
    try:
        time.sleep(0.5)
        with requests.Session() as s:
            t0 = time.monotonic()
            i = 0
            while time.monotonic() - t0 < 5.0:      # bounded: 5 s of tile requests
                t1 = time.monotonic()
                r = s.get(f"{embedded}/v1/releases/r1/tiles/{tiles[i % len(tiles)]}", headers=vehicle, timeout=10)
                latencies.append(time.monotonic() - t1)
                assert r.status_code == 200
                i += 1
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors[:3]
    assert len(downloads) >= DOWNLOADERS and all(downloads)   # reports were really being downloaded
    assert len(latencies) >= 20
    assert statistics.median(latencies) < 0.25, sorted(latencies)[-5:]
    assert max(latencies) < 1.5, sorted(latencies)[-5:]


def test_store_report_keeps_what_is_stored(store, reports):
    """A second `mapsvc check --release` keeps the stored report and renderings (attachments are immutable)."""
    from mapsvc.reports import report_attachments, store_report

    added = store_report(store, "r1", b'{"other": "report"}')
    assert set(added) == {key for key, _, _ in report_attachments()} and not any(added.values())
    assert {key: store.attachment("r1", key) for key in added} == reports
    assert len(added) == 5 and {"report.en.pdf", "report.zh.pdf", "report.en.html", "report.zh.html"} < set(added)
