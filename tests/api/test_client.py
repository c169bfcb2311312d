"""The vehicle client against a live server: verified fetch, cache, incremental update, tamper rejection,
the merged Lanelet2 map and map matching."""
from __future__ import annotations

import hashlib
import shutil
import sqlite3

import pytest

from tiles import signing
from mapsvc.client import FetchError, VehicleClient, VerificationError

RADIUS = 1500


def _client(server, api_home, cache, **kw):
    kw.setdefault("key_id", signing.active_key_id(api_home["home"]))
    return VehicleClient(server.url, api_home["tokens"]["vehicle"], cache, **kw)


def _cached_files(cache):
    return sorted(p.name for p in (cache / "tiles").glob("*.osm.gz")) if (cache / "tiles").exists() else []


def test_fetch_then_incremental_update(server, api_home, store, tmp_path):
    cache = tmp_path / "cache"
    c = _client(server, api_home, cache)
    first = c.fetch(api_home["lat"], api_home["lon"], RADIUS, release="r1")
    m1 = {t["id"]: t["sha256"] for t in store.manifest("r1")["tiles"]}
    assert first.tiles and set(first.tiles) <= set(m1)
    assert sorted(first.downloaded) == first.tiles and not first.reused
    for tid in first.tiles:  # cached bytes are exactly the verified tiles
        assert hashlib.sha256(c.tile_path(m1[tid]).read_bytes()).hexdigest() == m1[tid]

    again = c.fetch(api_home["lat"], api_home["lon"], RADIUS, release="r1")
    assert again.downloaded == [] and again.bytes_downloaded == 0 and again.manifest_not_modified
    assert sorted(again.reused) == first.tiles

    # r2 changed some tiles: only those (inside the area) are downloaded, through the delta
    update = c.fetch(api_home["lat"], api_home["lon"], RADIUS)  # latest = r2
    diff = store.diff("r1", "r2")
    changed_here = sorted(set(diff["changed"] + diff["added"]) & set(update.tiles))
    assert update.release == "r2" and update.used_delta
    assert sorted(update.downloaded) == changed_here and changed_here
    assert set(update.reused) == set(update.tiles) - set(changed_here)
    assert c.state()["release"] == "r2"

    # a pinned key kept in the cache is enough for later calls
    later = VehicleClient(server.url, api_home["tokens"]["vehicle"], cache).fetch(api_home["lat"], api_home["lon"], RADIUS)
    assert later.downloaded == [] and later.manifest_not_modified


