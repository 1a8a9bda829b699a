"""Priority lanes on a stack of its own with one executor: a flood of batch runs never delays an
interactive run by more than one batch run's length (README "Priority lanes")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from devstack import Stack
from tests.conftest import RedisServer, fresh_database
from tests.integration.conftest import stack_config

pytestmark = pytest.mark.integration

FLOOD = 200
BATCH_SOURCE = "import time\ntime.sleep(0.2)\nprint('graded')\n"


@pytest.fixture(scope="module")
def lanes(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    own_redis = redis_server.url.rsplit("/", 1)[0] + "/10"
    with fresh_database("lce_lanes") as database_url:
        config = stack_config(
            tmp_path_factory.mktemp("lanes"), database_url=database_url, redis_url=own_redis, LCE_RUNS_PER_MINUTE="1000"
        )
        config.executors = 1
        stack = Stack(config)
        stack.start()
        try:
            with httpx.Client(base_url=config.gateway_url, timeout=30) as api:
                yield api
        finally:
            stack.stop()


def python_session(api: httpx.Client, source: str) -> str:
    python = next(language for language in api.get("/languages").json()["languages"] if language["name"] == "python")
    created = api.post("/code-sessions", json={"language_id": python["id"], "source_code": source})
    return str(created.json()["session_id"])


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def finished(api: httpx.Client, execution_id: str) -> dict[str, Any]:
    answer = api.get(f"/executions/{execution_id}", params={"wait": 30}).json()
    assert answer["status"] == "COMPLETED", answer
    return answer  # type: ignore[no-any-return]


def test_an_interactive_run_overtakes_a_flood_of_batch_runs(lanes: httpx.Client) -> None:
    batch_session = python_session(lanes, BATCH_SOURCE)
    flood = []
    for _ in range(FLOOD):
        accepted = lanes.post(f"/code-sessions/{batch_session}/run", json={"priority": "batch"})
        assert accepted.status_code == 202, accepted.text
        flood.append(accepted.json()["execution_id"])
    first_batch = finished(lanes, flood[0])
    assert first_batch["priority"] == "batch"
    batch_run_s = seconds_between(first_batch["started_at"], first_batch["finished_at"])

    waiting_before = lanes.get("/system").json()
    run = lanes.post(f"/code-sessions/{python_session(lanes, 'print(42)')}/run")
    interactive = finished(lanes, run.json()["execution_id"])
    assert interactive["priority"] == "interactive" and interactive["stdout"] == "42\n"
    waited_s = seconds_between(interactive["created_at"], interactive["started_at"])

    batch_waiting = next(q for q in waiting_before["queues"] if q["name"].endswith(":python:batch"))["depth"]
    assert batch_waiting > FLOOD / 2  # the flood was still there: the run went ahead of it
    # At worst it waits for the batch run the executor had just taken, plus the time to pick it up.
    assert waited_s <= batch_run_s + 1.0, (waited_s, batch_run_s)
    waited = f"{waited_s * 1000:.0f} ms behind {batch_waiting} batch runs of {batch_run_s * 1000:.0f} ms"
    print(f"\ninteractive run waited {waited}")


def test_a_test_suite_is_batch_unless_asked_otherwise(lanes: httpx.Client) -> None:
    session = python_session(lanes, "print(input())")
    suite = {"tests": [{"stdin": "a\n", "expected_output": "a\n"}]}
    by_default = lanes.post(f"/code-sessions/{session}/run", json=suite).json()["execution_id"]
    asked = lanes.post(f"/code-sessions/{session}/run", json=suite | {"priority": "interactive"}).json()["execution_id"]
    # Read at once: the flood before may still hold the batch lane.
    assert lanes.get(f"/executions/{by_default}").json()["priority"] == "batch"
    assert finished(lanes, asked)["priority"] == "interactive"
    refused = lanes.post(f"/code-sessions/{session}/run", json={"priority": "urgent"})
    assert refused.status_code == 400 and "priority must be one of interactive, batch" in refused.json()["error"]
    lanes_shown = {(q["language"], q["lane"]) for q in lanes.get("/system").json()["queues"]}
    assert {("python", "interactive"), ("python", "batch")} <= lanes_shown
