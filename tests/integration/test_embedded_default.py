"""The embedded default of `make run` (SQLite files, no database URL) and the behaviour when a backend
service is down: a quick 503 with Retry-After, never a hang, never a 500."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack import Stack
from tests.conftest import RedisServer
from tests.integration.conftest import new_session, run, stack_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sqlite_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("sqlite-stack")
    # Its own Redis database number, so its queue never meets the PostgreSQL stack's.
    stack = Stack(stack_config(tmp, database_url=None, redis_url=redis_server.url.replace("/0", "/1")))
    stack.start()
    yield stack
    stack.stop()


def test_runs_on_sqlite_files(sqlite_stack: Stack) -> None:
    data_dir: Path = sqlite_stack.config.data_dir
    with httpx.Client(base_url=sqlite_stack.config.gateway_url, timeout=30) as api:
        python = next(lang for lang in api.get("/languages").json()["languages"] if lang["name"] == "python")
        session_id = new_session(api, python["id"], "print(6 * 7)\n")
        result = run(api, session_id)
    assert result["status"] == "COMPLETED"
    assert result["stdout"] == "42\n"
    assert (data_dir / "session.db").is_file() and (data_dir / "execution.db").is_file()


def test_backend_down_gives_a_quick_503(sqlite_stack: Stack) -> None:
    with httpx.Client(base_url=sqlite_stack.config.gateway_url, timeout=30) as api:
        session_id = api.post(
            "/code-sessions", json={"language_id": api.get("/languages").json()["languages"][0]["id"]}
        ).json()["session_id"]
        sqlite_stack.stop_service(sqlite_stack.find("session_service"))
        for method, path in [("GET", f"/code-sessions/{session_id}"), ("POST", f"/code-sessions/{session_id}/run")]:
            started = time.monotonic()
            response = api.request(method, path)
            assert response.status_code == 503, response.text
            assert response.json()["error"]
            assert int(response.headers["Retry-After"]) >= 1
            assert time.monotonic() - started < 10
