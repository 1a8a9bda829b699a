"""Live streams when the executor running the program is SIGKILLed: an SSE stream follows the retry
to the result, an interactive run's WebSocket ends with its failure. Never a hang."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.chaos.conftest import Deploy, Deployment

pytestmark = pytest.mark.chaos

# Short leases: a dead executor's run is noticed within seconds.
FAST_RECOVERY = {"LCE_LEASE_S": "2", "LCE_RETRY_BACKOFF_S": "0.2,0.2,0.2"}
TICKS = "import time\nfor n in range({n}):\n    print(n, flush=True)\n    time.sleep(0.2)\n"
BOUND_S = 60


def python_session(lce: Deployment, source: str) -> str:
    languages = lce.api.get("/languages").json()["languages"]
    language_id = next(language["id"] for language in languages if language["name"] == "python")
    session_id: str = lce.api.post("/code-sessions", json={"language_id": language_id}).json()["session_id"]
    assert lce.api.patch(f"/code-sessions/{session_id}", json={"source_code": source}).status_code == 200
    return session_id


def kill_the_executor_running(lce: Deployment, execution_id: str) -> None:
    """Waits until the program has printed, then SIGKILLs the executor that runs it."""
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        execution = lce.api.get(f"/executions/{execution_id}").json()
        if execution["status"] == "RUNNING":
            time.sleep(0.6)  # a few lines out
            victim = lce.service(lce.api.get(f"/executions/{execution_id}/events").json()["events"][-1]["executor_id"])
            assert victim.process is not None
            victim.process.kill()
            victim.process.wait(10)
            return
        time.sleep(0.05)
    raise AssertionError("the run never started")


def sse_events(lce: Deployment, execution_id: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    with httpx.stream(
        "GET", f"{lce.stack.config.gateway_url}/executions/{execution_id}/stream", timeout=BOUND_S
    ) as sse:
        kind = ""
        for line in sse.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    return events


def test_a_stream_follows_the_retry_of_a_run_whose_executor_died(deploy: Deploy) -> None:
    lce = deploy(executors=2, **FAST_RECOVERY)
    session_id = python_session(lce, TICKS.format(n=15))
    execution_id = lce.api.post(f"/code-sessions/{session_id}/run", json={"time_limit_ms": 20_000}).json()[
        "execution_id"
    ]
    killer = threading.Thread(target=kill_the_executor_running, args=(lce, execution_id))
    killer.start()
    started = time.monotonic()
    events = sse_events(lce, execution_id)
    killer.join()
    assert time.monotonic() - started < BOUND_S
    statuses = [(data["status"], data["attempt"]) for kind, data in events if kind == "status"]
    assert statuses[:2] == [("QUEUED", 1), ("RUNNING", 1)]
    assert ("QUEUED", 2) in statuses and ("RUNNING", 2) in statuses  # the retry, announced on the stream
    retried = next(data for kind, data in events if kind == "status" and data["attempt"] == 2)
    assert retried["reason"] == "lease_expired"
    kind, result = events[-1]
    assert kind == "result" and (result["status"], result["stdout"]) == (
        "COMPLETED",
        "".join(f"{n}\n" for n in range(15)),
    )
    # The second attempt's output is on the stream whole, from offset 0.
    second = [data for kind, data in events if kind == "stdout" and data["attempt"] == 2]
    assert second[0]["offset"] == 0 and "".join(d["data"] for d in second) == result["stdout"]


def test_an_interactive_run_whose_executor_died_ends_failed(deploy: Deploy) -> None:
    lce = deploy(executors=2, **FAST_RECOVERY)
    session_id = python_session(lce, TICKS.format(n=100) + "input()\n")
    body = {"time_limit_ms": 30_000, "interactive": True}
    execution_id = lce.api.post(f"/code-sessions/{session_id}/run", json=body).json()["execution_id"]
    url = lce.stack.config.gateway_url.replace("http://", "ws://") + f"/executions/{execution_id}/interact"
    killer = threading.Thread(target=kill_the_executor_running, args=(lce, execution_id))
    killer.start()
    received = []
    with connect(url) as socket:
        while True:
            message = json.loads(socket.recv(timeout=BOUND_S))
            received.append(message)
            if message["type"] == "result":
                break
    killer.join()
    execution = received[-1]["execution"]
    assert (execution["status"], execution["reason"]) == ("FAILED", "internal_error")
    assert "not retried" in execution["stderr"]
    assert all(m.get("attempt", 1) == 1 for m in received if m["type"] != "result")  # no second attempt
    types = [event["type"] for event in lce.api.get(f"/executions/{execution_id}/events").json()["events"]]
    assert types == ["QUEUED", "RUNNING", "FAILED"]
