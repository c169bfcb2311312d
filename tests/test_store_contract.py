"""The release-store contract: every store registered in ``tiles.store.STORES`` passes the same tests.

A new back end (PostgreSQL) registers itself in STORES and adds a maker to ``STORE_MAKERS`` below (a function
giving a fresh, empty store in a temp folder, starting whatever server it needs); the fixture refuses to run
with a registered store that has no maker. Tiles come from the bundled road spec (no ../shared needed).
The SIGKILL tests of a real publish stay in tests/test_store.py.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json

import pytest

from tiles import StoreError, cut, make_manifest, open_store
from tiles.store import STORES, ReleaseStore, manifest_bytes, tile_changes
from tiles.view import ReleaseView

STORE_MAKERS = {
    "sqlite": lambda tmp_path: open_store(f"sqlite://{tmp_path / 'store'}"),
}

BAD_NAMES = ["", "r\n", "r\r\n", "\nr", "latest", "-r", ".r", "a/b", "a b", "..", "r" * 129, "é", None, 7]


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path) -> ReleaseStore:
    maker = STORE_MAKERS.get(request.param)
    if maker is None:
        pytest.fail(f"store {request.param!r} is registered in STORES but has no maker in STORE_MAKERS")
    s = maker(tmp_path)
    assert isinstance(s, ReleaseStore)
    return s


@pytest.fixture(scope="module")
def pilot_tiles(tmp_path_factory):
    """Tiles of the bundled pilot road spec at level 15 (20 tiles)."""
    from lanelets import build, read_osm
    from mapsvc.demo import roadspec_path

    osm = tmp_path_factory.mktemp("pilot") / "pilot.osm"
    build(roadspec_path(), osm)
    tiles = cut(read_osm(osm), 15)
    assert len(tiles) >= 6
    return tiles


def _edited(tile):
    """The same tile with one more tag: other bytes, other sha256."""
    data = gzip.compress(gzip.decompress(tile.data).replace(b"</osm>", b"<!-- edited --></osm>"), mtime=0)
    return dataclasses.replace(tile, data=data, sha256=hashlib.sha256(data).hexdigest())


def _publish(store, name, tiles, **kw):
    return store.publish(name, tiles, make_manifest(tiles, 15, release=name), **kw)


# -- publish, list, show -----------------------------------------------------------------------------------
def test_publish_list_show(store, pilot_tiles):
    with pytest.raises(StoreError):
        store.latest()
    assert store.releases() == []
    m1 = _publish(store, "r1", pilot_tiles)
    m2 = _publish(store, "r2", pilot_tiles[:3])
    rel = store.releases()
    assert [r.name for r in rel] == ["r1", "r2"] and store.latest().name == "r2"
    assert rel[0].tiles == len(pilot_tiles) and rel[0].bytes == sum(t.bytes for t in pilot_tiles)
    assert rel[1].tiles == 3 and rel[0].level == 15
    for r, m in zip(rel, (m1, m2)):
        raw = store.manifest_raw(r.name)
        assert raw == manifest_bytes(m)  # the exact bytes that are signed
        assert r.manifest_sha256 == hashlib.sha256(raw).hexdigest()
        assert store.manifest(r.name) == json.loads(raw) == m
    with pytest.raises(StoreError):
        store.manifest_raw("nope")
    with pytest.raises(StoreError):
        _publish(store, "r1", pilot_tiles[:1])  # immutable
    assert store.manifest("r1") == m1


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_release_names_are_refused(store, pilot_tiles, name):
    with pytest.raises(StoreError, match="release name"):
        store.publish(name, pilot_tiles[:1], make_manifest(pilot_tiles[:1], 15))
    assert store.releases() == []


# -- tiles and blobs ---------------------------------------------------------------------------------------
def test_tiles_and_blobs(store, pilot_tiles):
    _publish(store, "r1", pilot_tiles)
    for t in pilot_tiles:
        data, sha = store.tile("r1", t.id)
        assert data == t.data and sha == t.sha256
        assert store.blob(t.sha256) == t.data
        path = store.blob_file(t.sha256)
        if path is not None:
            assert path.read_bytes() == t.data
    with pytest.raises(StoreError):
        store.tile("r1", 1)
    with pytest.raises(StoreError):
        store.tile("nope", pilot_tiles[0].id)
    for bad in ("0" * 64, "../etc/passwd", "A" * 64):
        with pytest.raises(StoreError):
            store.blob(bad)
    with pytest.raises(StoreError):
        store.blob_file("../../x")


def test_tiles_are_stored_once(store, pilot_tiles):
    _publish(store, "r1", pilot_tiles)
    _publish(store, "r2", pilot_tiles)
    assert store.gc() == 0  # every blob is referenced
    assert store.verify("r1") == store.verify("r2") == []


# -- attachments -------------------------------------------------------------------------------------------
def test_attachments(store, pilot_tiles):
    _publish(store, "r1", pilot_tiles, attachments={"manifest.sig": (b"sig", False), "audit.json": (b"a", True)})
    assert store.attachment("r1", "manifest.sig") == b"sig"
    with pytest.raises(StoreError):
        store.attachment("r1", "audit.json")  # restricted
    assert store.attachment("r1", "audit.json", restricted_ok=True) == b"a"
    with pytest.raises(StoreError):
        store.attachment("r1", "report.json")
    store.add_attachment("r1", "report.json", b"{}", False)
    assert store.attachment("r1", "report.json") == b"{}"
    with pytest.raises(StoreError):
        store.add_attachment("r1", "report.json", b"other", False)  # never replaced
    assert store.attachment("r1", "report.json") == b"{}"
    with pytest.raises(StoreError):
        store.add_attachment("nope", "report.json", b"{}", False)


# -- diff --------------------------------------------------------------------------------------------------
def test_diff_and_the_api_delta_agree(store, pilot_tiles):
    t = list(pilot_tiles)
    _publish(store, "r1", t[:-1])
    new = [_edited(t[0])] + t[1:3] + t[4:]   # t0 changed, t3 removed, the last one added
    _publish(store, "r2", new)
    d = store.diff("r1", "r2")
    assert d == {"from": "r1", "to": "r2", "added": [t[-1].id], "changed": [t[0].id], "removed": [t[3].id],
                 "unchanged": len(t) - 3}
    assert store.diff("r1", "r1")["unchanged"] == len(t) - 1
    views = [ReleaseView.of(n, store.manifest_raw(n)) for n in ("r1", "r2")]
    ch = tile_changes(views[0].content_keys(), views[1].content_keys())
    assert (ch.added, ch.changed, ch.removed, ch.unchanged) == (d["added"], d["changed"], d["removed"],
                                                                d["unchanged"])


def test_diff_counts_a_raster_change(store, pilot_tiles):
    t = pilot_tiles[0]
    for name, sha in (("r1", "1" * 64), ("r2", "2" * 64)):
        m = make_manifest([t], 15, release=name)
        m["tiles"][0]["rasters"] = {"lidar": {"sha256": sha, "bytes": 1, "path": "x"}}
        store.publish(name, [t], m)
    assert store.diff("r1", "r2")["changed"] == [t.id]


# -- verify and export -------------------------------------------------------------------------------------
def test_verify_finds_a_damaged_blob(store, pilot_tiles):
    _publish(store, "r1", pilot_tiles)
    assert store.verify("r1") == []
    path = store.blob_file(pilot_tiles[1].sha256)
    if path is None:
        pytest.skip("this store keeps no local blob files to damage")
    path.write_bytes(b"damaged")
    problems = store.verify("r1")
    assert len(problems) == 1 and str(pilot_tiles[1].id) in problems[0]


def test_export(store, pilot_tiles, tmp_path):
    m = _publish(store, "r1", pilot_tiles)
    out = tmp_path / "export"
    assert store.export("r1", out) == m
    assert json.loads((out / "manifest.json").read_text()) == m
    for entry in m["tiles"]:
        assert hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]


# -- atomicity ---------------------------------------------------------------------------------------------
def test_a_tile_that_does_not_match_its_hash_publishes_nothing(store, pilot_tiles):
    _publish(store, "r1", pilot_tiles[:2])
    fresh = pilot_tiles[2]
    bad = dataclasses.replace(pilot_tiles[3], sha256="0" * 64)
    with pytest.raises(StoreError, match="sha256"):
        _publish(store, "r2", [fresh, bad])
    assert [r.name for r in store.releases()] == ["r1"]
    store.gc()  # whatever the failed publish left is unreferenced
    with pytest.raises(StoreError):
        store.blob(fresh.sha256)
    assert store.verify("r1") == []


def test_a_publish_failing_midway_leaves_nothing(store, pilot_tiles):
    def boom(n, seen=[]):
        seen.append(n)
        if len(seen) == 3:
            raise KeyboardInterrupt  # as a signal would, mid-publish
    with pytest.raises(KeyboardInterrupt):
        _publish(store, "r1", pilot_tiles, progress=boom)
    with pytest.raises(Exception):
        _publish(store, "r1", pilot_tiles, attachments={"manifest.sig": (b"s", False), "bad": (None, False)})
    assert store.releases() == []
    with pytest.raises(StoreError):
        store.manifest_raw("r1")
    with pytest.raises(StoreError):
        store.attachment("r1", "manifest.sig")
    _publish(store, "r1", pilot_tiles)  # the name is still free
    assert store.verify("r1") == []


def test_open_store_by_url(tmp_path):
    with pytest.raises(StoreError, match="no release store"):
        open_store("nosuch://x")
    assert open_store(tmp_path / "plain").releases() == []


# -- manifests signed before the spelling was fixed --------------------------------------------------------
def test_an_old_manifest_still_verifies_and_is_read(store, pilot_tiles, tmp_path):
    """A release published with the key ``desensitization`` keeps its bytes and its signature; readers find
    its record under the same accessor as a new one's ``desensitisation``."""
    from tiles import signing
    from tiles.store import DESENSITISATION, desensitisation_of

    record = {"profile": "pilot-test", "offset": {"name": "gcj02"}}
    old = make_manifest(pilot_tiles, 15, release="old", desensitization=record)
    new = make_manifest(pilot_tiles, 15, release="new", **{DESENSITISATION: record})
    for name, m in (("old", old), ("new", new)):
        store.publish(name, pilot_tiles, m, attachments=signing.release_signature(m, tmp_path))
        sig = store.attachment(name, signing.SIG_ATTACHMENT)
        key = signing.public_key(tmp_path, signing.parse_signature(sig)["key_id"]).public_key
        assert signing.verify_bytes(store.manifest_raw(name), sig, key)
        assert desensitisation_of(store.manifest(name)) == record
    assert b'"desensitization"' in store.manifest_raw("old") and b'"desensitisation"' in store.manifest_raw("new")
