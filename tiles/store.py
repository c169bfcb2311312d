"""The release store: immutable, named sets of tiles plus a manifest.

Tiles are stored once per content (sha256-addressed blobs), so a tile unchanged between releases costs
nothing. :class:`ReleaseStore` is the whole interface its callers use; the SQLite store is the embedded
default and other back ends (PostgreSQL) register in :data:`STORES` by URL scheme (``open_store``).

Publishing is atomic: blobs are written first (temp file, fsync, rename; a blob nobody references is
harmless and ``gc`` removes it), then the release and all its tile rows go in one SQLite transaction. A process
killed at any moment leaves either the whole release or none, and earlier releases are never touched.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from lanelets.files import write_atomic
from tiles.blobs import BlobDir, BlobFiles
from tiles.cutter import Tile
from tiles.errors import StoreError

MANIFEST_FORMAT = "mapsvc-tiles/1"
RESERVED_NAMES = frozenset({"latest"})  # an API alias
RELEASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # use fullmatch (see check_release_name)


def tile_path(tile_id: int) -> str:
    return f"tiles/{tile_id}.osm.gz"


def raster_path(layer: str, tile_id: int) -> str:
    """Where a tile's raster layer sits in an exported release (manifest ``tiles[].rasters[layer].path``)."""
    return f"rasters/{layer}/{tile_id}.tif"


def raster_attachment(layer: str, tile_id: int) -> str:
    """The release attachment key of a tile's raster layer (public: vehicles fetch it)."""
    return f"raster/{layer}/{tile_id}.tif"


def _raster_files(manifest: dict):
    """(layer, tile id, entry) of every per-tile raster a manifest lists."""
    from tiles.raster import LAYER_NAME

    for t in manifest["tiles"]:
        for layer, r in sorted((t.get("rasters") or {}).items()):
            if not LAYER_NAME.fullmatch(layer):  # it becomes a directory name
                raise StoreError(f"tile {t['id']}: raster layer name {layer[:80]!r} is not valid")
            yield layer, int(t["id"]), r


def make_manifest(tiles: list[Tile], level: int, **meta) -> dict:
    return {
        "format": MANIFEST_FORMAT,
        **meta,
        "level": level,
        "tiles": [
            {"id": t.id, "sha256": t.sha256, "bytes": t.bytes, "path": tile_path(t.id),
             "bbox": list(t.bbox), "counts": t.counts}
            for t in sorted(tiles, key=lambda t: t.id)
        ],
    }


DESENSITISATION = "desensitisation"   # the manifest key (British, as in the report and the docs)
_OLD_DESENSITISATION = "desensitization"  # manifests published before the spelling was fixed (still signed)


def desensitisation_of(manifest: dict) -> dict | None:
    """A manifest's desensitisation record, under either spelling (old signed manifests are never rewritten)."""
    return manifest.get(DESENSITISATION, manifest.get(_OLD_DESENSITISATION))


def content_key(entry: dict) -> str:
    """What a tile of a manifest is, for diffs: its vector tile hash and the hashes of its raster layers."""
    rasters = entry.get("rasters") or {}
    return entry["sha256"] + "".join(f"|{k}={rasters[k]['sha256']}" for k in sorted(rasters))


def manifest_bytes(manifest: dict) -> bytes:
    """Canonical JSON (sorted keys, no spaces): what is hashed and signed."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def write_tile_dir(out: str | os.PathLike, manifest: dict, blobs: dict[str, bytes]) -> None:
    """Write ``manifest.json`` and the tiles to ``out``, all or nothing (built aside, then renamed)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "tiles").mkdir()
        for entry in manifest["tiles"]:
            (tmp / entry["path"]).write_bytes(blobs[entry["sha256"]])
        for layer, tid, r in _raster_files(manifest):
            target = tmp / raster_path(layer, tid)  # from the validated layer name and id, not the manifest text
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blobs[r["sha256"]])
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False))
        old = None
        if out.exists():
            if not out.is_dir():
                raise StoreError(f"{out}: exists and is not a directory")
            if any(out.iterdir()) and not (out / "manifest.json").exists():
                raise StoreError(f"{out}: directory is not empty and holds no tile manifest; refusing to replace it")
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclass
class ReleaseInfo:
    name: str
    created: str
    level: int
    tiles: int
    bytes: int
    manifest_sha256: str


