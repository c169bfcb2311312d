"""The release store on PostgreSQL + PostGIS (psycopg 3), for several API nodes sharing one state.

``postgresql://user@host:port/db?blobs=/shared/path``: the catalogue, attachments and each tile's footprint
(a PostGIS polygon, with a geography twin) live in the database; tile blobs stay content-addressed files under
``blobs`` on a path every node shares, which nginx serves as with the SQLite store.

Publishing is atomic across processes and machines: blobs are written first (harmless if orphaned, ``gc``
removes them), then the release row, its tiles and attachments go in one transaction. The release name is the
primary key, so of two publishers of one name the second waits on the first's uncommitted row and then fails
with a clean :class:`StoreError`; a publisher killed mid-way leaves an open transaction that PostgreSQL rolls
back when the connection drops. Tile queries by box or radius are ``ST_Intersects`` / ``ST_DWithin`` in the
database, on GiST indexes.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tiles.blobs import BlobDir, BlobFiles
from tiles.errors import StoreError
from tiles.store import ReleaseInfo, ReleaseStore, check_release_name, manifest_bytes

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE TABLE IF NOT EXISTS releases (
    name text PRIMARY KEY, created text NOT NULL, level integer NOT NULL,
    manifest bytea NOT NULL, manifest_sha256 text NOT NULL, seq bigserial NOT NULL);
CREATE TABLE IF NOT EXISTS release_tiles (
    release text NOT NULL REFERENCES releases(name), tile_id bigint NOT NULL,
    sha256 text NOT NULL, bytes bigint NOT NULL,
    footprint geometry(Polygon, 4326) NOT NULL,
    footprint_geog geography(Polygon, 4326) GENERATED ALWAYS AS (footprint::geography) STORED,
    PRIMARY KEY (release, tile_id));
CREATE INDEX IF NOT EXISTS release_tiles_sha ON release_tiles (sha256);
CREATE INDEX IF NOT EXISTS release_tiles_footprint ON release_tiles USING gist (footprint);
CREATE INDEX IF NOT EXISTS release_tiles_footprint_geog ON release_tiles USING gist (footprint_geog);
CREATE TABLE IF NOT EXISTS attachments (
    release text NOT NULL REFERENCES releases(name), key text NOT NULL, data bytea NOT NULL,
    restricted boolean NOT NULL, PRIMARY KEY (release, key));
"""
# Two nodes starting at once must not both run the CREATEs (PostgreSQL's catalogue would race).
SCHEMA_LOCK = 0x6D617073  # "maps"


