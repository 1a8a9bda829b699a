"""The documented REST API over real HTTP against the real services: every endpoint, every error code."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.conftest import TERMINAL, new_session, run, wait_terminal

pytestmark = pytest.mark.integration

ONE_MIB = 1024 * 1024
UNKNOWN = str(uuid.uuid4())


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    return body["error"]


@pytest.fixture
def python_id(languages: dict[str, dict[str, Any]]) -> str:
    return languages["python"]["id"]


def test_health(api: httpx.Client) -> None:
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_languages_list_and_detail(api: httpx.Client) -> None:
    listing = api.get("/languages").json()
    assert listing["total"] == 8
    names = [language["name"] for language in listing["languages"]]
    assert sorted(names) == ["c", "cpp", "go", "java", "javascript", "php", "python", "ruby"]
    for summary in listing["languages"]:
        detail = api.get(f"/languages/{summary['id']}").json()
        assert detail["id"] == summary["id"]
        assert uuid.UUID(detail["id"])
        assert detail["version"] and detail["version"] != "unavailable"
        # The stack's executors serve every language, all with this machine's toolchains.
        assert (detail["versions"], detail["available"]) == ([detail["version"]], True)
        assert {key: summary[key] for key in ("version", "versions", "available")} == {
            key: detail[key] for key in ("version", "versions", "available")
        }
        assert detail["template_code"] and detail["file_name"]
        assert detail["default_time_limit_ms"] > 0 and detail["default_memory_mb"] > 0


def test_language_errors(api: httpx.Client) -> None:
    error_of(api.get(f"/languages/{UNKNOWN}"), 404)
    error_of(api.get("/languages/not-a-uuid"), 400)


def test_session_lifecycle(api: httpx.Client, python_id: str) -> None:
    created = api.post("/code-sessions", json={"language_id": python_id})
    assert created.status_code == 201
    assert created.json()["status"] == "ACTIVE"
    session_id = created.json()["session_id"]

    session = api.get(f"/code-sessions/{session_id}").json()
    assert session["session_id"] == session_id
    assert session["language_id"] == python_id
    assert session["language_name"] == "python"
    assert session["runtime"] and session["version"]
    assert session["created_at"].endswith("Z") and session["updated_at"].endswith("Z")

    saved = api.patch(f"/code-sessions/{session_id}", json={"source_code": "print(42)\n"})
    assert saved.status_code == 200
    assert saved.json() == {**saved.json(), "session_id": session_id, "status": "ACTIVE"}
    assert api.get(f"/code-sessions/{session_id}").json()["source_code"] == "print(42)\n"

    closed = api.patch(f"/code-sessions/{session_id}/close")
    assert closed.status_code == 200
    assert closed.json()["status"] == "INACTIVE"
    assert api.patch(f"/code-sessions/{session_id}/close").json()["status"] == "INACTIVE"
    assert api.get(f"/code-sessions/{session_id}").json()["status"] == "INACTIVE"
    error_of(api.patch(f"/code-sessions/{session_id}", json={"source_code": "x"}), 409)
    error_of(api.post(f"/code-sessions/{session_id}/run"), 409)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"language_id": 5}', b"{}", b'{"language_id": null}'],
)
def test_create_session_bad_input(api: httpx.Client, body: bytes) -> None:
    error_of(api.post("/code-sessions", content=body, headers={"content-type": "application/json"}), 400)


def test_create_session_unknown_or_malformed_language(api: httpx.Client) -> None:
    error_of(api.post("/code-sessions", json={"language_id": UNKNOWN}), 404)
    error_of(api.post("/code-sessions", json={"language_id": "python"}), 400)


def test_session_unknown_and_malformed_ids(api: httpx.Client) -> None:
    for method, suffix in [
        ("GET", ""),
        ("PATCH", ""),
        ("POST", "/run"),
        ("GET", "/executions"),
        ("PATCH", "/close"),
    ]:
        body = {"source_code": "x"} if (method, suffix) == ("PATCH", "") else None
        error_of(api.request(method, f"/code-sessions/{UNKNOWN}{suffix}", json=body), 404)
        error_of(api.request(method, f"/code-sessions/nope{suffix}", json=body), 400)


def test_autosave_size_limit(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id)
    exactly = "#" * (ONE_MIB - 1) + "\n"
    assert api.patch(f"/code-sessions/{session_id}", json={"source_code": exactly}).status_code == 200
    error_of(api.patch(f"/code-sessions/{session_id}", json={"source_code": exactly + "#"}), 413)
    # Multi-byte characters count in bytes: 349,526 three-byte characters are over 1 MiB.
    error_of(api.patch(f"/code-sessions/{session_id}", json={"source_code": "€" * 349_526}), 413)
    error_of(api.patch(f"/code-sessions/{session_id}", json={"source_code": 42}), 400)
    error_of(api.patch(f"/code-sessions/{session_id}", json={}), 400)


@pytest.mark.parametrize(
    "limits",
    [
        {"time_limit_ms": 99},
        {"time_limit_ms": 60001},
        {"memory_limit_mb": 31},
        {"memory_limit_mb": 2049},
        {"time_limit_ms": "5000"},
        {"time_limit_ms": True},
        {"memory_limit_mb": 64.5},
        {"memory_limit_mb": 2**40},
    ],
)
def test_run_rejects_bad_limits(api: httpx.Client, python_id: str, limits: dict[str, Any]) -> None:
    session_id = new_session(api, python_id)
    error_of(api.post(f"/code-sessions/{session_id}/run", json=limits), 400)
    assert api.get(f"/code-sessions/{session_id}/executions").json()["executions"] == []


def test_run_with_limits_at_the_edges(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id)
    result = run(api, session_id, time_limit_ms=60000, memory_limit_mb=2048)
    assert result["status"] == "COMPLETED"
    result = run(api, session_id, time_limit_ms=1000, memory_limit_mb=32)
    assert result["status"] == "COMPLETED", result
    assert result["time_limit_ms"] == 1000 and result["memory_limit_mb"] == 32


def test_run_snapshots_the_source(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, "import time\ntime.sleep(0.3)\nprint('first')\n")
    accepted = api.post(f"/code-sessions/{session_id}/run")
    assert accepted.status_code == 202
    assert accepted.json() == {**accepted.json(), "status": "QUEUED"}
    api.patch(f"/code-sessions/{session_id}", json={"source_code": "print('second')\n"})
    assert wait_terminal(api, accepted.json()["execution_id"])["stdout"] == "first\n"


def test_lifecycle_is_monotonic(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, "import time\ntime.sleep(0.5)\nprint('done')\n")
    execution_id = api.post(f"/code-sessions/{session_id}/run").json()["execution_id"]
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = api.get(f"/executions/{execution_id}").json()["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in TERMINAL:
            break
        time.sleep(0.01)
    order = ["QUEUED", "RUNNING", "COMPLETED"]
    assert seen[-1] == "COMPLETED"
    assert "RUNNING" in seen
    assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen)
    final = api.get(f"/executions/{execution_id}").json()
    assert final["created_at"] <= final["started_at"] <= final["finished_at"]


def test_queued_or_running_execution_shape(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, "import time\ntime.sleep(1)\n")
    execution_id = api.post(f"/code-sessions/{session_id}/run").json()["execution_id"]
    body = api.get(f"/executions/{execution_id}").json()
    assert body["execution_id"] == execution_id
    assert body["status"] in {"QUEUED", "RUNNING"}
    assert "stdout" not in body
    wait_terminal(api, execution_id)


def test_execution_errors(api: httpx.Client) -> None:
    error_of(api.get(f"/executions/{UNKNOWN}"), 404)
    error_of(api.get("/executions/12"), 400)


def test_list_executions(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, "print('x')\n")
    ids = [api.post(f"/code-sessions/{session_id}/run").json()["execution_id"] for _ in range(3)]
    for execution_id in ids:
        wait_terminal(api, execution_id)
    listing = api.get(f"/code-sessions/{session_id}/executions").json()
    assert listing["session_id"] == session_id
    assert [e["execution_id"] for e in listing["executions"]] == list(reversed(ids))
    first = listing["executions"][0]
    assert first["status"] == "COMPLETED" and first["exit_code"] == 0
    assert first["execution_time_ms"] >= 0 and first["created_at"].endswith("Z")
    limited = api.get(f"/code-sessions/{session_id}/executions", params={"limit": 2}).json()
    assert [e["execution_id"] for e in limited["executions"]] == list(reversed(ids))[:2]
    for bad in ("0", "101", "abc", "1.5"):
        error_of(api.get(f"/code-sessions/{session_id}/executions", params={"limit": bad}), 400)


def test_rate_limit_per_session(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, "print('x')\n")
    accepted = [api.post(f"/code-sessions/{session_id}/run") for _ in range(10)]
    assert [r.status_code for r in accepted] == [202] * 10
    refused = api.post(f"/code-sessions/{session_id}/run")
    assert refused.status_code == 429
    assert refused.json()["error"]
    assert 1 <= refused.json()["retryAfter"] <= 60
    assert refused.headers["Retry-After"] == str(refused.json()["retryAfter"])
    # Another session is not affected.
    other = new_session(api, python_id, "print('y')\n")
    assert api.post(f"/code-sessions/{other}/run").status_code == 202
    for response in accepted:
        wait_terminal(api, response.json()["execution_id"])


def test_consecutive_failures_block_the_session(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, "raise SystemExit(1)\n")
    for _ in range(5):
        assert run(api, session_id)["status"] == "FAILED"
    refused = api.post(f"/code-sessions/{session_id}/run")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == str(refused.json()["retryAfter"])


def test_unknown_route_and_wrong_method(api: httpx.Client) -> None:
    error_of(api.get("/nope"), 404)
    error_of(api.delete("/languages"), 405)
    error_of(api.put(f"/code-sessions/{UNKNOWN}"), 405)


def test_openapi_document(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for path in [
        "/health",
        "/languages",
        "/languages/{language_id}",
        "/code-sessions",
        "/code-sessions/{session_id}",
        "/code-sessions/{session_id}/run",
        "/code-sessions/{session_id}/executions",
        "/code-sessions/{session_id}/close",
        "/executions/{execution_id}",
    ]:
        assert path in paths, path
