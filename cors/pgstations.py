"""The station registry on PostgreSQL (psycopg 3), so that several caster and API nodes share one registry.

Same table and SQL as the SQLite registry (:class:`cors.stations.StationRegistry`); only the connection differs.
"""
from __future__ import annotations

import threading

from cors.errors import CorsError
from cors.stations import StationRegistry
from tokens.pgstore import Session, public_url

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS stations (id text PRIMARY KEY, mountpoint text NOT NULL UNIQUE,"
    " x double precision, y double precision, z double precision, name text, receiver text, antenna text,"
    " format text, messages text, nav_system text, carrier integer, country text, source text,"
    " password_hash text, created double precision, frame text, epoch double precision)"
)
SCHEMA_LOCK = 0x73746E73  # "stns"


class PostgresStationRegistry(StationRegistry):
    def __init__(self, url: str):
        import psycopg

        self.integrity_error = psycopg.errors.UniqueViolation
        self.path = public_url(url)  # named in messages
        self._lock = threading.Lock()
        self._db = Session(url, SCHEMA, SCHEMA_LOCK, CorsError)
        self._version = 0

    def _q(self, sql: str, args=()):
        return self._db.execute(sql.replace("?", "%s"), args)
