"""The chaos harness itself: the private PostgreSQL and Redis really go down, come back on the same
port, and (PostgreSQL) keep their data across a clean stop and a SIGKILL; a chaos test that
"survived" a fault the harness never caused would prove nothing."""

from __future__ import annotations

import psycopg
import pytest
import redis

from tests.chaos.conftest import PostgresServer
from tests.conftest import RedisServer

pytestmark = pytest.mark.chaos


def _libpq(server: PostgresServer) -> str:
    return server.url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_postgres_stops_restarts_and_survives_sigkill(private_postgres: PostgresServer) -> None:
    with psycopg.connect(_libpq(private_postgres), autocommit=True) as db:
        db.execute("CREATE TABLE kept (value text)")
        db.execute("INSERT INTO kept VALUES ('before the faults')")

    private_postgres.stop()
    assert not private_postgres.answers()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(_libpq(private_postgres), connect_timeout=2)

    private_postgres.start()
    private_postgres.kill()
    assert not private_postgres.answers()
    private_postgres.start()  # crash recovery from the SIGKILL

    with psycopg.connect(_libpq(private_postgres)) as db:
        assert db.execute("SELECT value FROM kept").fetchall() == [("before the faults",)]
        # Listening on loopback only, on the port it was given.
        assert db.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert db.execute("SHOW port").fetchone() == (str(private_postgres.port),)


def test_redis_restart_comes_back_empty_on_its_port(private_redis: RedisServer) -> None:
    client = redis.Redis.from_url(private_redis.url)
    client.set("queued", "a job")
    port = private_redis.port
    private_redis.stop()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    private_redis.start()
    assert private_redis.port == port
    assert client.dbsize() == 0
