"""Releases: content-addressed, immutable, atomic under kill -9, diff and export."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import LANELET2_DIR, mapsvc_cmd, require_shared
from mapsvc.pipeline import publish, tile_to_dir
from tiles import StoreError, open_store


def _modified_copy(src, dst):
    """The same map with one point's tags changed (a one-tile edit)."""
    data = src.read_bytes()
    i = data.index(b"<node ")
    j = data.index(b">", i)
    if data[j - 1:j] == b"/":
        data = data[:j - 1] + b'><tag k="note" v="edited"/></node>' + data[j + 1:]
    else:
        data = data[:j + 1] + b'<tag k="note" v="edited"/>' + data[j + 1:]
    dst.write_bytes(data)
    return dst


def test_publish_diff_export(tmp_path):
    src = require_shared(LANELET2_DIR / "mapping_example.osm")
    store_dir = tmp_path / "store"
    m1 = publish(src, "r1", store_dir, level=15)
    m2 = publish(_modified_copy(src, tmp_path / "edited.osm"), "r2", store_dir, level=15)
    store = open_store(store_dir)
    assert [r.name for r in store.releases()] == ["r1", "r2"]
    d = store.diff("r1", "r2")
    assert len(d["changed"]) >= 1 and d["added"] == [] and d["removed"] == []
    assert d["unchanged"] == len(m1["tiles"]) - len(d["changed"])
    # Unchanged tiles are stored once.
    blobs = list((store_dir / "blobs" / "sha256").glob("*/*"))
    assert len(blobs) == len(m1["tiles"]) + len(d["changed"])
    # Export has the layout of `mapsvc tile`, with the stored bytes.
    tiled = tile_to_dir(src, tmp_path / "tiled", level=15)
    store.export("r1", tmp_path / "exported")
    import hashlib
    for entry in m1["tiles"]:
        data = (tmp_path / "exported" / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and data == store.tile("r1", entry["id"])[0]
    assert json.loads((tmp_path / "exported" / "manifest.json").read_text())["tiles"] == m1["tiles"]
    layout = lambda d: sorted(str(p.relative_to(d)).split("/")[0] for p in d.iterdir())
    assert layout(tmp_path / "exported") == layout(tmp_path / "tiled") == ["manifest.json", "tiles"]
    assert set(tiled["tiles"][0]) == set(m1["tiles"][0])
    assert store.verify("r1") == [] and store.verify("r2") == []
    with pytest.raises(StoreError):
        publish(src, "r1", store_dir, level=15)  # immutable
    assert store.manifest("r1") == m1


def test_releases_cli(tmp_path, mapsvc_home):
    src = require_shared(LANELET2_DIR / "tier4_kashiwanoha_lanelet2_map.osm")
    run = lambda *a: subprocess.run(mapsvc_cmd() + list(a), capture_output=True, text=True, timeout=120)
    assert run("publish", str(src), "--release", "a", "--level", "15").returncode == 0
    assert run("publish", str(_modified_copy(src, tmp_path / "e.osm")), "--release", "b", "--level", "15").returncode == 0
    lst = run("releases", "list")
    assert lst.returncode == 0 and [l.split("\t")[0] for l in lst.stdout.splitlines()] == ["a", "b"]
    diff = json.loads(run("releases", "diff", "a", "b").stdout)
    assert diff["changed"]
    show = json.loads(run("releases", "show", "a").stdout)
    assert show["release"] == "a" and show["level"] == 15
    bad = run("releases", "show", "nope")
    assert bad.returncode == 2 and "unknown release" in bad.stderr
    assert run("export", "a", "--out", str(tmp_path / "x")).returncode == 0
    assert (tmp_path / "x" / "manifest.json").exists()


def test_publish_is_atomic_under_kill(tmp_path):
    """Kill -9 a publish at many moments: each time the store holds the whole release or none of it."""
    from benchmarks.mapgen import replicate
    src = require_shared(LANELET2_DIR / "autoware_core_road_shoulder_lanelet2_map.osm")
    big = replicate(src, tmp_path / "big.osm", 4)
    home = tmp_path / "home"
    env = dict(os.environ, MAPSVC_HOME=str(home))
    cmd = mapsvc_cmd()
    assert subprocess.run(cmd + ["publish", str(src), "--release", "base", "--level", "15"], env=env,
                          capture_output=True, timeout=120).returncode == 0
    store = open_store(home / "store")
    base = store.manifest("base")
    # How long a full publish takes here, to spread the kills over it.
    t0 = time.monotonic()
    assert subprocess.run(cmd + ["publish", str(big), "--release", "full", "--level", "15"], env=env,
                          capture_output=True, timeout=300).returncode == 0
    duration = time.monotonic() - t0
    complete = len(store.manifest("full")["tiles"])
    outcomes = []
    for k in range(6):
        name = f"k{k}"
        proc = subprocess.Popen(cmd + ["publish", str(big), "--release", name, "--level", "15"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(duration * (0.3 + 0.7 * k / 5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        names = [r.name for r in open_store(home / "store").releases()]
        if name in names:
            assert len(store.manifest(name)["tiles"]) == complete and store.verify(name) == []
            outcomes.append("complete")
        else:
            outcomes.append("none")
        assert store.manifest("base") == base and store.verify("base") == []
    assert "none" in outcomes, outcomes  # at least one kill landed mid-publish
    blob_dir = home / "store" / "blobs" / "sha256"
    before = len(list(blob_dir.glob("*/*")))
    removed = store.gc()
    on_disk = {p.name.split(".")[0] for p in blob_dir.glob("*/*")}
    referenced = {t["sha256"] for r in store.releases() for t in store.manifest(r.name)["tiles"]}
    assert on_disk == referenced and removed == before - len(on_disk)  # gc took exactly the orphans
    assert store.verify("full") == []