def check_release_name(name) -> str:
    """``name`` if it may name a new release, else :class:`StoreError` (it becomes a URL segment and a file
    name; ``fullmatch``, since ``$`` would let a trailing newline through)."""
    if not isinstance(name, str) or not RELEASE_NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise StoreError(f"release name {str(name)[:80]!r}: use letters, digits, '.', '_' or '-' (at most 128), "
                         f"not {', '.join(sorted(RESERVED_NAMES))}")
    return name


@dataclass
class TileChanges:
    """What changed between two releases, tile by tile (a tile whose vector data or any raster layer changed is
    changed). ``added``/``changed`` in the new release's order, ``removed`` sorted."""
    added: list[int]
    changed: list[int]
    removed: list[int]
    unchanged: int


def tile_changes(old: Iterable[tuple[int, str]], new: Iterable[tuple[int, str]]) -> TileChanges:
    """The one release diff: (tile id, :func:`content_key`) pairs of the old and the new release."""
    before = dict(old)
    added, changed, seen = [], [], set()
    for tid, key in new:
        seen.add(tid)
        if tid not in before:
            added.append(tid)
        elif before[tid] != key:
            changed.append(tid)
    removed = sorted(set(before) - seen)
    return TileChanges(added, changed, removed, len(seen) - len(added) - len(changed))


class ReleaseStore(ABC):
    """Every release store does this; the service, the CLI, the checks and the client use nothing else.

    A back end implements the abstract methods and registers a factory in :data:`STORES` under its URL
    scheme; ``tests/store_contract.py`` then runs the same contract over it. Errors are :class:`StoreError`
    (one line). Releases are immutable: nothing here changes or removes a published release, its tiles or its
    attachments. Blobs (tiles) are addressed by their lower-case hex sha256.
    """

    # -- writing -------------------------------------------------------------------------------------
    @abstractmethod
    def publish(self, name: str, tiles: list[Tile], manifest: dict,
                attachments: dict[str, tuple[bytes, bool]] | None = None,
                progress: Callable[[int], None] | None = None) -> dict:
        """Store release ``name`` all or nothing: its tiles (each checked against its sha256), the manifest
        (kept as :func:`manifest_bytes`, what is signed) and ``attachments`` {key: (data, restricted)}.
        Rejects a bad name (:func:`check_release_name`) or one already taken. ``progress(n)`` is called as
        tiles are written. A process killed at any moment leaves the whole release or none of it."""

    @abstractmethod
    def add_attachment(self, name: str, key: str, data: bytes, restricted: bool) -> None:
        """Attach a file to a published release (a report); never replaces an attachment (StoreError)."""

    @abstractmethod
    def gc(self) -> int:
        """Remove blobs no release references (left by an interrupted publish); returns how many."""

    # -- reading -------------------------------------------------------------------------------------
    @abstractmethod
    def releases(self) -> list[ReleaseInfo]:
        """Every release, oldest publish first."""

    @abstractmethod
    def manifest_raw(self, name: str) -> bytes:
        """The manifest exactly as stored: the canonical bytes that are hashed, signed and served."""

    @abstractmethod
    def tile(self, name: str, tile_id: int) -> tuple[bytes, str]:
        """(bytes, sha256) of one tile of a release."""

    @abstractmethod
    def blob(self, sha256: str) -> bytes:
        """A stored tile blob by its sha256 (StoreError if missing or not a sha256)."""

    @abstractmethod
    def blob_file(self, sha256: str) -> Path | None:
        """The local file holding a blob, for sendfile and a front nginx; None when this back end keeps no
        local files (callers then use :meth:`blob`). Raises StoreError for a malformed sha256."""

    @abstractmethod
    def attachment(self, name: str, key: str, *, restricted_ok: bool = False) -> bytes:
        """A release attachment; a restricted one (e.g. audit.json) only with ``restricted_ok``."""

    def derived_dir(self, kind: str) -> Path | None:
        """A directory for files made from tiles (``kind``: e.g. ``geojson``), shared as the blobs are, so a
        conversion done once (at publish) serves every node; None when this back end keeps no local files."""
        return None

    # -- derived (the same for every back end) --------------------------------------------------------
    def manifest(self, name: str) -> dict:
        return json.loads(self.manifest_raw(name))

    def latest(self) -> ReleaseInfo:
        rel = self.releases()
        if not rel:
            raise StoreError("no release has been published")
        return rel[-1]

    def diff(self, a: str, b: str) -> dict:
        """Tiles added, changed and removed going from release ``a`` to release ``b`` (:func:`tile_changes`)."""
        pairs = [[(t["id"], content_key(t)) for t in self.manifest(n)["tiles"]] for n in (a, b)]
        ch = tile_changes(*pairs)
        return {"from": a, "to": b, "added": sorted(ch.added), "changed": sorted(ch.changed),
                "removed": ch.removed, "unchanged": ch.unchanged}

    def verify(self, name: str) -> list[str]:
        """Problems found re-hashing every tile and raster of a release against its manifest (empty: intact)."""
        problems = []
        manifest = self.manifest(name)
        for t in manifest["tiles"]:
            try:
                data = self.blob(t["sha256"])
            except StoreError as exc:
                problems.append(str(exc))
                continue
            if hashlib.sha256(data).hexdigest() != t["sha256"]:
                problems.append(f"tile {t['id']}: stored bytes do not match sha256 {t['sha256']}")
        for layer, tid, r in _raster_files(manifest):
            try:
                data = self.attachment(name, raster_attachment(layer, tid))
            except StoreError as exc:
                problems.append(str(exc))
                continue
            if hashlib.sha256(data).hexdigest() != r["sha256"]:
                problems.append(f"tile {tid}: raster {layer!r} does not match sha256 {r['sha256']}")
        return problems

    #: True when the back end answers area queries from an index of its own (PostGIS); the API then asks it
    #: instead of scanning the release view it keeps in memory
    indexed_area_queries = False

    def tiles_in_bbox(self, name: str, west: float, south: float, east: float, north: float) -> list[int]:
        """Ids (ascending) of a release's tiles touching a lon/lat box, with the grid's floor rule (a tile is
        [west, east) x [south, north))."""
        from tiles.view import ReleaseView

        view = ReleaseView.of(name, self.manifest_raw(name))
        return sorted(int(view.ids[i]) for i in view.in_bbox(west, south, east, north))

    def tiles_in_radius(self, name: str, lat: float, lon: float, radius_m: float) -> list[int]:
        """Ids (ascending) of a release's tiles within ``radius_m`` metres (geodesic, WGS 84) of a point."""
        from tiles.view import ReleaseView

        view = ReleaseView.of(name, self.manifest_raw(name))
        return sorted(int(view.ids[i]) for i in view.in_circle(lat, lon, radius_m))

    def export(self, name: str, out: str | os.PathLike) -> dict:
        """Write a release to ``out`` in the layout of ``mapsvc tile`` (:func:`write_tile_dir`)."""
        manifest = self.manifest(name)
        blobs = {t["sha256"]: self.blob(t["sha256"]) for t in manifest["tiles"]}
        for layer, tid, r in _raster_files(manifest):
            blobs[r["sha256"]] = self.attachment(name, raster_attachment(layer, tid))
        write_tile_dir(out, manifest, blobs)
        return manifest


