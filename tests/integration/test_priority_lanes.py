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
RUBY_BATCH_SOURCE = "sleep 0.2\nputs 'graded'\n"


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


def new_session(api: httpx.Client, language: str, source: str) -> str:
    found = next(entry for entry in api.get("/languages").json()["languages"] if entry["name"] == language)
    created = api.post("/code-sessions", json={"language_id": found["id"], "source_code": source})
    return str(created.json()["session_id"])


def python_session(api: httpx.Client, source: str) -> str:
    return new_session(api, "python", source)


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def finished(api: httpx.Client, execution_id: str) -> dict[str, Any]:
    answer = api.get(f"/executions/{execution_id}", params={"wait": 30}).json()
    assert answer["status"] == "COMPLETED", answer
    return answer  # type: ignore[no-any-return]


def test_interactive_runs_overtake_a_flood_of_batch_runs_in_two_languages(lanes: httpx.Client) -> None:
    batch_sessions = [python_session(lanes, BATCH_SOURCE), new_session(lanes, "ruby", RUBY_BATCH_SOURCE)]
    flood = []
    for number in range(FLOOD):  # the two languages' batch queues both full: the executor turns between them
        accepted = lanes.post(f"/code-sessions/{batch_sessions[number % 2]}/run", json={"priority": "batch"})
        assert accepted.status_code == 202, accepted.text
        flood.append(accepted.json()["execution_id"])
    first_batch = finished(lanes, flood[1])
    assert first_batch["priority"] == "batch"
    batch_run_s = max(
        seconds_between(done["started_at"], done["finished_at"]) for done in (finished(lanes, flood[0]), first_batch)
    )

    waiting_before = lanes.get("/system").json()
    interactive_session = python_session(lanes, "print(42)")
    waits = []
    for _ in range(2):  # in a row: the second must not wait behind batch runs either
        run = lanes.post(f"/code-sessions/{interactive_session}/run")
        interactive = finished(lanes, run.json()["execution_id"])
        assert interactive["priority"] == "interactive" and interactive["stdout"] == "42\n"
        waits.append(seconds_between(interactive["created_at"], interactive["started_at"]))

    batch_waiting = sum(q["depth"] for q in waiting_before["queues"] if q["lane"] == "batch")
    assert batch_waiting > FLOOD / 2  # the flood was still there: the runs went ahead of it
    # At worst each waits for the batch run the executor had just taken, plus the time to pick it up.
    assert max(waits) <= batch_run_s + 1.0, (waits, batch_run_s)
    shown = ", ".join(f"{wait * 1000:.0f} ms" for wait in waits)
    print(f"\ninteractive runs waited {shown} behind {batch_waiting} batch runs of at most {batch_run_s * 1000:.0f} ms")


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
