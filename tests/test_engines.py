"""The engine fixtures start real servers that answer, and stop them."""
import socket

import pytest


def test_postgres_with_postgis(postgres_url, postgres_server):
    import psycopg

    with psycopg.connect(postgres_url) as db:
        ver = db.execute("SELECT postgis_lib_version(), current_setting('server_version_num')").fetchone()
    assert ver[0].startswith("3.") and ver[1].startswith("15")
    assert postgres_server.proc.poll() is None


def test_redis_and_haproxy(redis_server, haproxy_factory):
    import redis

    r = redis.Redis.from_url(redis_server.url)
    assert r.ping() and r.xadd("s", {"a": 1}) and r.xlen("s") == 1
    h = haproxy_factory({"redis": [redis_server.port]})
    via = redis.Redis(host="127.0.0.1", port=h.ports["redis"])
    assert via.xlen("s") == 1  # TCP mode passes the Redis protocol through
    h.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", h.ports["redis"]), 1).close()
