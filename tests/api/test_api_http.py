"""The HTTP API against a live server: auth, manifests and signatures, tiles and ETags, area queries, delta,
bad input, rate limits, reports, the OpenAPI document."""
from __future__ import annotations

import hashlib
import http.client
import json
import stat

import pytest
import requests

from .conftest import LiveServer, assert_problem, auth, stored_report

ROLES = ("vehicle", "producer", "surveyor", "admin")


# -- auth ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/releases", "/v1/releases/latest", "/v1/releases/r1",
                                  "/v1/releases/r1/manifest.sig", "/v1/releases/r1/tiles?bbox=8.4,49,8.5,49.1",
                                  "/v1/releases/r2/delta?from=r1", "/v1/releases/r1/report"])
def test_missing_or_invalid_token_is_401_problem(get, path):
    body = assert_problem(get(path, role=None), 401)
    assert "token" in body["detail"]
    for headers in ({"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic dXNlcjpwYXNz"},
                    {"Authorization": "Bearer " + "x" * 5000}):
        r = get(path, role=None, headers=headers)
        assert_problem(r, 401)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_is_401(get):
    assert_problem(get("/v1/releases", role="revoked"), 401)


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_releases(get, role):
    r = get("/v1/releases", role=role)
    assert r.status_code == 200
    assert [x["name"] for x in r.json()["releases"]] == ["r1", "r2"]


@pytest.mark.parametrize("role", ["vehicle", "producer"])
def test_report_is_forbidden_to_vehicles_and_producers(get, role):
    body = assert_problem(get("/v1/releases/r1/report", role=role), 403)
    assert role in body["detail"]


def test_health_keys_openapi_need_no_token(get):
    for path in ("/v1/health", "/v1/keys", "/v1/openapi.json"):
        assert get(path, role=None).status_code == 200


# -- releases, manifests, signatures ---------------------------------------------------------------
def test_latest_and_list(get, store):
    latest = get("/v1/releases/latest").json()
    assert latest["name"] == "r2" == store.latest().name
    assert latest["manifest_sha256"] == hashlib.sha256(store.manifest_raw("r2")).hexdigest()


