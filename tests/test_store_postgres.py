"""The PostgreSQL + PostGIS release store on a real PostgreSQL: same answers as the SQLite store for the same
release, tile queries in the database, and atomic publishing across processes (racing publishers, SIGKILL)."""
import hashlib
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import LANELET2_DIR, mapsvc_cmd, require_shared
from mapsvc.pipeline import publish
from tiles import StoreError, open_store


def pg_store_url(postgres_url, blobs) -> str:
    return f"{postgres_url}?blobs={blobs}"


@pytest.fixture
def both(tmp_path, postgres_url, mapsvc_home):
    """The same real map published to a SQLite store and to a PostgreSQL store."""
    src = require_shared(LANELET2_DIR / "mapping_example.osm")
    url = pg_store_url(postgres_url, tmp_path / "shared")
    m_pg = publish(src, "r1", url, level=15)
    m_sq = publish(src, "r1", tmp_path / "sqlite", level=15)
    assert m_pg["tiles"] == m_sq["tiles"] and m_pg["tiles"]
    return open_store(url), open_store(tmp_path / "sqlite"), src


def test_postgres_store_serves_what_sqlite_serves(both, tmp_path):
    pg, sq, _ = both
    assert [(r.name, r.level, r.tiles, r.bytes) for r in pg.releases()] == \
           [(r.name, r.level, r.tiles, r.bytes) for r in sq.releases()]
    assert pg.releases()[0].manifest_sha256 == hashlib.sha256(pg.manifest_raw("r1")).hexdigest()
    undated = lambda m: {k: v for k, v in m.items() if k != "created"}  # published a few seconds apart
    assert undated(pg.manifest("r1")) == undated(sq.manifest("r1"))
    for t in pg.manifest("r1")["tiles"]:
        data, sha = pg.tile("r1", t["id"])
        assert sha == t["sha256"] == hashlib.sha256(data).hexdigest() and data == sq.tile("r1", t["id"])[0]
    audits = [json.loads(st.attachment("r1", "audit.json", restricted_ok=True)) for st in (pg, sq)]
    assert audits[0].keys() == audits[1].keys() and audits[0]["release"] == audits[1]["release"] == "r1"
    with pytest.raises(StoreError):
        pg.attachment("r1", "audit.json")  # restricted
    with pytest.raises(StoreError, match="unknown release"):
        pg.manifest("nope")
    with pytest.raises(StoreError, match="has no tile"):
        pg.tile("r1", 1)
    pg.add_attachment("r1", "note.txt", b"hi", False)
    with pytest.raises(StoreError, match="already has"):
        pg.add_attachment("r1", "note.txt", b"again", False)
    assert pg.verify("r1") == []
    victim = pg.blob_file(pg.manifest("r1")["tiles"][0]["sha256"])
    victim.write_bytes(b"damaged")
    assert len(pg.verify("r1")) == 1
    pg.export("r1", tmp_path / "out")  # export is the base class's, over the store's reads
    assert (tmp_path / "out" / "manifest.json").exists()


def test_tile_queries_run_in_postgis_and_match(both):
    """Box and radius queries are ST_Intersects / ST_DWithin in the database and select the tiles the API's
    in-memory view selects (grid floor rule for boxes; geodesic radius)."""
    from tiles.view import ReleaseView

    pg, sq, _ = both
    view = ReleaseView.of("r1", sq.manifest_raw("r1"))
    b = view.bboxes
    w, s, e, n = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
    rng = np.random.default_rng(7)
    boxes = [(w, s, e, n), (b[0, 0], b[0, 1], b[0, 0], b[0, 1]),  # a tile corner: the floor rule decides
             (b[0, 2], b[0, 3], b[0, 2] + 1e-9, b[0, 3] + 1e-9)]
    for _ in range(40):
        x0, x1 = sorted(rng.uniform(w - 0.002, e + 0.002, 2))
        y0, y1 = sorted(rng.uniform(s - 0.002, n + 0.002, 2))
        boxes.append((x0, y0, x1, y1))
    for box in boxes:
        want = sorted(int(view.ids[i]) for i in view.in_bbox(*box))
        assert pg.tiles_in_bbox("r1", *box) == want, box
    hits = 0
    for _ in range(40):
        lat, lon = rng.uniform(s, n), rng.uniform(w, e)
        radius = float(rng.choice([1.0, 50.0, 300.0, 2000.0]))
        got = pg.tiles_in_radius("r1", lat, lon, radius)
        want = sorted(int(view.ids[i]) for i in view.in_circle(lat, lon, radius))
        # the view's circle is a 72-gon inscribed in the true one: it may only miss tiles PostGIS finds
        assert set(want) <= set(got) and len(got) - len(want) <= 1, (lat, lon, radius)
        hits += len(got)
    assert hits > 0
    with pytest.raises(StoreError, match="unknown release"):
        pg.tiles_in_bbox("nope", w, s, e, n)


