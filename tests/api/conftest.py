"""A real mapsvc API on 127.0.0.1 (werkzeug server in a thread) over a temp $MAPSVC_HOME holding two
releases: r1 = a map, r2 = the same map with one lanelet's tags changed.

Every test here runs on two maps: the pilot map built from the bundled road spec (always there), and the
shared real Lanelet2 map (Karlsruhe; skipped with a reason when ../shared is absent)."""
from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
LANELET2_DIR = REPO.parent / "shared" / "data" / "lanelet2"
MAP_NAME = "mapping_example.osm"   # Karlsruhe: 10 tiles at level 15, lat/lon points
LEVEL = 15


def pilot_map(out: Path) -> Path:
    from lanelets import build
    from mapsvc.demo import roadspec_path

    build(roadspec_path(), out)
    return out


def shared_map() -> Path:
    path = LANELET2_DIR / MAP_NAME
    if not path.exists():
        pytest.skip(f"../shared/data/lanelet2/{MAP_NAME} absent: API tests need a real map")
    return path


def modified_copy(src: Path, dst: Path) -> Path:
    """The map with one extra tag on one lanelet (so the tiles holding that lanelet change, the rest don't)."""
    text = src.read_bytes()
    m = re.search(rb'<tag k=["\x27]type["\x27] v=["\x27]lanelet["\x27]\s*/>', text)
    assert m, "no lanelet in the shared map"
    dst.write_bytes(text[:m.end()] + b'<tag k="mapsvc_test" v="changed"/>' + text[m.end():])
    return dst


class LiveServer:
    """create_app(config) served by werkzeug's threaded server on a free port."""

    def __init__(self, config: dict):
        from werkzeug.serving import make_server

        from mapsvc.api import create_app

        self.app = create_app({"ACCESS_LOG": False, **config})
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture(scope="package", params=["pilot", "karlsruhe"])
def api_home(request, tmp_path_factory):
    """$MAPSVC_HOME with releases r1, r2 (signed at publish) and one token per role; ``lat``/``lon``: a
    position inside the map whose 1500 m circle holds tiles r2 changed."""
    from mapsvc.pipeline import publish
    from tokens import TokenStore
    from tiles import open_store
    from tiles.grid import tile_bbox

    base = tmp_path_factory.mktemp("api")
    src = pilot_map(base / "pilot.osm") if request.param == "pilot" else shared_map()
    home = base / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAPSVC_HOME", str(home))
        store_url = str(home / "store")
        publish(src, "r1", store_url, LEVEL)
        publish(modified_copy(src, home.parent / "modified.osm"), "r2", store_url, LEVEL)
        if request.param == "karlsruhe":
            lat, lon = 49.0055, 8.4175   # inside the Karlsruhe example map
        else:  # the middle of a tile the edit changed
            w, s, e, n = tile_bbox(open_store(store_url).diff("r1", "r2")["changed"][0])
            lat, lon = (s + n) / 2, (w + e) / 2
        tokens = TokenStore(home / "tokens.sqlite")
        toks = {role: tokens.create(role, f"test-{role}") for role in ("vehicle", "producer", "surveyor", "admin")}
        toks["revoked"] = tokens.create("vehicle", "test-revoked")
        tokens.revoke("test-revoked")
        tokens.close()
        yield {"home": home, "store_url": store_url, "tokens": toks, "map": src, "lat": lat, "lon": lon}


@pytest.fixture(scope="package")
def server(api_home):
    srv = LiveServer({"HOME": str(api_home["home"]), "RATE_LIMIT": "100000 per minute"})
    yield srv
    srv.close()


@pytest.fixture(scope="package")
def store(api_home):
    from tiles import open_store

    return open_store(api_home["store_url"])


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def get(server, api_home):
    """GET with a role's token: get(path, role="vehicle", **requests kwargs)."""
    def _get(path, role="vehicle", **kw):
        headers = dict(kw.pop("headers", {}) or {})
        if role is not None:
            headers.update(auth(api_home["tokens"][role]))
        return requests.get(server.url + path, headers=headers, timeout=10, **kw)
    return _get


def assert_problem(resp, status: int | tuple):
    statuses = status if isinstance(status, tuple) else (status,)
    assert resp.status_code in statuses, (resp.status_code, resp.text[:300])
    assert resp.headers["Content-Type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert body["status"] == resp.status_code and body["title"]
    return body


def stored_report(store, release: str = "r1") -> dict:
    """The release's real report, stored with its renderings as `mapsvc check --release` stores it."""
    import json

    from mapsvc.reports import report_attachments, store_report
    from standards import check_release
    from tiles.errors import StoreError

    try:
        for key, _, _ in report_attachments():
            store.attachment(release, key)
    except StoreError:
        report = check_release(store, release, store.root.parent)
        store_report(store, release, json.dumps(report).encode())
    return {key: store.attachment(release, key) for key, _, _ in report_attachments()}
