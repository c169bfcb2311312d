"""Station registry (SQLite, or PostgreSQL for several nodes): who the reference stations are, where they stand, how their data arrive.

Precise ARP coordinates are restricted data: ``Station.public()`` gives the approximate position
(two decimals, as NTRIP STR records do); the ECEF ARP leaves the service only inside RTCM 1005/1006.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from cors import ntrip
from cors.errors import CorsError
from cors.geodesy import ecef_to_geodetic

# fullmatch everywhere: re.match(... $) would accept a trailing newline
MOUNTPOINT = re.compile(r"[A-Za-z0-9_.-]{1,100}")
STATION_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
RESERVED_MOUNTPOINTS = frozenset({"NEAREST", "VRS"})
# Earth's ECEF radius spans ~6.357-6.378 Mm; allow mountains and a margin, reject obvious typos.
_ECEF_RADIUS_RANGE = (6.30e6, 6.42e6)


# --- sources: each kind parses its own spec (a registry of kinds, not an if-chain) ---------------

@dataclass(frozen=True)
class Source:
    kind: str
    spec: str
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = ""
    mountpoint: str = ""
    obs: str = ""
    nav: str = ""

    @property
    def url(self) -> ntrip.NtripURL:
        """Where a pulled source (tcp, ntrip) connects."""
        return ntrip.NtripURL(self.kind, self.host, self.port, self.mountpoint, self.user, self.password)

    def public(self) -> str:
        """The source spec without credentials (for listings and status)."""
        if self.kind == "ntrip":
            return self.url.public()
        return self.spec


def _parse_push(spec: str) -> Source:
    return Source("push", "push")


def _parse_tcp(spec: str) -> Source:
    url = ntrip.parse_url(spec, schemes=("tcp",), what="source")
    return Source("tcp", spec, host=url.host, port=url.port)


def _parse_ntrip(spec: str) -> Source:
    url = ntrip.parse_url(spec, schemes=("ntrip",), what="source")
    if not MOUNTPOINT.fullmatch(url.mountpoint):
        raise CorsError(f"source {spec!r}: ntrip://[USER:PASS@]HOST[:PORT]/MOUNT needs a mountpoint")
    return Source("ntrip", spec, host=url.host, port=url.port, user=url.user, password=url.password,
                  mountpoint=url.mountpoint)


def _parse_rinex(spec: str) -> Source:
    body = spec[len("rinex:"):]
    path, _, query = body.partition("?")
    nav = (parse_qs(query).get("nav") or [""])[0]
    if not path or not nav:
        raise CorsError(f"source {spec!r}: expected rinex:OBS?nav=NAV")
    return Source("rinex", spec, obs=path, nav=nav)


SOURCE_KINDS = {"push": _parse_push, "tcp": _parse_tcp, "ntrip": _parse_ntrip, "rinex": _parse_rinex}


def parse_source(spec: str) -> Source:
    spec = (spec or "push").strip()
    kind = "push" if spec == "push" else spec.split(":", 1)[0].lower()
    parser = SOURCE_KINDS.get(kind)
    if parser is None:
        raise CorsError(f"source {spec!r}: unknown kind {kind!r} (push, tcp://, ntrip://, rinex:)")
    return parser(spec)


# --- station passwords: user-chosen, so a salted slow KDF (scrypt) --------------------------------

def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def check_password(stored: str, password: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if algo != "scrypt":
        return False
    got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(got.hex(), digest)


# --- stations -------------------------------------------------------------------------------------

@dataclass
class Station:
    id: str
    mountpoint: str
    ecef: tuple[float, float, float]
    name: str = ""
    receiver: str = ""
    antenna: str = ""
    format: str = "RTCM 3.3"
    # STR format-details: message types with their intervals, e.g. "1006(10),1077(1),1230(10)"
    messages: str = ""
    nav_system: str = ""   # e.g. "GPS+GAL"; empty: taken from what the station sends
    carrier: int = 2       # 0 none, 1 L1, 2 L1+L2
    country: str = "XXX"   # ISO 3166 alpha-3; XXX = not stated
    source: str = "push"
    password_hash: str = field(default="", repr=False)
    created: float = 0.0
    # the frame and epoch the ARP is given in (lanelets.frames names); None: registered before frames were
    # declared, taken to be in the caster's service frame
    frame: str | None = None
    epoch: float | None = None

    @property
    def source_spec(self) -> Source:
        return parse_source(self.source)

    @property
    def geodetic(self) -> tuple[float, float, float]:
        return ecef_to_geodetic(*self.ecef)

    def approx_latlon(self) -> tuple[float, float]:
        lat, lon, _ = self.geodetic
        return round(lat, 2), round(lon, 2)

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and check_password(self.password_hash, password)

    def public(self) -> dict:
        """What anyone may see: no precise coordinates, no credentials."""
        lat, lon = self.approx_latlon()
        return {
            "id": self.id, "name": self.name, "mountpoint": self.mountpoint,
            "approx_lat": lat, "approx_lon": lon, "receiver": self.receiver, "antenna": self.antenna,
            "format": self.format, "messages": self.messages, "nav_system": self.nav_system,
            "carrier": self.carrier, "country": self.country, "source": self.source_spec.kind,
            "frame": self.frame_spec,
        }

    @property
    def frame_spec(self) -> str | None:
        """``NAME@EPOCH`` of the registered ARP, or None when undeclared."""
        if not self.frame:
            return None
        return self.frame if self.epoch is None else f"{self.frame}@{self.epoch:g}"

    def private(self) -> dict:
        """Operator view (CLI ``stations show``): includes the ARP, never the password hash."""
        d = self.public()
        d["ecef"] = list(self.ecef)
        d["source"] = self.source_spec.public()
        d["created"] = self.created
        return d


def _check_station(st: Station) -> None:
    if not STATION_ID.fullmatch(st.id):
        raise CorsError(f"station id {st.id!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    if not MOUNTPOINT.fullmatch(st.mountpoint):
        raise CorsError(f"station {st.id}: mountpoint {st.mountpoint!r} must be 1-100 of A-Z a-z 0-9 _ . -")
    if st.mountpoint.upper() in RESERVED_MOUNTPOINTS:
        raise CorsError(f"station {st.id}: mountpoint {st.mountpoint!r} is reserved by the caster")
    if len(st.ecef) != 3:
        raise CorsError(f"station {st.id}: --ecef needs X,Y,Z in metres")
    r = sum(c * c for c in st.ecef) ** 0.5
    if not _ECEF_RADIUS_RANGE[0] <= r <= _ECEF_RADIUS_RANGE[1]:
        raise CorsError(f"station {st.id}: ECEF {st.ecef} is {r:.0f} m from the geocentre, not on the Earth")
    if st.carrier not in (0, 1, 2):
        raise CorsError(f"station {st.id}: carrier must be 0, 1 or 2")
    for text in (st.name, st.receiver, st.antenna, st.format, st.messages, st.nav_system, st.country):
        if ";" in text or "\n" in text or "\r" in text:
            raise CorsError(f"station {st.id}: ';' and line breaks are not allowed in sourcetable fields")
    parse_source(st.source)
    if st.frame is not None:
        from lanelets.frames import FrameError, parse

        try:
            f, epoch = parse(st.frame, st.epoch)
        except FrameError as exc:
            raise CorsError(f"station {st.id}: {exc}") from None
        if f.dynamic and epoch is None:
            raise CorsError(f"station {st.id}: frame {f.name} needs the epoch of the coordinates, e.g. "
                            f"--frame {f.name}@2026.9")
        st.frame, st.epoch = f.name, (epoch if f.dynamic else None)


def parse_ecef(text: str) -> tuple[float, float, float]:
    try:
        xyz = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise CorsError(f"--ecef {text!r}: expected X,Y,Z in metres") from None
    if len(xyz) != 3:
        raise CorsError(f"--ecef {text!r}: expected X,Y,Z in metres")
    return xyz  # type: ignore[return-value]


_COLUMNS = ("id", "mountpoint", "x", "y", "z", "name", "receiver", "antenna", "format", "messages",
            "nav_system", "carrier", "country", "source", "password_hash", "created", "frame", "epoch")


class StationRegistry:
    """The station registry, one SQLite file (path given by the caller, e.g. under mapsvc.config.home()).

    The default back end; others subclass it, changing only the connection (see :func:`open_registry`)."""

    integrity_error: type[Exception] = sqlite3.IntegrityError

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS stations (id TEXT PRIMARY KEY, mountpoint TEXT NOT NULL UNIQUE,"
            " x REAL, y REAL, z REAL, name TEXT, receiver TEXT, antenna TEXT, format TEXT, messages TEXT,"
            " nav_system TEXT, carrier INTEGER, country TEXT, source TEXT, password_hash TEXT, created REAL,"
            " frame TEXT, epoch REAL)"
        )
        have = {r[1] for r in self._db.execute("PRAGMA table_info(stations)")}
        for col, kind in (("frame", "TEXT"), ("epoch", "REAL")):  # registries made before frames
            if col not in have:
                self._db.execute(f"ALTER TABLE stations ADD COLUMN {col} {kind}")
        self._version = 0

    def close(self) -> None:
        self._db.close()

    def _q(self, sql: str, args=()):
        """Run one statement (``?`` placeholders); back ends translate to their own."""
        return self._db.execute(sql, args)

    def add(self, station: Station, password: str | None = None) -> Station:
        _check_station(station)
        kind = station.source_spec.kind
        if password:
            station.password_hash = hash_password(password)
        if kind == "push" and not station.password_hash:
            raise CorsError(f"station {station.id}: a push station needs --password")
        station.created = station.created or time.time()
        row = (station.id, station.mountpoint, *station.ecef, station.name, station.receiver,
               station.antenna, station.format, station.messages, station.nav_system, station.carrier,
               station.country, station.source, station.password_hash, station.created, station.frame,
               station.epoch)
        with self._lock:
            if self._q("SELECT 1 FROM stations WHERE id=?", (station.id,)).fetchone():
                raise CorsError(f"station {station.id!r} already exists in {self.path}")
            if self._q("SELECT id FROM stations WHERE mountpoint=?", (station.mountpoint,)).fetchone():
                raise CorsError(f"mountpoint {station.mountpoint!r} is already used in {self.path}")
            try:  # another process (or node) may have added the same id or mountpoint since the checks
                self._q(f"INSERT INTO stations({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})", row)
            except self.integrity_error:
                raise CorsError(f"station {station.id!r} or mountpoint {station.mountpoint!r} already exists "
                                f"in {self.path}") from None
        return station

    @staticmethod
    def _station(row) -> Station:
        d = dict(zip(_COLUMNS, row))
        ecef = (d.pop("x"), d.pop("y"), d.pop("z"))
        return Station(ecef=ecef, **d)

    def get(self, station_id: str) -> Station:
        with self._lock:
            row = self._q(f"SELECT {','.join(_COLUMNS)} FROM stations WHERE id=?", (station_id,)).fetchone()
        if row is None:
            raise CorsError(f"no station {station_id!r} in {self.path}")
        return self._station(row)

    def by_mountpoint(self, mountpoint: str) -> Station | None:
        with self._lock:
            row = self._q(f"SELECT {','.join(_COLUMNS)} FROM stations WHERE mountpoint=?",
                                   (mountpoint,)).fetchone()
        return self._station(row) if row else None

    def list(self) -> list[Station]:
        with self._lock:
            rows = self._q(f"SELECT {','.join(_COLUMNS)} FROM stations ORDER BY id").fetchall()
        return [self._station(r) for r in rows]

    def remove(self, station_id: str) -> None:
        with self._lock:
            cur = self._q("DELETE FROM stations WHERE id=?", (station_id,))
        if cur.rowcount == 0:
            raise CorsError(f"no station {station_id!r} in {self.path}")

    def fingerprint(self) -> str:
        """Changes whenever the registry content does (the caster polls it to pick up CLI edits)."""
        with self._lock:
            rows = self._q(f"SELECT {','.join(_COLUMNS)} FROM stations ORDER BY id").fetchall()
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _postgres(url: str) -> StationRegistry:
    from cors.pgstations import PostgresStationRegistry  # psycopg only when asked for

    return PostgresStationRegistry(url)


# URL scheme -> back end; a plain path is the SQLite file
REGISTRIES = {"postgresql": _postgres, "postgres": _postgres}


def open_registry(where: str | Path) -> StationRegistry:
    """The station registry at ``where``: a SQLite file path, or a URL whose scheme is in :data:`REGISTRIES`
    (``postgresql://user@host/db``)."""
    scheme, sep, _ = str(where).partition("://")
    if not sep:
        return StationRegistry(where)
    factory = REGISTRIES.get(scheme)
    if factory is None:
        raise CorsError(f"no station registry for scheme {scheme!r} (have: {', '.join(sorted(REGISTRIES))})")
    return factory(str(where))
