"""The gateway app against stand-in Session and Execution services over real gRPC channels.

The stand-ins keep their state in memory and raise common.errors, so the real server-side
error translation (codes plus `lce-error-kind` / `retry-after` trailing metadata) reaches
the gateway exactly as it would from the real services.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel

from common.errors import InvalidArgument, NotFound, PayloadTooLarge, RateLimited, SessionClosed
from common.grpc_server import RunningServer, start_server
from common.release import VERSION
from gateway import schemas
from gateway.app import create_app
from gateway.request_limits import MAX_BODY_BYTES
from gateway.settings import GatewayConfig
from lce.execution.v1 import execution_pb2, execution_pb2_grpc
from lce.session.v1 import session_pb2, session_pb2_grpc

pytestmark = pytest.mark.anyio

MAX_SOURCE_BYTES = 1024 * 1024
RUNS_ALLOWED = 3
RETRY_AFTER_S = 42
SLOW_EXECUTION_ID = "00000000-0000-4000-8000-00000000510e"
BROKEN_EXECUTION_ID = "00000000-0000-4000-8000-0000000b120e"

PYTHON = session_pb2.Language(
    id="5c6b0a3e-7f43-5d4e-9a38-2c1f0e7b9d01",
    name="python",
    runtime="cpython",
    version="3.11.2",
    template_code='print("Hello World")\n',
    file_name="main.py",
    default_time_limit_ms=5000,
    default_memory_mb=256,
    versions=["3.11.2", "3.12.1"],
    available=True,
)
JAVASCRIPT = session_pb2.Language(
    id="0b7e5a1c-3d2f-5e8a-b4c6-9f1d2e3a4b05",
    name="javascript",
    runtime="node",
    version="18.19.0",
    template_code="console.log('Hello World');\n",
    file_name="main.js",
    default_time_limit_ms=5000,
    default_memory_mb=256,
)
LANGUAGES = {language.id: language for language in (PYTHON, JAVASCRIPT)}
SYSTEM = execution_pb2.GetSystemResponse(
    queues=[
        execution_pb2.QueueState(name="q:python", language="python", lane=execution_pb2.PRIORITY_INTERACTIVE, depth=0),
        execution_pb2.QueueState(
            name="q:java:batch", language="java", lane=execution_pb2.PRIORITY_BATCH, depth=3, oldest_seconds=12.34567
        ),
    ],
    executors=[
        execution_pb2.ExecutorState(
            executor_id="e1",
            pool="default",
            languages={"python": "3.11.2"},
            sandbox_mode="bwrap-userns",
            slots_busy=1,
            slots_total=1,
            host="node-1",
            pid=7,
            version="0.1.0",
            started_at=Timestamp(seconds=1768989600),
            queues=["q:python"],
        )
    ],
    runs=[execution_pb2.RunCounts(minutes=1, by_state={"QUEUED": 4, "COMPLETED": 3})],
    version="0.1.0",
)


def check_uuid(value: str, what: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{what} is not a UUID: {value!r}") from None


def now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


@dataclass
class Store:
    sessions: dict[str, session_pb2.Session] = field(default_factory=dict)
    executions: dict[str, execution_pb2.Execution] = field(default_factory=dict)
    idempotency_keys: list[str | None] = field(default_factory=list)
    calls: int = 0  # every RPC of either stand-in, to prove a request never reached a backend
    lock: threading.Lock = field(default_factory=threading.Lock)
    # WatchExecutions streams; None ends one
    watchers: list[queue.SimpleQueue[execution_pb2.ExecutionChange | None]] = field(default_factory=list)

    def count(self) -> None:
        with self.lock:
            self.calls += 1

    def session(self, session_id: str) -> session_pb2.Session:
        check_uuid(session_id, "session_id")
        if session_id not in self.sessions:
            raise NotFound(f"session {session_id} not found")
        return self.sessions[session_id]

    def start(self, execution_id: str) -> None:
        execution = self.executions[execution_id]
        execution.status = execution_pb2.EXECUTION_STATUS_RUNNING
        execution.started_at.CopyFrom(now())
        self.announce(execution_pb2.ExecutionChange(execution_id=execution_id))

    def finish(self, execution_id: str, result: execution_pb2.RunResult, *, carried: bool = True) -> None:
        """Ends the run; its change carries the final state, as execution_service's does unless it is large."""
        execution = self.executions[execution_id]
        execution.status = result.status
        execution.started_at.CopyFrom(execution.created_at)
        execution.finished_at.CopyFrom(now())
        execution.result.CopyFrom(result)
        change = execution_pb2.ExecutionChange(execution_id=execution_id)
        if carried:
            change.finished.CopyFrom(execution)
        self.announce(change)

    def announce(self, change: execution_pb2.ExecutionChange | None) -> None:
        with self.lock:
            for watcher in self.watchers:
                watcher.put(change)

    def complete(self, execution_id: str, *, carried: bool = True) -> None:
        result = execution_pb2.RunResult(status=execution_pb2.EXECUTION_STATUS_COMPLETED, stdout="42\n")
        self.finish(execution_id, result, carried=carried)

    def end_streams(self) -> None:
        self.announce(None)


