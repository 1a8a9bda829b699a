"""The real system for integration tests: every service as its own process, on the test run's own
PostgreSQL database and Redis server, driven over HTTP."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import Service, Stack, StackConfig
from tests.conftest import RedisServer, free_port, free_ports_in_a_row, fresh_database

TERMINAL = {"COMPLETED", "FAILED", "TIMEOUT"}


def stack_config(tmp: Path, *, database_url: str | None, redis_url: str, **env: str) -> StackConfig:
    return StackConfig(
        gateway_port=free_port(),
        session_port=free_port(),
        execution_port=free_port(),
        executor_health_ports=(free_port(), free_port()),
        executors=2,
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp / "data",
        log_dir=tmp / "logs",
        # Not under pytest's tmp dir: that is 0700 root, which the sandbox's slot uids cannot traverse.
        extra_env={
            "LCE_WORK_ROOT": f"/tmp/lce-test-runs-{uuid.uuid4().hex[:8]}",
            # The executors' shared compile cache: the test run's own, root-only like pytest's tmp dir.
            "LCE_COMPILE_CACHE_DIR": str(tmp / "compile-cache"),
            # Compile aids built elsewhere than the host's (a branch whose aids differ), when the caller says so.
            **{name: os.environ[name] for name in ("LCE_COMPILE_AIDS_DIR",) if os.environ.get(name)},
            **env,
        },
    )


@pytest.fixture(scope="session")
def stack_database() -> Iterator[str]:
    """The stack's own database: it lives on for the whole session, and its reconciler would
    otherwise take up the rows that unit and contract tests leave QUEUED in theirs."""
    with fresh_database("lce_stack") as url:
        yield url


@pytest.fixture(scope="session")
def stack(stack_database: str, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    # /metrics of every process: session, execution, the two executors, the gateway (test_metrics.py).
    metrics = f"127.0.0.1:{free_ports_in_a_row(5)}"
    running = Stack(
        stack_config(tmp, database_url=stack_database, redis_url=redis_server.url, LCE_METRICS_LISTEN=metrics)
    )
    try:
        running.start()
    except BaseException:
        _print_logs(tmp / "logs")
        raise
    yield running
    running.stop()
    # uvicorn re-raises SIGTERM after its graceful shutdown (the conventional way to report it).
    graceful = (0, -signal.SIGTERM)
    failed = [s.name for s in running.services if s.process and s.process.returncode not in graceful]
    assert not failed, f"services exited with an error on SIGTERM: {failed}"


def start_gateway(stack: Stack, name: str, **env: str) -> tuple[Service, str]:
    """Another gateway process on the stack's services, with `env` beside the stack's gateway's own
    (one worker unless `env` says otherwise, and a /metrics port of its own); the service and its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    own = {"LCE_GATEWAY_LISTEN": f"127.0.0.1:{port}", "LCE_GATEWAY_WORKERS": "1"}
    own["LCE_METRICS_LISTEN"] = f"127.0.0.1:{free_port()}"
    gateway = Service(name, "gateway", {**stack.find("gateway").env, **own, **env}, f"{url}/health")
    stack.start_service(gateway)
    return gateway, url


def metrics_url(service: Service) -> str:
    """Where a service of a stack of stack_config serves /metrics."""
    return f"http://{service.env['LCE_METRICS_LISTEN']}/metrics"


def _print_logs(log_dir: Path) -> None:
    for log_file in sorted(log_dir.glob("*.log")):
        print(f"===== {log_file.name}\n{log_file.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def languages(api: httpx.Client) -> dict[str, dict[str, Any]]:
    listing = api.get("/languages").json()["languages"]
    return {language["name"]: api.get(f"/languages/{language['id']}").json() for language in listing}


def new_session(api: httpx.Client, language_id: str, source_code: str | None = None) -> str:
    created = api.post("/code-sessions", json={"language_id": language_id})
    assert created.status_code == 201, created.text
    session_id = created.json()["session_id"]
    if source_code is not None:
        saved = api.patch(f"/code-sessions/{session_id}", json={"source_code": source_code})
        assert saved.status_code == 200, saved.text
    return session_id


def wait_terminal(api: httpx.Client, execution_id: str, timeout_s: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = api.get(f"/executions/{execution_id}").json()
        if body["status"] in TERMINAL:
            return body
        time.sleep(0.02)
    raise AssertionError(f"execution {execution_id} not terminal after {timeout_s} s: {body}")


def run(api: httpx.Client, session_id: str, **limits: Any) -> dict[str, Any]:
    accepted = api.post(f"/code-sessions/{session_id}/run", json=limits or None)
    assert accepted.status_code == 202, accepted.text
    return wait_terminal(api, accepted.json()["execution_id"])
