"""Live runs through the whole system: waiting for a result without polling (`?wait=N`), and output
as it happens (`/executions/{id}/stream`, Server-Sent Events read with a real HTTP client)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack import Stack
from tests.integration.conftest import new_session, wait_terminal

pytestmark = pytest.mark.integration

SLEEPS = "import time\ntime.sleep({s})\nprint('woke')\n"


@pytest.fixture
def python_id(languages: dict[str, dict[str, Any]]) -> str:
    return str(languages["python"]["id"])


def test_get_with_wait_answers_right_after_the_run_ends(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, SLEEPS.format(s=1))
    execution_id = api.post(f"/code-sessions/{session_id}/run").json()["execution_id"]
    started = time.monotonic()
    answer = api.get(f"/executions/{execution_id}", params={"wait": 20})
    waited = time.monotonic() - started
    assert answer.status_code == 200
    assert (answer.json()["status"], answer.json()["stdout"]) == ("COMPLETED", "woke\n")
    # The program sleeps 1 s: the answer comes when it ends, long before the 20 s bound.
    assert 0.9 < waited < 10


def test_get_with_wait_answers_at_its_bound_for_a_longer_run(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, SLEEPS.format(s=6))
    execution_id = api.post(f"/code-sessions/{session_id}/run", json={"time_limit_ms": 10_000}).json()["execution_id"]
    started = time.monotonic()
    answer = api.get(f"/executions/{execution_id}", params={"wait": 1.5})
    waited = time.monotonic() - started
    assert answer.status_code == 200 and answer.json()["status"] in ("QUEUED", "RUNNING")
    assert 1.4 < waited < 5
    assert wait_terminal(api, execution_id)["stdout"] == "woke\n"


def test_a_finished_run_is_answered_at_once(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, "print(1)\n")
    execution_id = api.post(f"/code-sessions/{session_id}/run").json()["execution_id"]
    wait_terminal(api, execution_id)
    started = time.monotonic()
    assert api.get(f"/executions/{execution_id}", params={"wait": 30}).json()["stdout"] == "1\n"
    assert time.monotonic() - started < 2


def test_run_with_wait_gives_the_result_in_one_request(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, "print(input()[::-1])\n")
    answer = api.post(f"/code-sessions/{session_id}/run", params={"wait": 20}, json={"stdin": "olleh\n"})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["stdout"]) == ("COMPLETED", "hello\n")


def test_run_with_wait_answers_202_when_the_run_outlasts_it(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, SLEEPS.format(s=4))
    answer = api.post(f"/code-sessions/{session_id}/run", params={"wait": 0.5})
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "QUEUED"
    assert wait_terminal(api, answer.json()["execution_id"])["stdout"] == "woke\n"


@pytest.mark.parametrize("wait", ["0", "31", "-1", "abc", "1e1", ""])
def test_a_bad_wait_is_400(api: httpx.Client, python_id: str, wait: str) -> None:
    session_id = new_session(api, python_id, "print(1)\n")
    refused = api.post(f"/code-sessions/{session_id}/run", params={"wait": wait})
    assert refused.status_code == 400 and "wait" in refused.json()["error"]
    assert api.get(f"/code-sessions/{session_id}/executions").json()["executions"] == []
    execution_id = api.post(f"/code-sessions/{session_id}/run").json()["execution_id"]
    wait_terminal(api, execution_id)
    refused = api.get(f"/executions/{execution_id}", params={"wait": wait})
    assert refused.status_code == 400 and "wait" in refused.json()["error"]


# --- output as it happens: GET /executions/{id}/stream ---------------------------------------------

TICKS = "import time\nfor n in range(5):\n    print(f'tick {n}', flush=True)\n    time.sleep(0.4)\n"


def sse_events(response: httpx.Response) -> Iterator[tuple[str, str, dict[str, Any], float]]:
    """(id, event, data, seconds since the stream opened) for each event; comment lines are skipped."""
    started = time.monotonic()
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
            continue
        if fields:
            yield fields["id"], fields["event"], json.loads(fields["data"]), time.monotonic() - started
            fields = {}


def stream(api: httpx.Client, execution_id: str, last_event_id: str | None = None) -> list[Any]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with api.stream("GET", f"/executions/{execution_id}/stream", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(sse_events(response))


def test_output_is_seen_line_by_line_as_the_program_writes_it(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, TICKS)
    execution_id = api.post(f"/code-sessions/{session_id}/run").json()["execution_id"]
    events = stream(api, execution_id)
    kinds = [event for _, event, _, _ in events]
    assert kinds[-1] == "result" and "RUNNING" in [data.get("status") for _, e, data, _ in events if e == "status"]
    printed = [(data, at) for _, event, data, at in events if event == "stdout"]
    assert "".join(data["data"] for data, _ in printed) == "".join(f"tick {n}\n" for n in range(5))
    offsets = [data["offset"] for data, _ in printed]
    assert offsets == sorted(offsets) and offsets[0] == 0
    # Lines 400 ms apart arrive apart, not all at the end: the first well before the result.
    result_at = events[-1][3]
    assert len(printed) >= 4 and printed[0][1] < result_at - 1.0
    assert events[-1][2]["stdout"] == "".join(f"tick {n}\n" for n in range(5))
    assert [event_id for event_id, *_ in events] == sorted({event_id for event_id, *_ in events}, key=_entry_order)


def _entry_order(event_id: str) -> tuple[int, int]:
    millis, _, sequence = event_id.partition("-")
    return int(millis), int(sequence)


def test_a_reconnect_with_last_event_id_gets_what_followed(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, TICKS)
    execution_id = api.post(f"/code-sessions/{session_id}/run").json()["execution_id"]
    with api.stream("GET", f"/executions/{execution_id}/stream") as response:
        first = []
        for event in sse_events(response):
            first.append(event)
            if event[1] == "stdout":
                break  # the client goes away after the first output
    rest = stream(api, execution_id, last_event_id=first[-1][0])
    whole = stream(api, execution_id)  # from the start, for comparison
    assert [e[:3] for e in first + rest] == [e[:3] for e in whole]


def test_a_stream_opened_after_the_end_replays_the_run(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, "import sys\nprint('out')\nprint('err', file=sys.stderr)\n")
    execution_id = api.post(f"/code-sessions/{session_id}/run").json()["execution_id"]
    final = wait_terminal(api, execution_id)
    events = stream(api, execution_id)
    assert [(event, data) for _, event, data, _ in events if event in ("stdout", "stderr")] == [
        ("stdout", {"attempt": 1, "offset": 0, "data": "out\n"}),
        ("stderr", {"attempt": 1, "offset": 0, "data": "err\n"}),
    ]
    assert events[-1][1:3] == ("result", final)


def test_streams_of_unknown_or_malformed_ids(api: httpx.Client) -> None:
    assert api.get(f"/executions/{uuid.uuid4()}/stream").status_code == 404
    assert api.get("/executions/not-an-id/stream").status_code == 400


def test_five_hundred_streams_at_once(api: httpx.Client, stack: Stack, python_id: str) -> None:
    """500 open streams (50 on each of 10 runs printing for ~2 s), read at once by one client: each
    sees its run's whole output and result, and the gateway answers other requests meanwhile."""
    source = "import time\nfor n in range(8):\n    print(f'line {n}', flush=True)\n    time.sleep(0.25)\n"
    runs = []
    for _ in range(10):
        session_id = new_session(api, python_id, source)
        runs.append(api.post(f"/code-sessions/{session_id}/run").json()["execution_id"])
    expected = "".join(f"line {n}\n" for n in range(8))

    async def read(client: httpx.AsyncClient, execution_id: str) -> tuple[str, str]:
        async with client.stream("GET", f"/executions/{execution_id}/stream") as response:
            assert response.status_code == 200
            printed, last = [], ""
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    data = json.loads(line.removeprefix("data: "))
                    printed.append(data.get("data", "") if last == "event: stdout" else "")
                    if last == "event: result":
                        return "".join(printed), data["status"]
                last = line
        return "".join(printed), "cut"

    async def all_streams() -> tuple[list[tuple[str, str]], float]:
        limits = httpx.Limits(max_connections=600, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=stack.config.gateway_url, timeout=60, limits=limits) as client:
            readers = [asyncio.create_task(read(client, runs[n % 10])) for n in range(500)]
            await asyncio.sleep(1.0)  # all open, runs printing
            started = time.monotonic()
            assert (await client.get("/health")).status_code == 200
            health_s = time.monotonic() - started
            return await asyncio.gather(*readers), health_s

    results, health_s = asyncio.run(all_streams())
    assert results == [(expected, "COMPLETED")] * 500
    assert health_s < 2
