"""The system under test: a stack of the bench's own (own PostgreSQL database, own redis-server,
two executors, as issue 5 prescribes), or an already running deployment at LCE_BENCH_URL."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from devstack import Stack, StackConfig
from tests.conftest import RedisServer, free_port

ADMIN_URL = os.environ.get("LCE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
EXECUTORS = 2
# The bench submits hundreds of runs a minute on few sessions; the abuse rule is not what it measures.
BENCH_RUNS_PER_MINUTE = "1000000"
# Settings the caller's environment may choose for the stack (`LCE_WARM_RUNTIMES=off make bench`).
_CALLERS_CHOICE = ("LCE_LOG_LEVEL", "LCE_WARM_RUNTIMES", "LCE_COMPILE_AIDS_DIR")


@dataclass(frozen=True)
class Target:
    url: str
    own: bool  # True: started here, rate limit lifted; False: someone else's deployment, rate limit applies
    log_dir: Path | None
    # Own stack only, for the capacity measure (bench/capacity.py): where its load lands.
    database_url: str | None = None
    redis_url: str | None = None
    pids: dict[str, int] = field(default_factory=dict)  # service name ("executor-1", "redis") -> pid


@contextmanager
def target() -> Iterator[Target]:
    given = os.environ.get("LCE_BENCH_URL")
    if given:
        yield Target(url=given.rstrip("/"), own=False, log_dir=None)
        return
    with own_stack() as started:
        yield started


@contextmanager
def own_stack() -> Iterator[Target]:
    with tempfile.TemporaryDirectory(prefix="lce-bench-") as tmp, _database() as database_url:
        redis_server = RedisServer()
        redis_server.start()
        try:
            config = _config(Path(tmp), database_url, redis_server.url)
            stack = Stack(config)
            try:
                stack.start()
            except BaseException:
                _print_logs(config.log_dir)
                raise
            try:
                yield Target(
                    url=config.gateway_url,
                    own=True,
                    log_dir=config.log_dir,
                    database_url=database_url,
                    redis_url=redis_server.url,
                    pids=_pids(stack, redis_server),
                )
            finally:
                stack.stop()
        finally:
            redis_server.cleanup()


def _config(tmp: Path, database_url: str, redis_url: str) -> StackConfig:
    return StackConfig(
        gateway_port=free_port(),
        session_port=free_port(),
        execution_port=free_port(),
        executor_health_ports=tuple(free_port() for _ in range(EXECUTORS)),
        executors=EXECUTORS,
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp / "data",
        log_dir=tmp / "logs",
        extra_env={
            "LCE_WORK_ROOT": str(tmp / "runs"),
            "LCE_RUNS_PER_MINUTE": BENCH_RUNS_PER_MINUTE,
            # As deployed (logs at INFO, warm runtimes on) unless the caller chooses otherwise: both cost.
            **{name: os.environ[name] for name in _CALLERS_CHOICE if os.environ.get(name)},
        },
    )


def _pids(stack: Stack, redis_server: RedisServer) -> dict[str, int]:
    pids = {service.name: service.process.pid for service in stack.services if service.process is not None}
    if redis_server.process is not None:
        pids["redis"] = redis_server.process.pid
    return pids


@contextmanager
def _database() -> Iterator[str]:
    """A fresh PostgreSQL database for this bench run (SQLAlchemy URL), dropped afterwards."""
    name = f"lce_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _print_logs(log_dir: Path | None) -> None:
    """The services' last words: the reason a stack did not come up is in there, not in our traceback."""
    for log_file in sorted(log_dir.glob("*.log")) if log_dir else []:
        print(f"===== {log_file.name}\n{log_file.read_text()[-3000:]}", file=sys.stderr)
