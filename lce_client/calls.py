"""Each API call described once, as data: method, path, body and how to read the answer. `Client` and
`AsyncClient` (lce_client/client.py) send the same descriptions, one blocking, one with asyncio."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from lce_client.errors import LceError, UnreachableError, error_for
from lce_client.models import Execution, ExecutionSummary, Language, Session, SessionState, SourceFile, TestCase

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S = 30.0
MAX_WAIT_S = 30  # the most one `?wait=N` may ask (the API's bound)
# Streams and WebSockets see a keep-alive at least every 15 s: a longer silence is a dead connection.
STREAM_READ_TIMEOUT_S = 45.0

T = TypeVar("T")


def target(url: str | None, key: str | None) -> tuple[str, str | None]:
    """The gateway's URL and the API key: as given, else LCE_URL and LCE_API_KEY, else the local gateway."""
    resolved_url = url or os.environ.get("LCE_URL") or DEFAULT_URL
    resolved_key = key if key is not None else os.environ.get("LCE_API_KEY") or None
    return resolved_url.rstrip("/"), resolved_key


def auth_headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]  # the answer's JSON to the result
    body: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    timeout: float | None = None  # None: the client's own

    def result(self, response: httpx.Response) -> T:
        return self.parse(json_of(response))


def json_of(response: httpx.Response) -> Any:
    """The answer's JSON; an error answer raised as its LceError."""
    if response.is_success:
        return response.json()
    raise error_for(response.status_code, response.headers, response.content)


def segment(value: str) -> str:
    """An id as one path segment, whatever it holds."""
    return quote(value, safe="")


def languages() -> Call[list[Language]]:
    return Call("GET", "/languages", lambda body: [Language.from_json(item) for item in body["languages"]])


def language(language_id: str) -> Call[Language]:
    return Call("GET", f"/languages/{segment(language_id)}", Language.from_json)


def _program(source_code: str | None, files: Iterable[SourceFile] | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if source_code is not None:
        body["source_code"] = source_code
    if files is not None:
        body["files"] = [item.to_json() for item in files]
    return body


def create_session(language_id: str, source_code: str | None, files: Iterable[SourceFile] | None) -> Call[SessionState]:
    body = {"language_id": language_id, **_program(source_code, files)}
    return Call("POST", "/code-sessions", SessionState.from_json, body=body)


def get_session(session_id: str) -> Call[Session]:
    return Call("GET", f"/code-sessions/{segment(session_id)}", Session.from_json)


def update_session(session_id: str, source_code: str | None, files: Iterable[SourceFile] | None) -> Call[SessionState]:
    body = _program(source_code, files)
    if not body:
        raise ValueError("update_session needs source_code, files or both")
    return Call("PATCH", f"/code-sessions/{segment(session_id)}", SessionState.from_json, body=body)


def close_session(session_id: str) -> Call[SessionState]:
    return Call("PATCH", f"/code-sessions/{segment(session_id)}/close", SessionState.from_json)


@dataclass(frozen=True)
class RunOptions:
    """What a run may ask besides its session's program (README: POST /code-sessions/{id}/run); None: the
    deployment's or the language's default."""

    stdin: str | None = None  # base64 of the bytes with encoding="base64"
    args: tuple[str, ...] | None = None
    time_limit_ms: int | None = None
    memory_limit_mb: int | None = None
    compile_time_limit_ms: int | None = None
    compile_memory_limit_mb: int | None = None
    encoding: str | None = None  # utf8 or base64
    interactive: bool | None = None
    tests: tuple[TestCase, ...] | None = None
    compare: str | None = None  # trim, exact or tokens
    float_tolerance: float | None = None
    stop_on_first_failure: bool | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {name: value for name, value in vars(self).items() if value is not None}
        if self.args is not None:
            body["args"] = list(self.args)
        if self.tests is not None:
            body["tests"] = [case.to_json() for case in self.tests]
        return body


def run(session_id: str, options: RunOptions, wait: float | None, idempotency_key: str | None) -> Call[Execution]:
    params = {"wait": _wait_bound(wait)} if wait is not None else None
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    return Call(
        "POST",
        f"/code-sessions/{segment(session_id)}/run",
        Execution.from_json,
        body=options.to_json(),
        params=params,
        headers=headers,
        timeout=_wait_timeout(wait),
    )


def list_executions(session_id: str, limit: int) -> Call[list[ExecutionSummary]]:
    return Call(
        "GET",
        f"/code-sessions/{segment(session_id)}/executions",
        lambda body: [ExecutionSummary.from_json(item) for item in body["executions"]],
        params={"limit": limit},
    )


def get_execution(execution_id: str, wait: float | None = None) -> Call[Execution]:
    params = {"wait": _wait_bound(wait)} if wait is not None else None
    return Call(
        "GET", f"/executions/{segment(execution_id)}", Execution.from_json, params=params, timeout=_wait_timeout(wait)
    )


def _wait_bound(wait: float) -> str:
    """`wait` as the API reads it: digits with at most one decimal point."""
    if not 0 < wait <= MAX_WAIT_S:
        raise ValueError(f"wait is 0 < N <= {MAX_WAIT_S} seconds, got {wait}")
    return f"{max(wait, 0.001):.3f}"


def _wait_timeout(wait: float | None) -> float | None:
    return None if wait is None else wait + DEFAULT_TIMEOUT_S


def stream_path(execution_id: str) -> str:
    return f"/executions/{segment(execution_id)}/stream"


def stream_headers(last_event_id: str | None) -> Mapping[str, str]:
    return {"Accept": "text/event-stream", **({"Last-Event-ID": last_event_id} if last_event_id else {})}


def websocket_url(base_url: str, execution_id: str) -> str:
    scheme, rest = base_url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/executions/{segment(execution_id)}/interact"


def unreachable(base_url: str, exc: Exception) -> LceError:
    return UnreachableError(f"cannot reach the LCE gateway at {base_url}: {exc}")