def split_url(url: str) -> tuple[str, Path]:
    """(libpq URL without our ``blobs`` parameter, blob directory)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    blobs = [v for k, v in query if k == "blobs"]
    if not blobs:
        raise StoreError(f"{urlunsplit(parts._replace(netloc=parts.hostname or '', query=''))}: a PostgreSQL "
                         f"store needs the shared blob path, as ?blobs=/path")
    rest = urlencode([(k, v) for k, v in query if k != "blobs"])
    return urlunsplit(parts._replace(query=rest)), Path(blobs[-1])


class PostgresReleaseStore(BlobFiles, ReleaseStore):
    indexed_area_queries = True
    def __init__(self, url: str):
        import psycopg

        self._psycopg = psycopg
        self.dsn, blob_root = split_url(url)
        self.blobs = BlobDir(blob_root / "blobs" / "sha256")
        self._local = threading.local()
        try:
            with psycopg.connect(self.dsn, autocommit=True) as db, db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                db.execute(SCHEMA)
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL store: {str(exc).strip().splitlines()[0]}") from None

    # one connection per thread and process (gunicorn forks after the app may have been created)
    def _db(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken or self._local.pid != os.getpid():
            conn = self._local.conn = self._psycopg.connect(self.dsn, autocommit=True)
            self._local.pid = os.getpid()
        return conn

    def _read(self, sql: str, args=()):
        """A read; sent once more on a new connection when the server has cut this one (a restart, a
        failover). Writes are not retried (one may have been applied): the next call reconnects."""
        try:
            return self._db().execute(sql, args)
        except self._psycopg.OperationalError:
            conn = self._local.conn
            if not (conn.closed or conn.broken):
                raise
            return self._db().execute(sql, args)

    def _one(self, sql: str, args=()):
        return self._read(sql, args).fetchone()

    # -- writing -------------------------------------------------------------------------------------
    def publish(self, name, tiles, manifest, attachments=None, progress=None) -> dict:
        from tiles.grid import tile_bboxes

        check_release_name(name)
        if self._one("SELECT 1 FROM releases WHERE name=%s", (name,)):
            raise StoreError(f"release {name!r} already exists; releases are immutable")
        for t in tiles:
            if hashlib.sha256(t.data).hexdigest() != t.sha256:
                raise StoreError(f"tile {t.id}: data does not match its sha256")
            self.blobs.put(t.data, t.sha256)
            if progress is not None:
                progress(1)
        body = manifest_bytes(manifest)
        created = manifest.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        boxes = tile_bboxes([t.id for t in tiles]).tolist() if tiles else []
        psycopg = self._psycopg
        db = psycopg.connect(self.dsn)  # its own connection: one transaction, dropped with the process
        try:
            with db.transaction():
                db.execute("INSERT INTO releases (name, created, level, manifest, manifest_sha256) "
                           "VALUES (%s,%s,%s,%s,%s)",
                           (name, created, int(manifest["level"]), body, hashlib.sha256(body).hexdigest()))
                with db.cursor() as cur, cur.copy(
                        "COPY release_tiles (release, tile_id, sha256, bytes, footprint) FROM STDIN") as copy:
                    for t, (w, s, e, n) in zip(tiles, boxes):
                        copy.write_row((name, t.id, t.sha256, t.bytes,
                                        f"SRID=4326;POLYGON(({w!r} {s!r},{e!r} {s!r},{e!r} {n!r},"
                                        f"{w!r} {n!r},{w!r} {s!r}))"))
                for key, (data, restricted) in (attachments or {}).items():
                    db.execute("INSERT INTO attachments VALUES (%s,%s,%s,%s)", (name, key, data, bool(restricted)))
        except psycopg.errors.UniqueViolation:
            raise StoreError(f"release {name!r} already exists; releases are immutable") from None
        finally:
            db.close()
        return manifest

    def add_attachment(self, name: str, key: str, data: bytes, restricted: bool) -> None:
        self.manifest(name)
        try:
            self._db().execute("INSERT INTO attachments VALUES (%s,%s,%s,%s)", (name, key, data, bool(restricted)))
        except self._psycopg.errors.UniqueViolation:
            raise StoreError(f"release {name!r} already has {key!r}") from None

    # -- reading -------------------------------------------------------------------------------------
    def releases(self) -> list[ReleaseInfo]:
        rows = self._read(
            "SELECT r.name, r.created, r.level, COUNT(t.tile_id), COALESCE(SUM(t.bytes), 0), r.manifest_sha256 "
            "FROM releases r LEFT JOIN release_tiles t ON t.release = r.name GROUP BY r.name ORDER BY r.seq"
        ).fetchall()
        return [ReleaseInfo(r[0], r[1], r[2], int(r[3]), int(r[4]), r[5]) for r in rows]

    def manifest_raw(self, name: str) -> bytes:
        row = self._one("SELECT manifest FROM releases WHERE name=%s", (name,))
        if row is None:
            raise StoreError(f"unknown release {name!r}")
        return bytes(row[0])

    def tile(self, name: str, tile_id: int) -> tuple[bytes, str]:
        row = self._one("SELECT sha256 FROM release_tiles WHERE release=%s AND tile_id=%s", (name, int(tile_id)))
        if row is None:
            self.manifest(name)
            raise StoreError(f"release {name!r} has no tile {tile_id}")
        return self.blob(row[0]), row[0]

    def attachment(self, name: str, key: str, *, restricted_ok: bool = False) -> bytes:
        row = self._one("SELECT data, restricted FROM attachments WHERE release=%s AND key=%s", (name, key))
        if row is None or (row[1] and not restricted_ok):
            raise StoreError(f"release {name!r} has no {key!r}")
        return bytes(row[0])

    def tiles_in_bbox(self, name: str, west: float, south: float, east: float, north: float) -> list[int]:
        """Tile ids of a release touching the box, with the grid's floor rule (a tile is [west, east) x
        [south, north)): ST_Intersects on the GiST index, then the open east/north edges."""
        self.manifest_raw(name)
        rows = self._read(
            "SELECT tile_id FROM release_tiles WHERE release=%s "
            "AND ST_Intersects(footprint, ST_MakeEnvelope(%s, %s, %s, %s, 4326)) "
            "AND ST_XMax(footprint) > %s AND ST_YMax(footprint) > %s ORDER BY tile_id",
            (name, west, south, east, north, west, south)).fetchall()
        return [r[0] for r in rows]

    def tiles_in_radius(self, name: str, lat: float, lon: float, radius_m: float) -> list[int]:
        """Tile ids of a release within ``radius_m`` metres (geodesic, WGS 84) of a point: ST_DWithin on
        geography."""
        self.manifest_raw(name)
        rows = self._read(
            "SELECT tile_id FROM release_tiles WHERE release=%s "
            "AND ST_DWithin(footprint_geog, ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s) "
            "ORDER BY tile_id", (name, lon, lat, radius_m)).fetchall()
        return [r[0] for r in rows]

    def gc(self) -> int:
        used = {r[0] for r in self._read("SELECT DISTINCT sha256 FROM release_tiles")}
        return self.blobs.remove_unused(used)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