class StandInSessions(session_pb2_grpc.SessionServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    def ListLanguages(self, request: Any, context: Any) -> session_pb2.ListLanguagesResponse:
        self.store.count()
        return session_pb2.ListLanguagesResponse(languages=LANGUAGES.values())

    def GetLanguage(self, request: Any, context: Any) -> session_pb2.GetLanguageResponse:
        self.store.count()
        return session_pb2.GetLanguageResponse(language=self._language(request.language_id))

    def CreateSession(self, request: Any, context: Any) -> session_pb2.CreateSessionResponse:
        self.store.count()
        language = self._language(request.language_id)
        source = request.source_code if request.HasField("source_code") else language.template_code
        self._check_size(source)
        stamp = now()
        session = session_pb2.Session(
            id=str(uuid.uuid4()),
            status=session_pb2.SESSION_STATUS_ACTIVE,
            language=language,
            source_code=source,
            created_at=stamp,
            updated_at=stamp,
        )
        self.store.sessions[session.id] = session
        return session_pb2.CreateSessionResponse(session=session)

    def GetSession(self, request: Any, context: Any) -> session_pb2.GetSessionResponse:
        self.store.count()
        return session_pb2.GetSessionResponse(session=self.store.session(request.session_id))

    def UpdateSource(self, request: Any, context: Any) -> session_pb2.UpdateSourceResponse:
        self.store.count()
        session = self.store.session(request.session_id)
        if session.status != session_pb2.SESSION_STATUS_ACTIVE:
            raise SessionClosed("session is closed")
        self._check_size(request.source_code)
        session.source_code = request.source_code
        session.updated_at.CopyFrom(now())
        return session_pb2.UpdateSourceResponse(session=session)

    def CloseSession(self, request: Any, context: Any) -> session_pb2.CloseSessionResponse:
        self.store.count()
        session = self.store.session(request.session_id)
        session.status = session_pb2.SESSION_STATUS_INACTIVE
        return session_pb2.CloseSessionResponse(session=session)

    def _language(self, language_id: str) -> session_pb2.Language:
        check_uuid(language_id, "language_id")
        if language_id not in LANGUAGES:
            raise NotFound(f"language {language_id} not found")
        return LANGUAGES[language_id]

    def _check_size(self, source: str) -> None:
        if len(source.encode()) > MAX_SOURCE_BYTES:
            raise PayloadTooLarge("source_code is over 1 MiB")


class StandInExecutions(execution_pb2_grpc.ExecutionServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    def CreateExecution(self, request: Any, context: Any) -> execution_pb2.CreateExecutionResponse:
        self.store.count()
        key = request.idempotency_key if request.HasField("idempotency_key") else None
        self.store.idempotency_keys.append(key)
        if key == "":
            raise InvalidArgument("Idempotency-Key must be 1 to 255 visible ASCII characters")
        session = self.store.session(request.session_id)
        if session.status != session_pb2.SESSION_STATUS_ACTIVE:
            raise SessionClosed("session is closed")
        time_limit = request.time_limit_ms if request.HasField("time_limit_ms") else 5000
        memory_limit = request.memory_limit_mb if request.HasField("memory_limit_mb") else 256
        if not 100 <= time_limit <= 60000 or not 32 <= memory_limit <= 2048:
            raise InvalidArgument("limits out of range")
        runs = [e for e in self.store.executions.values() if e.session_id == session.id]
        if len(runs) >= RUNS_ALLOWED:
            raise RateLimited("too many runs per minute", RETRY_AFTER_S)
        execution = execution_pb2.Execution(
            id=str(uuid.uuid4()),
            session_id=session.id,
            status=execution_pb2.EXECUTION_STATUS_QUEUED,
            language=session.language.name,
            time_limit_ms=time_limit,
            memory_limit_mb=memory_limit,
            created_at=now(),
        )
        self.store.executions[execution.id] = execution
        return execution_pb2.CreateExecutionResponse(execution=execution)

    def GetExecution(self, request: Any, context: Any) -> execution_pb2.GetExecutionResponse:
        self.store.count()
        if request.execution_id == SLOW_EXECUTION_ID:
            time.sleep(1.0)
        if request.execution_id == BROKEN_EXECUTION_ID:
            raise RuntimeError("a bug in the service")
        check_uuid(request.execution_id, "execution_id")
        if request.execution_id not in self.store.executions:
            raise NotFound(f"execution {request.execution_id} not found")
        return execution_pb2.GetExecutionResponse(execution=self.store.executions[request.execution_id])

    def ListExecutionEvents(self, request: Any, context: Any) -> execution_pb2.ListExecutionEventsResponse:
        check_uuid(request.execution_id, "execution_id")
        execution = self.store.executions.get(request.execution_id)
        if execution is None:
            raise NotFound(f"execution {request.execution_id} not found")
        return execution_pb2.ListExecutionEventsResponse(
            events=[
                execution_pb2.ExecutionEvent(type="QUEUED", at=execution.created_at),
                execution_pb2.ExecutionEvent(type="RUNNING", at=now(), attempt=1, executor_id="ex-1"),
            ]
        )

    def WatchExecutions(self, request: Any, context: Any) -> Iterator[execution_pb2.ExecutionChange]:
        changes: queue.SimpleQueue[execution_pb2.ExecutionChange | None] = queue.SimpleQueue()
        with self.store.lock:
            self.store.watchers.append(changes)
        context.add_callback(lambda: changes.put(None))
        try:
            yield execution_pb2.ExecutionChange()
            while (change := changes.get()) is not None:
                yield change
        finally:
            with self.store.lock:
                self.store.watchers.remove(changes)

    def GetSystem(self, request: Any, context: Any) -> execution_pb2.GetSystemResponse:
        self.store.count()
        return SYSTEM

    def ListExecutions(self, request: Any, context: Any) -> execution_pb2.ListExecutionsResponse:
        self.store.count()
        session = self.store.session(request.session_id)
        limit = request.limit if request.HasField("limit") else 10
        if not 1 <= limit <= 100:
            raise InvalidArgument("limit must be within 1..100")
        runs = [e for e in self.store.executions.values() if e.session_id == session.id]
        return execution_pb2.ListExecutionsResponse(executions=list(reversed(runs))[:limit])


@dataclass
class Backends:
    store: Store
    session_server: RunningServer
    execution_server: RunningServer

    def config(self) -> GatewayConfig:
        return GatewayConfig(
            listen_addr="127.0.0.1:0",
            session_service_addr=f"127.0.0.1:{self.session_server.port}",
            execution_service_addr=f"127.0.0.1:{self.execution_server.port}",
        )

    def stop(self) -> None:
        self.session_server.stop(0)
        self.execution_server.stop(0)


def start_backends() -> Backends:
    store = Store()
    session_server = start_server(
        "127.0.0.1:0",
        lambda server: session_pb2_grpc.add_SessionServiceServicer_to_server(StandInSessions(store), server),
        ["lce.session.v1.SessionService"],
    )
    execution_server = start_server(
        "127.0.0.1:0",
        lambda server: execution_pb2_grpc.add_ExecutionServiceServicer_to_server(StandInExecutions(store), server),
        ["lce.execution.v1.ExecutionService"],
    )
    return Backends(store, session_server, execution_server)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", autouse=True)
async def one_event_loop_for_the_module() -> AsyncIterator[None]:
    """Keeps anyio's event loop open across the module, as a gateway process keeps its loop: grpc.aio
    finishes a cancelled stream (the change feed's, at every app's shutdown) a moment after
    the call returns, and on a loop closed meanwhile that completion fails the next test."""
    yield


@pytest.fixture(scope="module")
def backends() -> Iterator[Backends]:
    running = start_backends()
    yield running
    running.stop()


@asynccontextmanager
async def serving(config: GatewayConfig) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(config)
    # Far longer than any test: an answer dropped within one was dropped by the feed, not by age.
    app.state.live_executions.ttl_s = 600
    # ASGITransport does not send lifespan events; entering the app's lifespan opens the gRPC channels.
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client,
    ):
        yield app, client


@pytest.fixture
async def gateway(backends: Backends) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serving(backends.config()) as opened:
        yield opened


@pytest.fixture
def client(gateway: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return gateway[1]


def conforms(body: dict[str, Any], model: type[BaseModel]) -> None:
    """The response matches its OpenAPI model: the document describes what is really sent."""
    model.model_validate(body, strict=True)


async def new_session(client: httpx.AsyncClient, **extra: Any) -> str:
    response = await client.post("/code-sessions", json={"language_id": PYTHON.id, **extra})
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


async def new_execution(client: httpx.AsyncClient) -> tuple[str, str]:
    session_id = await new_session(client)
    response = await client.post(f"/code-sessions/{session_id}/run")
    assert response.status_code == 202, response.text
    return session_id, str(response.json()["execution_id"])


def assert_error(response: httpx.Response, status: int, contains: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert contains.lower() in body["error"].lower()
    assert "detail" not in body or status == 429
    return body  # type: ignore[no-any-return]


# --- success shapes ------------------------------------------------------------------------


async def test_health_reports_each_backend(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "services": {"session": "SERVING", "execution": "SERVING"}}


async def test_system(client: httpx.AsyncClient) -> None:
    response = await client.get("/system")
    assert response.status_code == 200
    body = response.json()
    conforms(body, schemas.System)
    assert body == {
        "queues": [
            {"name": "q:python", "language": "python", "lane": "interactive", "depth": 0, "oldest_seconds": 0.0},
            {"name": "q:java:batch", "language": "java", "lane": "batch", "depth": 3, "oldest_seconds": 12.346},
        ],
        "queued": 3,
        "oldest_queued_seconds": 12.346,
        "executors": [
            {
                "id": "e1",
                "pool": "default",
                "languages": {"python": "3.11.2"},
                "sandbox_mode": "bwrap-userns",
                "slots": {"busy": 1, "total": 1},
                "queues": ["q:python"],
                "host": "node-1",
                "pid": 7,
                "version": "0.1.0",
                "started_at": "2026-01-21T10:00:00.000Z",
            }
        ],
        "runs": [{"minutes": 1, "by_state": {"COMPLETED": 3, "QUEUED": 4}}],
        "services": {"gateway": VERSION, "execution_service": "0.1.0", "executors": ["0.1.0"]},
    }


async def test_list_languages(client: httpx.AsyncClient) -> None:
    response = await client.get("/languages")
    assert response.status_code == 200
    body = response.json()
    conforms(body, schemas.LanguageList)
    assert body["total"] == 2
    assert body["languages"][0] == {
        "id": PYTHON.id,
        "name": "python",
        "runtime": "cpython",
        "version": "3.11.2",
        "versions": ["3.11.2", "3.12.1"],
        "available": True,
        "default_time_limit_ms": 5000,
        "default_memory_mb": 256,
    }


async def test_get_language(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/languages/{JAVASCRIPT.id}")
    assert response.status_code == 200
    conforms(response.json(), schemas.Language)
    assert response.json() == {
        "id": JAVASCRIPT.id,
        "name": "javascript",
        "runtime": "node",
        "version": "18.19.0",
        "versions": [],  # no live executor serves it
        "available": False,
        "template_code": "console.log('Hello World');\n",
        "file_name": "main.js",
        "packages": {},
        "default_time_limit_ms": 5000,
        "default_memory_mb": 256,
    }


async def test_create_session_answers_201_active(client: httpx.AsyncClient) -> None:
    response = await client.post("/code-sessions", json={"language_id": PYTHON.id})
    assert response.status_code == 201
    body = response.json()
    conforms(body, schemas.SessionState)
    assert body["status"] == "ACTIVE"
    uuid.UUID(body["session_id"])


async def test_get_session_full_shape(client: httpx.AsyncClient) -> None:
    session_id = await new_session(client, source_code="print(1)")
    response = await client.get(f"/code-sessions/{session_id}")
    assert response.status_code == 200
    body = response.json()
    conforms(body, schemas.Session)
    assert set(body) == {
        "session_id", "status", "language_id", "language_name", "source_code", "files",
        "runtime", "version", "created_at", "updated_at",
    }  # fmt: skip
    assert body["language_name"] == "python" and body["source_code"] == "print(1)"
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == len("2026-01-21T10:00:00.000Z")


async def test_session_starts_with_template_when_no_source(client: httpx.AsyncClient) -> None:
    session_id = await new_session(client)
    response = await client.get(f"/code-sessions/{session_id}")
    assert response.json()["source_code"] == PYTHON.template_code


async def test_autosave(client: httpx.AsyncClient) -> None:
    session_id = await new_session(client)
    response = await client.patch(f"/code-sessions/{session_id}", json={"source_code": "print('saved')"})
    assert response.status_code == 200
    conforms(response.json(), schemas.SessionState)
    assert response.json()["status"] == "ACTIVE"
    saved = await client.get(f"/code-sessions/{session_id}")
    assert saved.json()["source_code"] == "print('saved')"


async def test_close_session(client: httpx.AsyncClient) -> None:
    session_id = await new_session(client)
    response = await client.patch(f"/code-sessions/{session_id}/close")
    assert response.status_code == 200
    assert response.json()["session_id"] == session_id
    assert response.json()["status"] == "INACTIVE"


async def test_run_answers_202_queued(client: httpx.AsyncClient, backends: Backends) -> None:
    session_id = await new_session(client)
    response = await client.post(
        f"/code-sessions/{session_id}/run", json={"time_limit_ms": 2000, "memory_limit_mb": 128}
    )
    assert response.status_code == 202
    assert response.json() == {"execution_id": response.json()["execution_id"], "status": "QUEUED", "warnings": []}
    conforms(response.json(), schemas.ExecutionCreated)
    execution = backends.store.executions[response.json()["execution_id"]]
    assert (execution.time_limit_ms, execution.memory_limit_mb) == (2000, 128)


async def test_run_passes_the_idempotency_key_on(client: httpx.AsyncClient, backends: Backends) -> None:
    session_id = await new_session(client)
    await client.post(f"/code-sessions/{session_id}/run", headers={"Idempotency-Key": "req-7"})
    await client.post(f"/code-sessions/{session_id}/run")
    assert backends.store.idempotency_keys[-2:] == ["req-7", None]
    refused = await client.post(f"/code-sessions/{session_id}/run", headers={"Idempotency-Key": ""})
    assert_error(refused, 400, "Idempotency-Key")


async def test_execution_events_shape(client: httpx.AsyncClient) -> None:
    _, execution_id = await new_execution(client)
    response = await client.get(f"/executions/{execution_id}/events")
    assert response.status_code == 200
    body = response.json()
    conforms(body, schemas.ExecutionEvents)
    assert body["execution_id"] == execution_id
    assert [event["type"] for event in body["events"]] == ["QUEUED", "RUNNING"]
    assert body["events"][1]["attempt"] == 1 and body["events"][1]["at"].endswith("Z")
    assert_error(await client.get(f"/executions/{uuid.uuid4()}/events"), 404)
    assert_error(await client.get("/executions/nope/events"), 400)


async def test_run_body_is_optional(client: httpx.AsyncClient) -> None:
    session_id = await new_session(client)
    for kwargs in ({}, {"content": b""}, {"json": {}}):
        response = await client.post(f"/code-sessions/{session_id}/run", **kwargs)
        assert response.status_code == 202, (kwargs, response.text)


async def test_queued_execution_shape(client: httpx.AsyncClient) -> None:
    session_id, execution_id = await new_execution(client)
    response = await client.get(f"/executions/{execution_id}")
    assert response.status_code == 200
    body = response.json()
    conforms(body, schemas.Execution)
    assert body["execution_id"] == execution_id and body["status"] == "QUEUED"
    assert body["session_id"] == session_id and body["started_at"] is None
    assert "stdout" not in body


async def test_terminal_execution_shape(client: httpx.AsyncClient, backends: Backends) -> None:
    _, execution_id = await new_execution(client)
    stage = execution_pb2.StageMetrics(name="run", cpu_time_ms=10, wall_time_ms=12, memory_kb=9000, exit_code=1)
    backends.store.finish(
        execution_id,
        execution_pb2.RunResult(
            status=execution_pb2.EXECUTION_STATUS_FAILED,
            reason=execution_pb2.REASON_RUNTIME_ERROR,
            stdout="out\n",
            stderr="Traceback\n",
            exit_code=1,
            execution_time_ms=12,
            memory_kb=9000,
            stages=[stage],
            sandbox="bwrap",
        ),
    )
    response = await client.get(f"/executions/{execution_id}")
    body = response.json()
    conforms(body, schemas.Execution)
    assert {k: body[k] for k in ("execution_id", "status", "stdout", "stderr", "execution_time_ms")} == {
        "execution_id": execution_id,
        "status": "FAILED",
        "stdout": "out\n",
        "stderr": "Traceback\n",
        "execution_time_ms": 12,
    }
    assert body["exit_code"] == 1 and body["reason"] == "runtime_error" and body["sandbox"] == "bwrap"
    assert body["stages"] == [
        {"name": "run", "cpu_time_ms": 10, "wall_time_ms": 12, "memory_kb": 9000, "exit_code": 1, "signal": None}
    ]
    assert body["finished_at"].endswith("Z")


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within 5 s"
        await asyncio.sleep(0.01)


async def test_a_terminal_execution_is_answered_again_without_a_backend_call(
    gateway: tuple[FastAPI, httpx.AsyncClient], backends: Backends
) -> None:
    app, client = gateway
    _, execution_id = await new_execution(client)
    queued = await client.get(f"/executions/{execution_id}")
    backends.store.complete(execution_id)
    await until(lambda: app.state.live_executions.get(execution_id, "") is None, "told of the change")
    first = await client.get(f"/executions/{execution_id}")
    assert (queued.json()["status"], first.json()["status"]) == ("QUEUED", "COMPLETED")
    calls = backends.store.calls
    again = await client.get(f"/executions/{execution_id}")
    assert backends.store.calls == calls
    assert (again.status_code, again.headers["content-type"], again.content) == (
        200,
        "application/json",
        first.content,
    )


@pytest.fixture
async def live_gateway(gateway: tuple[FastAPI, httpx.AsyncClient]) -> tuple[FastAPI, httpx.AsyncClient]:
    """The gateway once its change feed is live."""
    await until(lambda: gateway[0].state.live_executions.live, "live")
    return gateway


async def test_an_unfinished_execution_is_answered_from_memory_until_the_feed_announces_a_change(
    live_gateway: tuple[FastAPI, httpx.AsyncClient], backends: Backends
) -> None:
    app, client = live_gateway
    _, execution_id = await new_execution(client)
    queued = await client.get(f"/executions/{execution_id}")
    calls = backends.store.calls
    polls = [await client.get(f"/executions/{execution_id.upper()}") for _ in range(3)]
    assert backends.store.calls == calls
    assert {(poll.status_code, poll.content) for poll in polls} == {(200, queued.content)}
    backends.store.start(execution_id)
    # Dropped on the change, then (it is polled) replaced by the state read again at once.
    await until(lambda: app.state.live_executions.get(execution_id, "") != queued.content, "told of the change")
    assert (await client.get(f"/executions/{execution_id}")).json()["status"] == "RUNNING"


@pytest.mark.parametrize(("carried", "reads"), [(True, 0), (False, 1)], ids=["state carried", "large result"])
async def test_a_polled_execution_that_finished_is_in_memory_before_the_next_poll(
    live_gateway: tuple[FastAPI, httpx.AsyncClient], backends: Backends, carried: bool, reads: int
) -> None:
    """Kept from its change when that carries the final state, else read again at once."""
    app, client = live_gateway
    _, execution_id = await new_execution(client)
    await client.get(f"/executions/{execution_id}")
    calls = backends.store.calls
    backends.store.complete(execution_id, carried=carried)
    await until(lambda: app.state.terminal_executions.get(execution_id, "") is not None, "in memory")
    body = (await client.get(f"/executions/{execution_id}")).json()
    assert (body["status"], body["stdout"]) == ("COMPLETED", "42\n")
    assert backends.store.calls == calls + reads


async def test_a_finished_execution_nobody_polls_here_is_not_kept(
    live_gateway: tuple[FastAPI, httpx.AsyncClient], backends: Backends
) -> None:
    app, client = live_gateway
    _, unpolled = await new_execution(client)
    _, polled = await new_execution(client)
    await client.get(f"/executions/{polled}")
    backends.store.complete(unpolled)
    backends.store.complete(polled)
    await until(lambda: app.state.terminal_executions.get(polled, "") is not None, "the later change applied")
    assert app.state.terminal_executions.get(unpolled, "") is None


async def test_concurrent_polls_of_one_execution_share_one_backend_read(
    live_gateway: tuple[FastAPI, httpx.AsyncClient], backends: Backends
) -> None:
    _, client = live_gateway
    calls = backends.store.calls
    answers = await asyncio.gather(*(client.get(f"/executions/{SLOW_EXECUTION_ID}") for _ in range(3)))
    assert [answer.status_code for answer in answers] == [404, 404, 404]
    assert backends.store.calls == calls + 1


async def test_a_feed_that_ends_drops_what_it_vouched_for_and_is_followed_again(
    live_gateway: tuple[FastAPI, httpx.AsyncClient], backends: Backends
) -> None:
    app, client = live_gateway
    _, execution_id = await new_execution(client)
    await client.get(f"/executions/{execution_id}")
    assert app.state.live_executions.get(execution_id, "") is not None
    backends.store.end_streams()
    await until(lambda: app.state.live_executions.get(execution_id, "") is None, "dropped")
    await until(lambda: app.state.live_executions.live, "live again")


async def test_without_a_live_feed_concurrent_polls_do_not_share_a_read(
    live_gateway: tuple[FastAPI, httpx.AsyncClient], backends: Backends
) -> None:
    app, client = live_gateway
    app.state.live_executions.feed_down()  # a read begun now could miss changes: nobody may join it
    calls = backends.store.calls
    await asyncio.gather(*(client.get(f"/executions/{SLOW_EXECUTION_ID}") for _ in range(2)))
    assert backends.store.calls == calls + 2


async def test_without_a_live_feed_every_poll_of_an_unfinished_execution_reaches_the_backend(
    live_gateway: tuple[FastAPI, httpx.AsyncClient], backends: Backends
) -> None:
    app, client = live_gateway
    _, execution_id = await new_execution(client)
    app.state.live_executions.feed_down()  # as when the stream breaks
    calls = backends.store.calls
    for _ in range(3):
        assert (await client.get(f"/executions/{execution_id}")).json()["status"] == "QUEUED"
    assert backends.store.calls == calls + 3


async def test_list_executions_newest_first_with_nulls_until_terminal(
    client: httpx.AsyncClient, backends: Backends
) -> None:
    session_id = await new_session(client)
    first = (await client.post(f"/code-sessions/{session_id}/run")).json()["execution_id"]
    second = (await client.post(f"/code-sessions/{session_id}/run")).json()["execution_id"]
    backends.store.finish(
        first,
        execution_pb2.RunResult(status=execution_pb2.EXECUTION_STATUS_COMPLETED, exit_code=0, execution_time_ms=150),
    )
    response = await client.get(f"/code-sessions/{session_id}/executions")
    assert response.status_code == 200
    body = response.json()
    conforms(body, schemas.ExecutionList)
    assert body["session_id"] == session_id
    assert [(e["execution_id"], e["status"]) for e in body["executions"]] == [
        (second, "QUEUED"),
        (first, "COMPLETED"),
    ]
    assert body["executions"][0]["execution_time_ms"] is None and body["executions"][0]["exit_code"] is None
    assert body["executions"][1]["execution_time_ms"] == 150 and body["executions"][1]["exit_code"] == 0
    limited = await client.get(f"/code-sessions/{session_id}/executions", params={"limit": "1"})
    assert [e["execution_id"] for e in limited.json()["executions"]] == [second]


async def test_openapi_document_describes_routes_and_errors(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    run = document["paths"]["/code-sessions/{session_id}/run"]["post"]
    assert set(run["responses"]) == {"200", "202", "400", "401", "404", "409", "413", "429", "503"}
    assert "requestBody" in run
    assert {"wait", "Idempotency-Key"} <= {parameter["name"] for parameter in run["parameters"]}
    run_body = run["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"stdin", "args", "encoding", "compile_time_limit_ms", "compile_memory_limit_mb"} <= set(run_body)
    stream = document["paths"]["/executions/{execution_id}/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert "422" not in json.dumps(document["paths"])
    assert (await client.get("/docs")).status_code == 200


# --- 400 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"language_id": "\xff"}', "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"a string"', "JSON object"),
        (b"", "not valid JSON"),
        (b"{}", "language_id is required"),
        (b'{"language_id": 7}', "language_id must be a string"),
        (b'{"language_id": true}', "language_id must be a string"),
        (b'{"language_id": "x", "source_code": 5}', "source_code must be a string"),
    ],
)
async def test_create_session_rejects_bad_bodies(
    client: httpx.AsyncClient, backends: Backends, content: bytes, message: str
) -> None:
    calls = backends.store.calls
    response = await client.post("/code-sessions", content=content, headers={"content-type": "application/json"})
    assert_error(response, 400, message)
    assert backends.store.calls == calls


@pytest.mark.parametrize(
    "body",
    [
        {"time_limit_ms": "5000"},
        {"time_limit_ms": 5000.0},
        {"time_limit_ms": 5000.5},
        {"time_limit_ms": True},
        {"memory_limit_mb": False},
        {"memory_limit_mb": "128"},
        {"memory_limit_mb": [128]},
        {"time_limit_ms": 2**31},
        {"memory_limit_mb": -(2**31) - 1},
        {"time_limit_ms": 10**400},
    ],
)
async def test_run_rejects_wrong_types_without_calling_backend(
    client: httpx.AsyncClient, backends: Backends, body: dict[str, Any]
) -> None:
    session_id = await new_session(client)
    calls = backends.store.calls
    assert_error(await client.post(f"/code-sessions/{session_id}/run", json=body), 400)
    assert backends.store.calls == calls


@pytest.mark.parametrize("body", [{"time_limit_ms": 99}, {"time_limit_ms": 60001}, {"memory_limit_mb": 2049}])
async def test_run_out_of_range_from_service_is_400(client: httpx.AsyncClient, body: dict[str, int]) -> None:
    session_id = await new_session(client)
    assert_error(await client.post(f"/code-sessions/{session_id}/run", json=body), 400, "out of range")


async def test_autosave_rejects_missing_or_wrong_source(client: httpx.AsyncClient) -> None:
    session_id = await new_session(client)
    assert_error(await client.patch(f"/code-sessions/{session_id}", json={}), 400, "source_code is required")
    assert_error(await client.patch(f"/code-sessions/{session_id}", json={"source_code": 1}), 400, "string")
    response = await client.patch(
        f"/code-sessions/{session_id}", content=b"nope", headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "JSON")


@pytest.mark.parametrize("limit", ["abc", "1.5", "10.0", "1_0", "", " 5", "true", "9" * 5000])
async def test_list_executions_rejects_non_integer_limit(client: httpx.AsyncClient, limit: str) -> None:
    session_id = await new_session(client)
    response = await client.get(f"/code-sessions/{session_id}/executions", params={"limit": limit})
    assert_error(response, 400, "limit")


@pytest.mark.parametrize("limit", ["0", "101", "-1"])
async def test_list_executions_limit_out_of_range_from_service_is_400(client: httpx.AsyncClient, limit: str) -> None:
    session_id = await new_session(client)
    response = await client.get(f"/code-sessions/{session_id}/executions", params={"limit": limit})
    assert_error(response, 400, "1..100")


@pytest.mark.parametrize(
    "path",
    ["/languages/not-a-uuid", "/code-sessions/not-a-uuid", "/executions/123", "/code-sessions/nope/executions"],
)
async def test_malformed_ids_are_400(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.get(path), 400, "not a UUID")


async def test_malformed_language_id_in_body_is_400(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/code-sessions", json={"language_id": "python"}), 400, "not a UUID")


# --- 404 / 405 -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/code-sessions/x/y/z", "/executions/x/y/z"])
async def test_unknown_route_is_json_404(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.get(path), 404)


async def test_unknown_ids_are_404(client: httpx.AsyncClient) -> None:
    unknown = str(uuid.uuid4())
    for response in (
        await client.get(f"/languages/{unknown}"),
        await client.get(f"/code-sessions/{unknown}"),
        await client.patch(f"/code-sessions/{unknown}", json={"source_code": "x"}),
        await client.patch(f"/code-sessions/{unknown}/close"),
        await client.post(f"/code-sessions/{unknown}/run"),
        await client.get(f"/code-sessions/{unknown}/executions"),
        await client.get(f"/executions/{unknown}"),
        await client.post("/code-sessions", json={"language_id": unknown}),
    ):
        assert_error(response, 404, "not found")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/code-sessions/abc", "GET, PATCH"),
        ("PUT", "/code-sessions/abc", "GET, PATCH"),
        ("GET", "/code-sessions", "POST"),
        ("POST", "/executions/abc", "GET"),
        ("GET", "/code-sessions/abc/run", "POST"),
        ("POST", "/code-sessions/abc/close", "PATCH"),
    ],
)
async def test_wrong_method_is_json_405_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert_error(response, 405, "not allowed")
    assert response.headers["allow"] == allow


# --- 409 / 413 / 429 -----------------------------------------------------------------------


async def test_closed_session_refuses_autosave_and_run_with_409(client: httpx.AsyncClient) -> None:
    session_id = await new_session(client)
    await client.patch(f"/code-sessions/{session_id}/close")
    assert_error(await client.patch(f"/code-sessions/{session_id}", json={"source_code": "x"}), 409, "closed")
    assert_error(await client.post(f"/code-sessions/{session_id}/run"), 409, "closed")


async def test_source_over_1_mib_is_413_from_service(client: httpx.AsyncClient, backends: Backends) -> None:
    session_id = await new_session(client)
    calls = backends.store.calls
    too_big = "é" * (MAX_SOURCE_BYTES // 2 + 1)  # under 1 Mi characters, over 1 MiB of UTF-8
    response = await client.patch(f"/code-sessions/{session_id}", json={"source_code": too_big})
    assert_error(response, 413, "1 MiB")
    assert backends.store.calls == calls + 1
    response = await client.post("/code-sessions", json={"language_id": PYTHON.id, "source_code": too_big})
    assert_error(response, 413)


async def test_body_over_cap_is_413_before_parsing(client: httpx.AsyncClient, backends: Backends) -> None:
    calls = backends.store.calls
    huge = b'{"source_code": "' + b"a" * MAX_BODY_BYTES + b'"}'
    assert_error(await client.patch(f"/code-sessions/{uuid.uuid4()}", content=huge), 413, "request body")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the cap must hold while reading
        yield b'{"source_code": "'
        for _ in range(MAX_BODY_BYTES // (1024 * 1024) + 1):
            yield b"a" * (1024 * 1024)
        yield b'"}'

    response = await client.patch(
        f"/code-sessions/{uuid.uuid4()}", content=chunked(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "request body")
    assert backends.store.calls == calls


async def test_rate_limit_is_429_with_retry_after(client: httpx.AsyncClient) -> None:
    session_id = await new_session(client)
    for _ in range(RUNS_ALLOWED):
        assert (await client.post(f"/code-sessions/{session_id}/run")).status_code == 202
    response = await client.post(f"/code-sessions/{session_id}/run")
    body = assert_error(response, 429)
    assert body["error"] == "Rate limit exceeded" and body["retryAfter"] == RETRY_AFTER_S
    conforms(body, schemas.RateLimited)
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)


# --- 5xx -----------------------------------------------------------------------------------


async def test_deadline_exceeded_is_503(gateway: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = gateway
    app.state.backends.deadline_s = 0.2
    started = time.monotonic()
    response = await client.get(f"/executions/{SLOW_EXECUTION_ID}")
    assert_error(response, 503, "unavailable")
    assert response.headers["retry-after"] == "1"
    assert time.monotonic() - started < 0.9


async def test_service_bug_is_opaque_500(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.get(f"/executions/{BROKEN_EXECUTION_ID}"), 500)
    assert body == {"error": "internal error"}


async def test_stopped_backends_answer_503_not_hang() -> None:
    running = start_backends()
    async with serving(running.config()) as (_, client):
        assert (await client.get("/languages")).status_code == 200
        running.execution_server.stop(0)
        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        assert health.json()["services"] == {"session": "SERVING", "execution": "UNAVAILABLE"}
        started = time.monotonic()
        for path in (f"/executions/{uuid.uuid4()}", f"/code-sessions/{uuid.uuid4()}/executions"):
            response = await client.get(path)
            assert_error(response, 503)
            assert response.headers["retry-after"] == "1"
        assert_error(await client.post(f"/code-sessions/{uuid.uuid4()}/run"), 503)
        running.session_server.stop(0)
        assert_error(await client.get("/languages"), 503)
        assert time.monotonic() - started < 15


async def test_framework_validation_and_unexpected_errors_are_json(backends: Backends) -> None:
    """Guards for routes added later: FastAPI's 422 becomes 400, an unhandled exception an opaque 500."""
    app = create_app(backends.config())

    @app.get("/typed/{number}")
    async def typed(number: int) -> dict[str, int]:
        return {"number": number}

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("a bug in the gateway")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert_error(await c.get("/typed/abc"), 400, "number")
        assert (await c.get("/typed/5")).json() == {"number": 5}
        assert assert_error(await c.get("/crash"), 500) == {"error": "internal error"}
