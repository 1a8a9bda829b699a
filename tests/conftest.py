"""Fixtures for real infrastructure: a PostgreSQL database and a Redis server of the test run's own.

Tests never touch the machine's shared data: each run creates its own database on the
PostgreSQL server named by LCE_TEST_POSTGRES_URL (default: the local one, user postgres) and
drops it afterwards, and starts its own redis-server on a free loopback port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import redis

from common.db import make_engine
from execution_service.migrations import HISTORY as EXECUTION_SCHEMA
from session_service.migrations import HISTORY as SESSION_SCHEMA

ADMIN_URL = os.environ.get("LCE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports_in_a_row(count: int) -> int:
    """The first of `count` consecutive loopback ports that are free now (for LCE_METRICS_LISTEN under devstack)."""
    while True:
        first = free_port()
        if first + count <= 65536 and all(_bindable(port) for port in range(first + 1, first + count)):
            return first


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _sqlalchemy_url(admin_url: str, database: str) -> str:
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{database}"


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server (SQLAlchemy URL), dropped (forcibly) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _sqlalchemy_url(ADMIN_URL, name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrated(url: str) -> str:
    """The database at head for both services, as `python -m <service> migrate` leaves it."""
    engine = make_engine(url)
    try:
        for history in (SESSION_SCHEMA, EXECUTION_SCHEMA):
            history.upgrade(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, migrated, for this test session's unit and contract tests."""
    with fresh_database("lce_test") as url:
        yield migrated(url)


class RedisServer:
    """A private redis-server process on a free loopback port, keeping nothing on disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="lce-test-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A database of the private Redis, emptied before and after each test. Not database 0, where the
    session's stack announces its executors and counts its runs while later tests run."""
    url = redis_server.url.rsplit("/", 1)[0] + "/6"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own: nothing it does meets the session's stacks (the chaos tests restart it)."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
