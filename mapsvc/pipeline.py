"""Wiring of the map pipeline: read -> cut -> manifest -> store. No domain logic of its own."""
from __future__ import annotations

import hashlib
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from lanelets.osm import read_osm
from tiles import cut, make_manifest, open_store, write_tile_dir
from tiles.grid import DEFAULT_LEVEL

from mapsvc import __version__


@contextmanager
def progress(desc: str, total: int):
    """A tqdm bar on a terminal; nothing in pipes and logs."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="tile", file=sys.stderr, disable=not sys.stderr.isatty(), leave=False)
    try:
        yield bar.update
    finally:
        bar.close()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tile_map(path, level: int = DEFAULT_LEVEL, origin=None, *, release: str | None = None):
    """Read and cut a map; returns (tiles, manifest). Nothing is written."""
    path = Path(path)
    m = read_osm(path)
    with progress("tiling", 0) as tick:
        tiles = cut(m, level, origin, progress=tick)
    summary = m.summary()
    summary.pop("source", None)
    meta = {
        "generator": f"mapsvc {__version__}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {"file": path.name, "sha256": file_sha256(path), "summary": summary},
        "origin": list(origin) if origin else None,
    }
    if release:
        meta["release"] = release
    return tiles, make_manifest(tiles, level, **meta)


def tile_to_dir(path, out, level: int = DEFAULT_LEVEL, origin=None) -> dict:
    tiles, manifest = tile_map(path, level, origin)
    write_tile_dir(out, manifest, {t.sha256: t.data for t in tiles})
    return manifest


def publish(path, release: str, store_url, level: int = DEFAULT_LEVEL, origin=None) -> dict:
    store = open_store(store_url)
    if any(r.name == release for r in store.releases()):
        from tiles import StoreError

        raise StoreError(f"release {release!r} already exists; releases are immutable")
    tiles, manifest = tile_map(path, level, origin, release=release)
    with progress("publishing", len(tiles)) as tick:
        return store.publish(release, tiles, manifest, progress=tick)
