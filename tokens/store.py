"""API and caster tokens: created once in plaintext, stored only as a SHA-256 hash.

Tokens are 256-bit random strings (``secrets.token_urlsafe(32)``), so an unsalted SHA-256 is a
sufficient one-way hash: there is nothing to brute-force, and lookup by hash stays O(1).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROLES = ("vehicle", "producer", "surveyor", "admin")
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")  # fullmatch: "$" would accept a trailing newline


class TokenError(ValueError):
    """Bad token request (unknown role, duplicate or malformed name)."""


@dataclass(frozen=True)
class Token:
    name: str
    role: str
    created: float
    mountpoints: tuple[str, ...] | None = None  # None: every mountpoint
    revoked: bool = False

    def may_access(self, mountpoint: str) -> bool:
        return self.mountpoints is None or mountpoint in self.mountpoints

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "role": self.role,
            "created": self.created,
            "mountpoints": list(self.mountpoints) if self.mountpoints is not None else None,
            "revoked": self.revoked,
        }


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """SQLite-backed token store shared by the HTTP API and the NTRIP caster (the default back end; others
    subclass it, changing only the connection: see :func:`open_tokens`)."""

    integrity_error: type[Exception] = sqlite3.IntegrityError

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tokens ("
            " name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,"
            " created REAL NOT NULL, mountpoints TEXT, revoked INTEGER NOT NULL DEFAULT 0)"
        )

    def close(self) -> None:
        self._db.close()

    def _q(self, sql: str, args=()):
        """Run one statement (``?`` placeholders); back ends translate to their own."""
        return self._db.execute(sql, args)

    def create(self, role: str, name: str | None = None, mountpoints: list[str] | None = None) -> str:
        """Create a token; returns the plaintext token (the only time it exists)."""
        if role not in ROLES:
            raise TokenError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
        name = name or f"{role}-{secrets.token_hex(4)}"
        if not _NAME.fullmatch(name):
            raise TokenError(f"bad token name {name!r}: use 1-64 of A-Z a-z 0-9 _ . @ -")
        token = secrets.token_urlsafe(32)
        mps = ",".join(mountpoints) if mountpoints else None
        with self._lock:
            try:
                self._q(
                    "INSERT INTO tokens(name, role, hash, created, mountpoints) VALUES (?,?,?,?,?)",
                    (name, role, _digest(token), time.time(), mps),
                )
            except self.integrity_error:
                raise TokenError(f"token name {name!r} already exists in {self.path}") from None
        return token

    @staticmethod
    def _record(row) -> Token:
        name, role, created, mps, revoked = row
        return Token(name, role, created, tuple(mps.split(",")) if mps else None, bool(revoked))

    def verify(self, token: str) -> Token | None:
        """The live (not revoked) token record for a plaintext token, or None."""
        if not token:
            return None
        with self._lock:
            row = self._q(
                "SELECT name, role, created, mountpoints, revoked FROM tokens WHERE hash=? AND revoked=0",
                (_digest(token),),
            ).fetchone()
        return self._record(row) if row else None

    def verify_basic(self, name: str, token: str) -> Token | None:
        """HTTP Basic / NTRIP check: user name = token name, password = token."""
        with self._lock:
            row = self._q(
                "SELECT name, role, created, mountpoints, revoked, hash FROM tokens WHERE name=?",
                (name,),
            ).fetchone()
        if row is None or row[4]:
            return None
        if not hmac.compare_digest(row[5], _digest(token or "")):
            return None
        return self._record(row[:5])

    def revoke(self, name: str) -> bool:
        with self._lock:
            cur = self._q("UPDATE tokens SET revoked=1 WHERE name=? AND revoked=0", (name,))
        return cur.rowcount > 0

    def list(self) -> list[Token]:
        with self._lock:
            rows = self._q(
                "SELECT name, role, created, mountpoints, revoked FROM tokens ORDER BY name"
            ).fetchall()
        return [self._record(r) for r in rows]


def _postgres(url: str) -> TokenStore:
    from tokens.pgstore import PostgresTokenStore  # psycopg only when asked for

    return PostgresTokenStore(url)


# URL scheme -> back end; a plain path is the SQLite file
TOKEN_STORES = {"postgresql": _postgres, "postgres": _postgres}


def open_tokens(where: str | Path) -> TokenStore:
    """The token store at ``where``: a SQLite file path, or a URL whose scheme is in :data:`TOKEN_STORES`
    (``postgresql://user@host/db``)."""
    scheme, sep, _ = str(where).partition("://")
    if not sep:
        return TokenStore(where)
    factory = TOKEN_STORES.get(scheme)
    if factory is None:
        raise TokenError(f"no token store for scheme {scheme!r} (have: {', '.join(sorted(TOKEN_STORES))})")
    return factory(str(where))
