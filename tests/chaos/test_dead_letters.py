"""Dead letters: a run whose executor died with no retry left ends FAILED internal_error; an operator
finds it and retries it, and it runs to its result as a new attempt of the same execution."""

from __future__ import annotations

import threading
import time

import pytest

from tests.chaos.conftest import Deploy
from tests.chaos.test_live_streams import BOUND_S, TICKS, kill_the_executor_running, python_session, sse_events

pytestmark = pytest.mark.chaos


def test_an_operator_retries_a_dead_letter_to_its_result(deploy: Deploy) -> None:
    lce = deploy(executors=1, LCE_LEASE_S="2", LCE_RETRY_BACKOFF_S="none")
    session_id = python_session(lce, TICKS.format(n=10))
    run = lce.api.post(f"/code-sessions/{session_id}/run", json={"time_limit_ms": 20_000})
    execution_id = run.json()["execution_id"]
    kill_the_executor_running(lce, execution_id)
    deadline = time.monotonic() + BOUND_S
    while (failed := lce.api.get(f"/executions/{execution_id}").json())["status"] != "FAILED":
        assert time.monotonic() < deadline, failed
        time.sleep(0.1)
    assert failed["reason"] == "internal_error"

    dead_letters = lce.api.get("/executions", params={"status": "FAILED", "reason": "internal_error"}).json()
    assert [e["execution_id"] for e in dead_letters["executions"]] == [execution_id]
    assert dead_letters["executions"][0]["attempt"] == 1 and dead_letters["next_page_token"] is None

    lce.replace(lce.service("executor-1"))  # the operator brings an executor back, then retries
    retried = lce.api.post(f"/executions/{execution_id}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json() == {"execution_id": execution_id, "status": "QUEUED", "attempt": 2}
    # The gateway forgot the FAILED answer it kept: a stream from the start follows the new attempt.
    events: list = []
    watcher = threading.Thread(target=lambda: events.extend(sse_events(lce, execution_id)))
    watcher.start()
    watcher.join(BOUND_S)
    assert not watcher.is_alive()
    kind, result = events[-1]
    assert kind == "result" and result["status"] == "COMPLETED", result
    assert result["stdout"] == "".join(f"{n}\n" for n in range(10))
    assert lce.api.get(f"/executions/{execution_id}").json()["status"] == "COMPLETED"
    history = lce.api.get(f"/executions/{execution_id}/events").json()["events"]
    assert [e["type"] for e in history] == ["QUEUED", "RUNNING", "FAILED", "RETRIED", "RUNNING", "COMPLETED"]
    assert history[3]["reason"] == "operator_retry by an internal caller"
    # Once over, it is the program's result: not retried again.
    assert lce.api.post(f"/executions/{execution_id}/retry").status_code == 409