class SqliteReleaseStore(BlobFiles, ReleaseStore):
    """SQLite catalogue + a directory of content-addressed blobs (the embedded default)."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS releases (
        name TEXT PRIMARY KEY, created TEXT NOT NULL, level INTEGER NOT NULL,
        manifest BLOB NOT NULL, manifest_sha256 TEXT NOT NULL, seq INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS release_tiles (
        release TEXT NOT NULL REFERENCES releases(name), tile_id INTEGER NOT NULL,
        sha256 TEXT NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (release, tile_id));
    CREATE TABLE IF NOT EXISTS attachments (
        release TEXT NOT NULL REFERENCES releases(name), key TEXT NOT NULL, data BLOB NOT NULL,
        restricted INTEGER NOT NULL, PRIMARY KEY (release, key));
    CREATE INDEX IF NOT EXISTS release_tiles_sha ON release_tiles(sha256);
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.blobs = BlobDir(self.root / "blobs" / "sha256")
        self.blob_dir = self.blobs.root
        self.db_path = self.root / "catalogue.sqlite"
        with self._connect() as db:
            db.executescript(self.SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    # -- writing -------------------------------------------------------------------------------------
    def publish(self, name, tiles, manifest, attachments=None, progress=None) -> dict:
        check_release_name(name)
        with self._connect() as db:
            if db.execute("SELECT 1 FROM releases WHERE name=?", (name,)).fetchone():
                raise StoreError(f"release {name!r} already exists; releases are immutable")
        for t in tiles:
            if hashlib.sha256(t.data).hexdigest() != t.sha256:
                raise StoreError(f"tile {t.id}: data does not match its sha256")
            self.blobs.put(t.data, t.sha256)
            if progress is not None:
                progress(1)
        body = manifest_bytes(manifest)
        created = manifest.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            if db.execute("SELECT 1 FROM releases WHERE name=?", (name,)).fetchone():
                raise StoreError(f"release {name!r} already exists; releases are immutable")
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM releases").fetchone()[0]
            db.execute("INSERT INTO releases VALUES (?,?,?,?,?,?)",
                       (name, created, manifest["level"], body, hashlib.sha256(body).hexdigest(), seq))
            db.executemany("INSERT INTO release_tiles VALUES (?,?,?,?)",
                           [(name, t.id, t.sha256, t.bytes) for t in tiles])
            for key, (data, restricted) in (attachments or {}).items():
                db.execute("INSERT INTO attachments VALUES (?,?,?,?)", (name, key, data, int(restricted)))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()
        return manifest

    def add_attachment(self, name: str, key: str, data: bytes, restricted: bool) -> None:
        self.manifest_raw(name)
        with self._connect() as db:
            try:
                db.execute("INSERT INTO attachments VALUES (?,?,?,?)", (name, key, data, int(restricted)))
            except sqlite3.IntegrityError:
                raise StoreError(f"release {name!r} already has {key!r}") from None

    # -- reading -------------------------------------------------------------------------------------
    def releases(self) -> list[ReleaseInfo]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT r.name, r.created, r.level, COUNT(t.tile_id), COALESCE(SUM(t.bytes), 0), r.manifest_sha256 "
                "FROM releases r LEFT JOIN release_tiles t ON t.release = r.name GROUP BY r.name ORDER BY r.seq"
            ).fetchall()
        return [ReleaseInfo(*r) for r in rows]

    def manifest_raw(self, name: str) -> bytes:
        with self._connect() as db:
            row = db.execute("SELECT manifest FROM releases WHERE name=?", (name,)).fetchone()
        if row is None:
            raise StoreError(f"unknown release {name!r}")
        return bytes(row[0])

    def tile(self, name: str, tile_id: int) -> tuple[bytes, str]:
        with self._connect() as db:
            row = db.execute("SELECT sha256 FROM release_tiles WHERE release=? AND tile_id=?",
                             (name, int(tile_id))).fetchone()
        if row is None:
            self.manifest_raw(name)  # unknown release -> its own error
            raise StoreError(f"release {name!r} has no tile {tile_id}")
        return self.blob(row[0]), row[0]

    def attachment(self, name: str, key: str, *, restricted_ok: bool = False) -> bytes:
        with self._connect() as db:
            row = db.execute("SELECT data, restricted FROM attachments WHERE release=? AND key=?",
                             (name, key)).fetchone()
        if row is None or (row[1] and not restricted_ok):
            raise StoreError(f"release {name!r} has no {key!r}")
        return bytes(row[0])

    def gc(self) -> int:
        """Remove blobs no release references (left by an interrupted publish). Returns how many."""
        with self._connect() as db:
            used = {r[0] for r in db.execute("SELECT DISTINCT sha256 FROM release_tiles")}
        return self.blobs.remove_unused(used)


def _postgres(rest: str) -> ReleaseStore:
    from tiles.pgstore import PostgresReleaseStore  # psycopg only when asked for

    return PostgresReleaseStore("postgresql://" + rest)


STORES: dict[str, Callable[[str], ReleaseStore]] = {
    "sqlite": lambda rest: SqliteReleaseStore(rest),
    "postgresql": _postgres,
}


def open_store(url: str | os.PathLike) -> ReleaseStore:
    """A store by URL: ``sqlite:///path/to/dir`` or a plain directory (SQLite),
    ``postgresql://user@host/db?blobs=/shared/dir`` (:mod:`tiles.pgstore`). Schemes register in :data:`STORES`."""
    url = str(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return SqliteReleaseStore(url)
    factory = STORES.get(scheme)
    if factory is None:
        raise StoreError(f"no release store for scheme {scheme!r} (have: {', '.join(sorted(STORES))})")
    return factory(rest if scheme != "sqlite" else rest or ".")
