"""Live runs through the whole system: waiting for a result without polling (`?wait=N`)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

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
