"""Reliability features over real HTTP against the real services: Idempotency-Key, the lifecycle log,
loop advice. (Faults and recovery are proven by tests/chaos.)"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.conftest import new_session, wait_terminal

pytestmark = pytest.mark.integration

ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture
def python_id(languages: dict[str, dict[str, Any]]) -> str:
    return languages["python"]["id"]


def post_run(api: httpx.Client, session_id: str, key: str | None = None, **body: int) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return api.post(f"/code-sessions/{session_id}/run", json=body or None, headers=headers)


class TestIdempotencyKey:
    def test_the_same_key_answers_the_same_execution_and_body(self, api: httpx.Client, python_id: str) -> None:
        session_id = new_session(api, python_id, "print('once')\n")
        key = f"client-{uuid.uuid4()}"
        first = post_run(api, session_id, key)
        assert first.status_code == 202, first.text
        wait_terminal(api, first.json()["execution_id"])
        again = post_run(api, session_id, key)
        assert again.status_code == 202
        assert again.json() == first.json()
        runs = api.get(f"/code-sessions/{session_id}/executions").json()["executions"]
        assert [run["execution_id"] for run in runs] == [first.json()["execution_id"]]

    def test_another_key_or_no_key_makes_another_execution(self, api: httpx.Client, python_id: str) -> None:
        session_id = new_session(api, python_id)
        first = post_run(api, session_id, "a").json()["execution_id"]
        assert post_run(api, session_id, "b").json()["execution_id"] != first
        assert post_run(api, session_id).json()["execution_id"] != first

    def test_keys_are_scoped_to_their_session(self, api: httpx.Client, python_id: str) -> None:
        one, other = new_session(api, python_id), new_session(api, python_id)
        assert (
            post_run(api, one, "shared").json()["execution_id"] != post_run(api, other, "shared").json()["execution_id"]
        )

    @pytest.mark.parametrize("key", ["", "x" * 256, "has space"])
    def test_a_malformed_key_is_400(self, api: httpx.Client, python_id: str, key: str) -> None:
        response = post_run(api, new_session(api, python_id), key)
        assert response.status_code == 400, response.text
        assert "Idempotency-Key" in response.json()["error"]


def test_events_oldest_first_in_the_documented_shape(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, "print('hi')\n")
    execution_id = post_run(api, session_id).json()["execution_id"]
    final = wait_terminal(api, execution_id)
    assert final["status"] == "COMPLETED", final
    body = api.get(f"/executions/{execution_id}/events").json()
    assert body["execution_id"] == execution_id
    types = [event["type"] for event in body["events"]]
    assert types == ["QUEUED", "RUNNING", "COMPLETED"]
    assert all(ISO_MS_Z.match(event["at"]) for event in body["events"])
    assert [event["at"] for event in body["events"]] == sorted(event["at"] for event in body["events"])
    running = body["events"][1]
    assert running["attempt"] == 1 and running["executor_id"]


def test_events_of_an_unknown_or_malformed_execution(api: httpx.Client) -> None:
    assert api.get(f"/executions/{uuid.uuid4()}/events").status_code == 404
    assert api.get("/executions/not-a-uuid/events").status_code == 400


class TestLoopAdvice:
    def test_an_endless_loop_is_run_and_warned_about_once_it_ends(self, api: httpx.Client, python_id: str) -> None:
        session_id = new_session(api, python_id, "while True:\n    pass\n")
        accepted = post_run(api, session_id, time_limit_ms=300)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["warnings"] == []  # the executor works it out, never the request path
        final = wait_terminal(api, accepted.json()["execution_id"])
        assert final["status"] == "TIMEOUT"
        [warning] = final["warnings"]
        assert warning.startswith("line 1:") and "while True" in warning

    def test_a_loop_that_exits_gets_no_warning(self, api: httpx.Client, python_id: str) -> None:
        source = "n = 0\nwhile True:\n    n += 1\n    if n == 3:\n        break\nprint(n)\n"
        session_id = new_session(api, python_id, source)
        accepted = post_run(api, session_id)
        assert accepted.json()["warnings"] == []
        final = wait_terminal(api, accepted.json()["execution_id"])
        assert (final["status"], final["stdout"], final["warnings"]) == ("COMPLETED", "3\n", [])

    def test_a_syntax_error_gets_no_warning_and_its_own_result(self, api: httpx.Client, python_id: str) -> None:
        session_id = new_session(api, python_id, "while True\n    pass\n")
        accepted = post_run(api, session_id)
        assert accepted.status_code == 202 and accepted.json()["warnings"] == []
        final = wait_terminal(api, accepted.json()["execution_id"])
        assert final["status"] == "FAILED" and "SyntaxError" in final["stderr"]
