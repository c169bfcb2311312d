"""The token store on PostgreSQL (psycopg 3), so that several API and caster nodes share one set of tokens.

Same table and SQL as the SQLite store (:class:`tokens.store.TokenStore`); only the connection differs.
"""
from __future__ import annotations

import threading
from urllib.parse import urlsplit, urlunsplit

from tokens.store import TokenError, TokenStore

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tokens ("
    " name text PRIMARY KEY, role text NOT NULL, hash text NOT NULL UNIQUE,"
    " created double precision NOT NULL, mountpoints text, revoked integer NOT NULL DEFAULT 0)"
)
# Two nodes starting at once must not both run the CREATEs (PostgreSQL's catalogue would race).
SCHEMA_LOCK = 0x746F6B6E  # "tokn"


def public_url(url: str) -> str:
    """The URL without password or query, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = (f"{parts.username}@" if parts.username else "") + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc, query=""))


def connect(url: str, schema: str, lock: int, error: type[Exception]):
    """An autocommit psycopg connection with ``schema`` created idempotently (under an advisory lock)."""
    import psycopg

    try:
        db = psycopg.connect(url, autocommit=True)
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            for statement in filter(str.strip, schema.split(";")):
                db.execute(statement)
    except psycopg.Error as exc:
        raise error(f"{public_url(url)}: {str(exc).strip().splitlines()[0]}") from None
    return db


class Session:
    """One autocommit connection (``connect``), opened again when the server has cut it (a restart, a
    failover). A read that meets the cut is sent once more on the new connection; a write is not (it may have
    been applied): its caller gets the error, and the next call reconnects."""

    def __init__(self, url: str, schema: str, lock: int, error: type[Exception]):
        self._args = (url, schema, lock, error)
        self.conn = connect(*self._args)

    def _usable(self):
        if self.conn.closed or self.conn.broken:
            self.conn = connect(*self._args)
        return self.conn

    def execute(self, sql: str, args=()):
        import psycopg

        try:
            return self._usable().execute(sql, args)
        except psycopg.OperationalError:
            if not (self.conn.closed or self.conn.broken) or not sql.lstrip()[:6].upper() == "SELECT":
                raise
            return self._usable().execute(sql, args)

    def close(self) -> None:
        self.conn.close()


class PostgresTokenStore(TokenStore):
    def __init__(self, url: str):
        import psycopg

        self.integrity_error = psycopg.errors.UniqueViolation
        self.path = public_url(url)  # named in messages
        self._lock = threading.Lock()
        self._db = Session(url, SCHEMA, SCHEMA_LOCK, TokenError)

    def _q(self, sql: str, args=()):
        return self._db.execute(sql.replace("?", "%s"), args)