def test_manifest_is_the_signed_canonical_bytes(get, store, api_home):
    from tiles import signing

    r = get("/v1/releases/r1")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.content == store.manifest_raw("r1")
    assert r.headers["ETag"] == f'"{hashlib.sha256(r.content).hexdigest()}"'
    assert get("/v1/releases/r1", headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    sig = get("/v1/releases/r1/manifest.sig").content
    keys = get("/v1/keys", role=None).json()["keys"]
    assert len(keys) == 1 and keys[0]["active"]
    pub = signing.load_public_key(keys[0]["public_key"].encode())
    assert signing.verify_bytes(r.content, sig, pub)["key_id"] == keys[0]["key_id"]
    with pytest.raises(signing.SignatureError):
        signing.verify_bytes(r.content.replace(b'"level":15', b'"level":14'), sig, pub)
    # r2's signature does not verify r1's manifest
    with pytest.raises(signing.SignatureError):
        signing.verify_bytes(r.content, get("/v1/releases/r2/manifest.sig").content, pub)


def test_private_key_is_0600_and_never_served(get, api_home):
    keydir = api_home["home"] / "keys"
    private = list(keydir.glob("*.key"))
    assert len(private) == 1
    assert stat.S_IMODE(private[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(keydir.stat().st_mode) == 0o700
    secret = private[0].read_bytes()
    body = b"".join(get(p, role="admin").content for p in
                    ("/v1/keys", "/v1/openapi.json", "/v1/health", "/v1/releases/r1", "/v1/releases/r1/manifest.sig"))
    assert b"PRIVATE" not in body
    pem_body = b"".join(secret.splitlines()[1:-1])
    assert pem_body not in body


# -- tiles ---------------------------------------------------------------------------------------------
def test_tile_bytes_etag_and_304(get, store):
    manifest = store.manifest("r1")
    entry = manifest["tiles"][0]
    r = get(f"/v1/releases/r1/tiles/{entry['id']}")
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == entry["sha256"]
    assert r.content[:2] == b"\x1f\x8b"  # a gzip file, served as is
    assert r.headers["ETag"] == f'"{entry["sha256"]}"'
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert int(r.headers["Content-Length"]) == entry["bytes"]
    for inm in (r.headers["ETag"], f'W/{r.headers["ETag"]}', f'"x", {r.headers["ETag"]}', "*"):
        nm = get(f"/v1/releases/r1/tiles/{entry['id']}", headers={"If-None-Match": inm})
        assert nm.status_code == 304 and nm.content == b""
        assert nm.headers["ETag"] == r.headers["ETag"]
    other = get(f"/v1/releases/r1/tiles/{entry['id']}", headers={"If-None-Match": '"' + "0" * 64 + '"'})
    assert other.status_code == 200 and other.content == r.content


@pytest.mark.parametrize("cache_mb", [64, 0])
def test_fast_tile_path_answers_like_the_flask_route(api_home, store, cache_mb):
    """The WSGI fast path and the Flask route give the same status, headers and bytes (200 and 304), from
    memory or from the blob file."""
    fast = LiveServer({"HOME": str(api_home["home"]), "TILE_CACHE_MB": cache_mb})
    slow = LiveServer({"HOME": str(api_home["home"]), "TILE_CACHE_MB": cache_mb, "FAST_TILE_PATH": False})
    try:
        h = auth(api_home["tokens"]["vehicle"])
        for entry in store.manifest("r1")["tiles"][:3]:
            path = f"/v1/releases/r1/tiles/{entry['id']}"
            requests.get(fast.url + path, headers=h, timeout=10)  # loads the release; then the fast path
            for extra in ({}, {"If-None-Match": f'"{entry["sha256"]}"'}):
                a = requests.get(fast.url + path, headers={**h, **extra}, timeout=10)
                b = requests.get(slow.url + path, headers={**h, **extra}, timeout=10)
                assert a.status_code == b.status_code
                assert a.content == b.content
                keys = ("Content-Type", "Content-Length", "ETag", "Cache-Control")
                assert {k: a.headers.get(k) for k in keys} == {k: b.headers.get(k) for k in keys}
    finally:
        fast.close()
        slow.close()


def test_every_tile_matches_its_manifest_hash(get, store):
    for entry in store.manifest("r2")["tiles"]:
        r = get(f"/v1/releases/r2/tiles/{entry['id']}")
        assert hashlib.sha256(r.content).hexdigest() == entry["sha256"]


def test_bbox_query_matches_the_grid(get, store, api_home):
    from tiles.grid import tiles_for_bbox

    ids = {t["id"]: t["sha256"] for t in store.manifest("r1")["tiles"]}
    lat, lon = api_home["lat"], api_home["lon"]
    for bbox in ((lon - 0.0175, lat - 0.0155, lon + 0.0125, lat + 0.0045), (lon - 0.0075, lat - 0.0055, lon - 0.0065,
                 lat - 0.0045), (0.0, 0.0, 1.0, 1.0)):
        r = get("/v1/releases/r1/tiles", params={"bbox": ",".join(map(str, bbox))})
        assert r.status_code == 200
        got = {t["id"]: t["sha256"] for t in r.json()["tiles"]}
        want = set(tiles_for_bbox(*bbox, level=15)) & set(ids)
        assert set(got) == want
        assert all(ids[i] == s for i, s in got.items())


def test_radius_query(get, store, api_home):
    from pyproj import Geod

    from tiles.grid import point_to_tile, tile_bbox

    ids = {t["id"] for t in store.manifest("r1")["tiles"]}
    lat, lon = api_home["lat"], api_home["lon"]
    small = {t["id"] for t in get("/v1/releases/r1/tiles", params={"lat": lat, "lon": lon, "radius_m": 1}).json()["tiles"]}
    assert small == {point_to_tile(lon, lat, 15)} & ids
    big = get("/v1/releases/r1/tiles", params={"lat": lat, "lon": lon, "radius_m": 1500}).json()["tiles"]
    big_ids = {t["id"] for t in big}
    assert small <= big_ids <= ids and len(big_ids) > len(small)
    g = Geod(ellps="WGS84")
    for tid in ids - big_ids:  # every tile left out is farther than the radius from the point
        w, s, e, n = tile_bbox(tid)
        cx, cy = min(max(lon, w), e), min(max(lat, s), n)
        assert g.inv(lon, lat, cx, cy)[2] > 1500 * 0.99


def test_delta_matches_store_diff(get, store):
    d = get("/v1/releases/r2/delta", params={"from": "r1"}).json()
    want = store.diff("r1", "r2")
    assert [t["id"] for t in d["changed"]] == want["changed"] and want["changed"]
    assert [t["id"] for t in d["added"]] == want["added"]
    assert d["removed"] == want["removed"]
    assert d["unchanged"] == want["unchanged"] > 0
    new = {t["id"]: t["sha256"] for t in store.manifest("r2")["tiles"]}
    assert all(new[t["id"]] == t["sha256"] for t in d["changed"])
    same = get("/v1/releases/r1/delta", params={"from": "r1"}).json()
    assert same["changed"] == same["added"] == same["removed"] == []


# -- bad input: 4xx problem documents, never 5xx, never a file outside the store ----------------------
BAD = [
    ("/v1/releases/nope", 404), ("/v1/releases/nope/tiles/545365884", 404), ("/v1/releases/r1/tiles/abc", 400),
    ("/v1/releases/r1/tiles/1", 400), ("/v1/releases/r1/tiles/99999999999", 400),
    ("/v1/releases/r1/tiles/-99999999999", 400), ("/v1/releases/r1/tiles/1e5", 400),
    ("/v1/releases/r1/tiles/0x20000", 400), ("/v1/releases/r1/tiles/%00", 400),
    ("/v1/releases/r1/tiles/65536", 404),  # a valid level-0 tile the release does not have
    ("/v1/releases/..%2F..%2Fetc%2Fpasswd", 404), ("/v1/releases/r1/tiles/..%2F..%2Fcatalogue.sqlite", (400, 404)),
    ("/v1/releases/%2e%2e/tiles/1", (400, 404)), ("/v1/releases/r1%00/tiles", 404),
    ("/v1/releases/r1/tiles", 400), ("/v1/releases/r1/tiles?bbox=1,2,3", 400),
    ("/v1/releases/r1/tiles?bbox=a,b,c,d", 400), ("/v1/releases/r1/tiles?bbox=nan,1,2,3", 400),
    ("/v1/releases/r1/tiles?bbox=inf,1,2,3", 400), ("/v1/releases/r1/tiles?bbox=3,1,2,2", 400),
    ("/v1/releases/r1/tiles?bbox=-180,-90,180,90", 400), ("/v1/releases/r1/tiles?bbox=1,2,3,4&bbox=1,2,3,4", 400),
    ("/v1/releases/r1/tiles?lat=91&lon=0&radius_m=10", 400), ("/v1/releases/r1/tiles?lat=1&lon=2", 400),
    ("/v1/releases/r1/tiles?lat=1&lon=2&radius_m=-1", 400), ("/v1/releases/r1/tiles?lat=1&lon=2&radius_m=1e999", 400),
    ("/v1/releases/r1/tiles?lat=1&lon=2&radius_m=1e9", 400), ("/v1/releases/r1/tiles?bbox=1,2,3,4&lat=1", 400),
    ("/v1/releases/r1/tiles?foo=1", 400), ("/v1/releases/r1/delta", 400), ("/v1/releases/r1/delta?from=..%2F", 404),
    ("/v1/releases/r1/delta?from=r1&from=r2", 400), ("/v1/releases/r1/tiles/{tile}?redirect=2", 400),
    ("/v1/releases/r1/tiles/{tile}/url", 404), ("/v1/releases/r1/tiles/{tile}?a=1", 400), ("/v1/nothing", 404), ("/etc/passwd", 404),
    ("/v1/releases/r1/report?format=exe", 400), ("/v1/releases/" + "a" * 300, 404),
    ("/v1/releases/r1/tiles?bbox=" + "1" * 5000, 414),
]


@pytest.mark.parametrize("path,status", BAD)
def test_bad_input_is_a_4xx_problem(server, api_home, store, path, status):
    path = path.replace("{tile}", str(store.manifest("r1")["tiles"][0]["id"]))
    # http.client sends the path exactly as written (no dot-segment or percent normalisation)
    conn = http.client.HTTPConnection("127.0.0.1", server.server.server_port, timeout=10)
    conn.request("GET", path, headers=auth(api_home["tokens"]["admin"]))
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    statuses = status if isinstance(status, tuple) else (status,)
    assert resp.status in statuses, (resp.status, body[:300])
    assert resp.getheader("Content-Type").startswith("application/problem+json")
    doc = json.loads(body)
    assert doc["status"] == resp.status
    assert b"root:" not in body and b"SQLite format" not in body


def test_non_get_methods_are_problems(server, api_home):
    r = requests.post(server.url + "/v1/releases", headers=auth(api_home["tokens"]["admin"]), data=b"x", timeout=10)
    assert_problem(r, 405)
    assert "GET" in r.headers["Allow"]


# -- restricted attachments and reports --------------------------------------------------------------
def test_restricted_attachment_never_served_and_report_route(get, store):
    from tiles.errors import StoreError

    store.add_attachment("r1", "audit-extra.json", b'{"secret": "audit-trail-xyz"}', True)
    try:
        audit = store.attachment("r1", "audit.json", restricted_ok=True)  # written by publish (desensitize)
    except StoreError:
        audit = None
    try:
        from standards import check_release
    except ImportError:
        check_release = None
    if check_release is not None:
        stored_report(store)
    seen = b""
    for role in ROLES:
        for path in ("/v1/releases/r1", "/v1/releases/r1/manifest.sig", "/v1/releases/r1/report",
                     "/v1/releases/r1/report?format=html", "/v1/releases/r1/audit.json",
                     "/v1/releases/r1/audit-extra.json"):
            seen += get(path, role=role).content
    assert b"audit-trail-xyz" not in seen
    if audit is not None:
        assert audit not in seen and audit[:200] not in seen
    try:
        from standards.report import render  # noqa: F401
    except ImportError:
        assert_problem(get("/v1/releases/r1/report", role="surveyor"), 404)
        return
    r = get("/v1/releases/r1/report", role="surveyor", headers={"Accept": "text/html"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    r = get("/v1/releases/r1/report?format=pdf", role="admin")
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    assert_problem(get("/v1/releases/r2/report", role="admin"), 404)


def _keys(store, release) -> set[str]:
    import sqlite3

    db = sqlite3.connect(store.db_path)
    try:
        return {r[0] for r in db.execute("SELECT key FROM attachments WHERE release=?", (release,))}
    finally:
        db.close()


# -- rate limits --------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["limits", "flask-limiter"])
def test_rate_limit_per_token_429_with_retry_after(api_home, store, engine):
    srv = LiveServer({"HOME": str(api_home["home"]), "RATE_LIMIT": "4 per minute", "RATE_LIMIT_ENGINE": engine})
    try:
        toks = api_home["tokens"]
        # tile GETs (the fast path once the release is loaded) and other endpoints share one budget per token
        tile = f"/v1/releases/r1/tiles/{store.manifest('r1')['tiles'][0]['id']}"
        paths = ["/v1/releases", tile, tile, tile, tile, "/v1/releases"]
        codes = [requests.get(srv.url + p, headers=auth(toks["vehicle"]), timeout=10) for p in paths]
        assert [r.status_code for r in codes] == [200] * 4 + [429] * 2
        body = assert_problem(codes[-1], 429)
        assert "4 per 1 minute" in body["detail"]
        assert 1 <= int(codes[-1].headers["Retry-After"]) <= 61
        # another token has its own budget; health is never limited
        assert requests.get(srv.url + "/v1/releases", headers=auth(toks["producer"]), timeout=10).status_code == 200
        assert all(requests.get(srv.url + "/v1/health", timeout=10).status_code == 200 for _ in range(6))
    finally:
        srv.close()


# -- signed URLs for nginx secure_link ------------------------------------------------------------------
def test_signed_tile_url_and_redirect(api_home, store):
    import base64
    import time
    from urllib.parse import parse_qs, urlsplit

    srv = LiveServer({"HOME": str(api_home["home"]), "SECURE_LINK_SECRET": "s3cret",
                      "SECURE_LINK_BASE": "https://tiles.example/blobs", "SECURE_LINK_TTL": 60})
    try:
        entry = store.manifest("r1")["tiles"][0]
        h = auth(api_home["tokens"]["vehicle"])
        doc = requests.get(f"{srv.url}/v1/releases/r1/tiles/{entry['id']}/url", headers=h, timeout=10).json()
        u = urlsplit(doc["url"])
        assert u.path == f"/blobs/{entry['sha256'][:2]}/{entry['sha256']}.osm.gz"
        q = parse_qs(u.query)
        assert int(q["expires"][0]) == doc["expires"] and 0 < doc["expires"] - time.time() <= 61
        # nginx: secure_link_md5 "$secure_link_expires$uri s3cret"
        want = base64.urlsafe_b64encode(hashlib.md5(f"{doc['expires']}{u.path} s3cret".encode()).digest())
        assert q["md5"][0] == want.rstrip(b"=").decode()
        r = requests.get(f"{srv.url}/v1/releases/r1/tiles/{entry['id']}?redirect=1", headers=h, timeout=10,
                         allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"].startswith("https://tiles.example/blobs/")
        assert_problem(requests.get(f"{srv.url}/v1/releases/r1/tiles/{entry['id']}/url", timeout=10), 401)
    finally:
        srv.close()


# -- OpenAPI ------------------------------------------------------------------------------------------
def test_openapi_is_valid_and_covers_every_route(get, server):
    spec = get("/v1/openapi.json", role=None).json()
    assert spec["openapi"].startswith("3.1")
    try:
        from openapi_spec_validator import validate
    except ImportError:
        pytest.skip("openapi-spec-validator not installed")
    validate(spec)
    routes = set()
    for rule in server.app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<{arg}>", "{%s}" % arg)
        routes.add(path)
    assert routes == set(spec["paths"]), routes ^ set(spec["paths"])


def test_names_with_a_trailing_newline_are_not_names(get, store):
    """Release names and station ids are fullmatched: r1 plus a newline is no release (issue 14 item 6)."""
    tid = store.manifest("r1")["tiles"][0]["id"]
    assert get("/v1/releases/r1").status_code == 200
    for path in ("/v1/releases/r1%0A", "/v1/releases/r1%0D%0A", f"/v1/releases/r1%0A/tiles/{tid}",
                 "/v1/releases/r1%0A/delta?from=r1", "/v1/releases/r2/delta?from=r1%0A"):
        assert_problem(get(path), 404)
    assert_problem(get("/v1/stations/S1%0A", role="admin"), 400)
