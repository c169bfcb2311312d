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

    def make(services: dict[str, list[int]]) -> HAProxy:
        h = _start(HAProxy(tmp_path / f"haproxy{len(started)}", services))
        started.append(h)
        return h

    yield make
    for h in started:
        h.stop()