def _env(home, url):
    return dict(os.environ, MAPSVC_HOME=str(home), MAPSVC_STORE=url)


@pytest.mark.slow
def test_two_publishers_of_one_name_one_wins(tmp_path, postgres_url):
    src = require_shared(LANELET2_DIR / "autoware_core_road_shoulder_lanelet2_map.osm")
    other = require_shared(LANELET2_DIR / "autoware_core_2km_test.osm")
    url = pg_store_url(postgres_url, tmp_path / "shared")
    env = _env(tmp_path / "home", url)
    procs = [subprocess.Popen(mapsvc_cmd() + ["publish", str(p), "--release", "same", "--level", "15"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in (src, other)]
    outs = [(p.wait(300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in outs)
    assert codes == [0, 2], outs
    loser = next(err for rc, err in outs if rc == 2)
    assert "already exists" in loser and "Traceback" not in loser and len(loser.strip().splitlines()) == 1
    store = open_store(url)
    assert [r.name for r in store.releases()] == ["same"] and store.verify("same") == []
    winner = store.manifest("same")
    assert len(winner["tiles"]) == store.releases()[0].tiles  # one whole release, not a mix


@pytest.mark.slow
def test_publish_is_atomic_under_kill(tmp_path, postgres_url):
    """SIGKILL a publish at many moments: the PostgreSQL store holds the whole release or none of it."""
    from benchmarks.mapgen import replicate

    src = require_shared(LANELET2_DIR / "autoware_core_road_shoulder_lanelet2_map.osm")
    big = replicate(src, tmp_path / "big.osm", 4)
    url = pg_store_url(postgres_url, tmp_path / "shared")
    env = _env(tmp_path / "home", url)
    cmd = mapsvc_cmd()
    t0 = time.monotonic()
    assert subprocess.run(cmd + ["publish", str(big), "--release", "full", "--level", "15"], env=env,
                          capture_output=True, timeout=300).returncode == 0
    duration = time.monotonic() - t0
    store = open_store(url)
    full = store.manifest("full")
    outcomes = []
    for k in range(5):
        name = f"k{k}"
        proc = subprocess.Popen(cmd + ["publish", str(big), "--release", name, "--level", "15"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(duration * (0.4 + 0.65 * k / 4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if name in [r.name for r in store.releases()]:
            assert store.manifest(name)["tiles"] == full["tiles"] and store.verify(name) == []
            outcomes.append("complete")
        else:
            assert store._one("SELECT count(*) FROM release_tiles WHERE release=%s", (name,))[0] == 0
            outcomes.append("none")
        assert store.manifest("full") == full and store.verify("full") == []
    assert "none" in outcomes, outcomes
    store.gc()
    assert store.verify("full") == []


def test_api_area_queries_on_postgres_match_sqlite(both, tmp_path, mapsvc_home):
    """GET /v1/releases/r1/tiles?bbox= / ?lat=&lon=&radius_m= answered from PostGIS equals the SQLite answer."""
    from mapsvc.api import create_app
    from mapsvc.config import state_db
    from tokens import open_tokens

    pg, sq, _ = both
    urls = (f"{pg.dsn}?blobs={pg.blobs.root.parents[1]}", str(tmp_path / "sqlite"))
    auths = []
    for url in urls:  # each deployment's own token store: the PostgreSQL one's is in its database
        tokens = open_tokens(state_db("tokens.sqlite", url, mapsvc_home))
        auths.append({"Authorization": f"Bearer {tokens.create('vehicle', 'car')}"})
        tokens.close()
    apps = [create_app({"HOME": str(mapsvc_home), "STORE_URL": url, "ACCESS_LOG": False,
                        "RATE_LIMIT_ENABLED": False}).test_client() for url in urls]
    b = np.array([t["bbox"] for t in sq.manifest("r1")["tiles"]])
    cx, cy = float(b[:, [0, 2]].mean()), float(b[:, [1, 3]].mean())
    queries = [f"bbox={cx - 0.002},{cy - 0.002},{cx + 0.002},{cy + 0.002}", f"bbox={cx},{cy},{cx},{cy}",
               f"lat={cy}&lon={cx}&radius_m=150", f"lat={cy}&lon={cx}&radius_m=1"]
    for q in queries:
        got = [app.get(f"/v1/releases/r1/tiles?{q}", headers=auth) for app, auth in zip(apps, auths)]
        assert [g.status_code for g in got] == [200, 200], q
        assert got[0].get_json()["tiles"] == got[1].get_json()["tiles"] and got[0].get_json()["tiles"], q


def test_a_request_waiting_on_postgres_does_not_stall_its_http_worker(tmp_path, postgres_url, mapsvc_home):
    """One gevent worker: while a request waits for a locked table, the worker still answers others (psycopg 3
    waits through gevent's patched select when it is imported after the patching, as in the worker). A wait
    in C would stall every request of the worker until the lock goes."""
    import sys
    import threading

    import psycopg
    import requests

    from mapsvc.engines import free_port

    url = pg_store_url(postgres_url, tmp_path / "shared")
    open_store(url)  # the schema
    port = free_port()
    env = dict(os.environ, MAPSVC_HOME=str(mapsvc_home), MAPSVC_STORE=url)
    proc = subprocess.Popen([sys.executable, "-m", "mapsvc.http", "--port", str(port), "--workers", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    lock = psycopg.connect(postgres_url)
    try:
        for _ in range(200):
            try:
                if requests.get(base + "/v1/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        time.sleep(1.5)  # past the catalogue's cache: the next health check asks the database
        lock.execute("LOCK TABLE releases IN ACCESS EXCLUSIVE MODE")
        waiting = {}
        t = threading.Thread(target=lambda: waiting.update(r=requests.get(base + "/v1/health", timeout=60)))
        t.start()
        time.sleep(1.0)
        assert t.is_alive(), "the health check did not wait for the locked table"
        t0 = time.monotonic()
        other = requests.get(base + "/v1/openapi.json", timeout=10)
        answered_s = time.monotonic() - t0
        assert other.status_code == 200 and answered_s < 5.0, answered_s
        assert t.is_alive()  # still waiting: the other request went past it
        lock.rollback()
        t.join(30)
        assert waiting["r"].status_code == 200
    finally:
        lock.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def test_store_tokens_and_stations_come_back_after_a_postgres_restart(tmp_path):
    """PostgreSQL restarts (a failover, an upgrade): the long-lived connections of the release store, the
    token store and the station registry reconnect by themselves; reads right after the restart answer."""
    from cors.stations import Station, open_registry
    from mapsvc.engines import EngineMissing, Postgres
    from tokens import open_tokens

    pg = Postgres(tmp_path / "pg")
    try:
        pg.start()
    except EngineMissing as exc:
        pytest.skip(str(exc))
    try:
        store = open_store(pg_store_url(pg.url, tmp_path / "shared"))
        tokens, registry = open_tokens(pg.url), open_registry(pg.url)
        token = tokens.create("vehicle", "car1")
        registry.add(Station(id="S1", mountpoint="S1", ecef=(-2148744.0, 4426641.0, 4044655.0), name="S1"),
                     password="src")
        assert store.releases() == [] and tokens.verify(token).name == "car1" and registry.get("S1")
        pg.stop(fast=True)  # every session is cut
        pg.start()  # same data, same port
        assert store.releases() == []
        assert tokens.verify(token).name == "car1"
        assert [s.id for s in registry.list()] == ["S1"]
        assert tokens.create("vehicle", "car2")  # writes too, once the connection is back
    finally:
        pg.stop()
