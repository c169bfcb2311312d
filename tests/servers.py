"""Fixtures that start real engines (PostgreSQL + PostGIS, Redis, HAProxy) in throw-away folders on 127.0.0.1
free ports and stop them afterwards. A test skips, saying why, only when the engine is not installed."""
from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from mapsvc.engines import EngineMissing, HAProxy, Postgres, Redis


def _start(engine):
    try:
        return engine.start()
    except EngineMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def postgres_server():
    # under /tmp, not pytest's 0700 tmp dir: the cluster runs as the postgres user when we are root
    root = Path(tempfile.mkdtemp(prefix="mapsvc-pg-"))
    pg = _start(Postgres(root))
    yield pg
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh database (with PostGIS) on the session's cluster, dropped after the test."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    admin = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_server.database}"')
    yield f"postgresql://postgres@127.0.0.1:{postgres_server.port}/{name}"
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_server(tmp_path):
    r = _start(Redis(tmp_path / "redis"))
    yield r
    r.stop()


@pytest.fixture
def haproxy_factory(tmp_path):
    started = []

    def make(services: dict[str, list[int]], **kw) -> HAProxy:
        h = _start(HAProxy(tmp_path / f"haproxy{len(started)}", services, **kw))
        started.append(h)
        return h

    yield make
    for h in started:
        h.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_where(request, tmp_path):
    """Where the token store and station registry live, over both back ends: ``where(filename)`` is a SQLite
    file under tmp_path, or a fresh database on the real PostgreSQL (the same one for every filename)."""
    if request.param == "sqlite":
        return lambda filename: str(tmp_path / filename)
    url = request.getfixturevalue("postgres_url")
    return lambda filename: url


def stored_text(where: str, table: str) -> str:
    """Everything a back end holds for ``table``, as text (to prove what is never stored)."""
    if "://" in where:
        import psycopg

        with psycopg.connect(where) as db:
            return repr(db.execute(f"SELECT * FROM {table}").fetchall())
    paths = [Path(where), Path(where + "-wal")]
    return repr(b"".join(p.read_bytes() for p in paths if p.exists()))