def test_merged_map_and_matching(server, api_home, tmp_path):
    import lanelet2
    from lanelet2.core import BasicPoint3d

    from lanelets.osm import read_osm

    c = _client(server, api_home, tmp_path / "cache")
    c.fetch(api_home["lat"], api_home["lon"], RADIUS, release="r1")
    merged = read_osm(c.merged_osm())
    source = read_osm(api_home["map"])
    # every element of the merged tiles is the source's, once
    assert set(merged.rel_id.tolist()) <= set(source.rel_id.tolist())
    assert len(set(merged.node_id.tolist())) == merged.n_nodes
    lmap, projector = c.lanelet_map()
    assert isinstance(lmap, lanelet2.core.LaneletMap) and len(lmap.laneletLayer) > 10
    # a point on a lanelet's centreline, as WGS-84, matches that lanelet at ~0 m
    ll = next(iter(lmap.laneletLayer))
    mid = ll.centerline[len(ll.centerline) // 2]
    gps = projector.reverse(BasicPoint3d(mid.x, mid.y, 0.0))
    matches = c.match(gps.lat, gps.lon, max_dist=0.5)
    assert matches and ll.id in [i for i, _ in matches]
    assert dict(matches)[ll.id] < 0.05
    assert c.match(gps.lat + 0.5, gps.lon) == []  # 55 km away: nothing under it


def test_tampered_tile_is_rejected_and_not_cached(api_home, store, tmp_path):
    """A blob altered in the store: a server that checks (memory cache on) refuses it with 503; a server that
    passes bytes through (cache off: as a compromised server or a proxy would) sends it, and the client
    rejects it."""
    import requests

    from .conftest import LiveServer, auth

    entry = store.manifest("r1")["tiles"][0]
    blob = store.blob_file(entry["sha256"])
    saved = tmp_path / "saved"
    shutil.copy2(blob, saved)
    passthrough = LiveServer({"HOME": str(api_home["home"]), "TILE_CACHE_MB": 0})
    checking = LiveServer({"HOME": str(api_home["home"])})
    try:
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0x01
        blob.chmod(0o644)
        blob.write_bytes(bytes(data))
        r = requests.get(f"{checking.url}/v1/releases/r1/tiles/{entry['id']}",
                         headers=auth(api_home["tokens"]["vehicle"]), timeout=10)
        assert r.status_code == 503 and r.headers["Content-Type"] == "application/problem+json"
        cache = tmp_path / "cache"
        c = VehicleClient(passthrough.url, api_home["tokens"]["vehicle"], cache,
                          key_id=signing.active_key_id(api_home["home"]))
        lat, lon = (entry["bbox"][1] + entry["bbox"][3]) / 2, (entry["bbox"][0] + entry["bbox"][2]) / 2
        # the bbox is in published (offset) coordinates; the client takes a true position and offsets it
        import numpy as np

        from desensitize import get_provider

        tlon, tlat = get_provider("gcj02").inverse(np.array([lon]), np.array([lat]))
        with pytest.raises(VerificationError, match=rf"tile {entry['id']} of release r1: sha256 .* rejected"):
            c.fetch(float(tlat[0]), float(tlon[0]), 1.0, release="r1")
        assert entry["sha256"] + ".osm.gz" not in _cached_files(cache)
        assert not any(p.name.startswith(hashlib.sha256(bytes(data)).hexdigest()) for p in cache.rglob("*"))
        assert c.state() == {}  # the fetch did not complete: no state, no manifest
    finally:
        shutil.copy2(saved, blob)
        passthrough.close()
        checking.close()


def test_tampered_manifest_is_rejected(api_home, tmp_path):
    """A home of its own with release r3, whose manifest is altered in the catalogue after signing."""
    from mapsvc.pipeline import publish
    from tokens import TokenStore
    from .conftest import LiveServer
    from tiles import open_store

    home = tmp_path / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAPSVC_HOME", str(home))
        publish(api_home["map"], "r3", str(home / "store"), 15)
    store = open_store(home / "store")
    raw = store.manifest_raw("r3")
    first_sha = store.manifest("r3")["tiles"][0]["sha256"]
    tampered = raw.replace(first_sha.encode(), b"f" * 64)
    assert tampered != raw
    db = sqlite3.connect(store.db_path)
    with db:
        db.execute("UPDATE releases SET manifest=? WHERE name='r3'", (tampered,))
    db.close()
    tokens = TokenStore(home / "tokens.sqlite")
    token = tokens.create("vehicle", "car")
    tokens.close()
    srv = LiveServer({"HOME": str(home)})
    try:
        cache = tmp_path / "cache"
        c = VehicleClient(srv.url, token, cache, key_id=signing.active_key_id(home))
        with pytest.raises(VerificationError, match="release r3: manifest signature does not verify"):
            c.fetch(api_home["lat"], api_home["lon"], RADIUS, release="r3")
        assert not (cache / "manifests" / "r3.json").exists() and c.state() == {}
        assert _cached_files(cache) == []
    finally:
        srv.close()


def test_wrong_pinned_key_is_rejected(server, api_home, tmp_path):
    other_home = tmp_path / "other"
    other = signing.create_key(other_home)
    pub = tmp_path / "other.pub"
    pub.write_text(other.pem)
    c = _client(server, api_home, tmp_path / "cache", key_id=None, public_key=pub)
    with pytest.raises(VerificationError, match="not the pinned key"):
        c.fetch(api_home["lat"], api_home["lon"], RADIUS, release="r1")
    with pytest.raises(FetchError, match="no public key with id"):
        _client(server, api_home, tmp_path / "c2", key_id=other.key_id).fetch(api_home["lat"], api_home["lon"], RADIUS)
    with pytest.raises(FetchError, match="no pinned public key"):
        VehicleClient(server.url, api_home["tokens"]["vehicle"], tmp_path / "c3").fetch(api_home["lat"], api_home["lon"], RADIUS)


def test_bad_token_is_a_clear_error(server, api_home, tmp_path):
    c = VehicleClient(server.url, "nope", tmp_path / "cache", key_id=signing.active_key_id(api_home["home"]))
    with pytest.raises(FetchError, match="HTTP 401"):
        c.fetch(api_home["lat"], api_home["lon"], RADIUS)
