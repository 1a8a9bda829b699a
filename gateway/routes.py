"""The documented HTTP API, one handler per endpoint: parse, call one backend, translate.

Handlers return JSONResponse objects (or a Response of a body already rendered) directly, which
skips FastAPI's response validation and jsonable_encoder: the dicts from translate.py are already
JSON-ready. Backend failures propagate as grpc.aio.AioRpcError and are answered by the exception
handlers in app.py.
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Any

import grpc
from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse

from common.release import VERSION
from gateway import schemas, translate
from gateway.auth import require_admin
from gateway.clients import Backends
from gateway.execution_reads import ExecutionReads
from gateway.http_errors import HttpError, rpc_error_response
from gateway.interaction import Interaction
from gateway.metrics import OPEN_STREAMS, counted_stream
from gateway.request_limits import bounded_json_object
from lce.execution.v1 import execution_pb2
from lce.session.v1 import session_pb2

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"

router = APIRouter()


def backends(request: Request) -> Backends:
    return request.app.state.backends  # type: ignore[no-any-return]


async def json_object(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The request body as a bounded JSON object (gateway/request_limits.py bounds its size and time);
    an empty body counts as {} where the body is optional."""
    raw = await request.body()
    if optional and not raw.strip():
        return {}
    return bounded_json_object(raw)


def ok(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


# Routes are matched in declaration order, so the hot polling path comes first.
@router.get(
    "/executions/{execution_id}",
    responses={200: {"model": schemas.Execution}, **schemas.errors(400, 404, 503)},
    openapi_extra={"parameters": [schemas.WAIT_PARAMETER]},
)
async def get_execution(execution_id: str, request: Request) -> Response:
    # Answers kept in memory left before routing (gateway/execution_cache.py); this reads one.
    reads = request.app.state.execution_reads
    wait_s = translate.parse_wait(request.query_params.get("wait"))
    if wait_s is None:
        answer = await reads.read(execution_id)
    else:
        answer, _ = await reads.read_when_finished(execution_id, wait_s)
    return Response(answer, media_type="application/json")


@router.get(
    "/executions/{execution_id}/stream",
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Server-Sent Events: `status` ({status, attempt, reason?}) at every state change, "
            "`stdout` and `stderr` ({attempt, offset, data}: the chunk's byte offset in its stream and its "
            "text in the run's encoding) as the program writes, then `result` (the body of GET "
            "/executions/{id}), after which the stream ends. Every event has an id: reconnect with "
            "Last-Event-ID to get what followed. A comment line every 15 s keeps an idle stream alive.",
        },
        **schemas.errors(400, 404, 503),
    },
)
async def stream_execution(execution_id: str, request: Request) -> Response:
    streams = request.app.state.run_streams
    execution = json.loads(await request.app.state.execution_reads.read(execution_id))  # 400, 404 first
    if streams.full(execution["execution_id"]):
        raise HttpError(503, "too many event streams open on this gateway, retry shortly")
    return StreamingResponse(
        counted_stream("sse", streams.sse(execution, request.headers.get("last-event-id"))),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def interactive_execution(execution_id: str, reads: ExecutionReads) -> dict[str, Any]:
    """The run to talk to: 404 unknown, 409 not interactive (an HttpError, or the backend's AioRpcError)."""
    execution: dict[str, Any] = json.loads(await reads.read(execution_id))
    if not execution.get("interactive"):
        raise HttpError(409, f"execution {execution['execution_id']} was not created with interactive: true")
    return execution


@router.websocket("/executions/{execution_id}/interact")
async def interact(websocket: WebSocket, execution_id: str) -> None:
    streams = websocket.app.state.run_streams
    try:
        execution = await interactive_execution(execution_id, websocket.app.state.execution_reads)
        if streams.full(execution["execution_id"]):
            raise HttpError(503, "too many event streams open on this gateway, retry shortly")
    except HttpError as refused:
        await websocket.send_denial_response(JSONResponse({"error": refused.message}, status_code=refused.status))
        return
    except grpc.aio.AioRpcError as err:
        failed = rpc_error_response(err)
        await websocket.send_denial_response(JSONResponse(failed.body, failed.status, failed.headers))
        return
    with OPEN_STREAMS.labels("websocket").track_inprogress():
        await Interaction(websocket, streams, execution).serve()


@router.get(
    "/executions/{execution_id}/interact",
    responses={
        101: {
            "description": "WebSocket to an interactive run. Send JSON text messages "
            '{"type": "stdin", "data": "..."} (base64 when the run\'s encoding is) and {"type": "close"} (closes '
            "the program's stdin, as closing the socket does). Received: one JSON message per event of the run, "
            '{"type": "status" | "stdout" | "stderr", "id", ...fields as in /stream}, then {"type": "result", '
            '"id", "execution": <GET /executions/{id}>}, after which the server closes the socket; '
            '{"type": "error", "status", "message"} answers a refused message.'
        },
        426: {"model": schemas.Error, "description": "a plain GET: this is a WebSocket"},
        **schemas.errors(400, 404, 409, 503),
    },
)
async def interact_without_upgrade(execution_id: str, request: Request) -> Response:
    await interactive_execution(execution_id, request.app.state.execution_reads)
    raise HttpError(426, "GET /executions/{id}/interact is a WebSocket: connect with Upgrade: websocket")


@router.get(
    "/executions/{execution_id}/events",
    responses={200: {"model": schemas.ExecutionEvents}, **schemas.errors(400, 404, 503)},
)
async def list_execution_events(execution_id: str, request: Request) -> JSONResponse:
    services = backends(request)
    response = await services.executions.ListExecutionEvents(
        execution_pb2.ListExecutionEventsRequest(execution_id=execution_id), timeout=services.deadline_s
    )
    return ok(translate.execution_events(execution_id, response.events))


@router.get("/languages", responses={200: {"model": schemas.LanguageList}, **schemas.errors(503)})
async def list_languages(request: Request) -> JSONResponse:
    services = backends(request)
    response = await services.sessions.ListLanguages(session_pb2.ListLanguagesRequest(), timeout=services.deadline_s)
    return ok(translate.languages_list(response.languages))


@router.get(
    "/languages/{language_id}",
    responses={200: {"model": schemas.Language}, **schemas.errors(400, 404, 503)},
)
async def get_language(language_id: str, request: Request) -> JSONResponse:
    services = backends(request)
    response = await services.sessions.GetLanguage(
        session_pb2.GetLanguageRequest(language_id=language_id), timeout=services.deadline_s
    )
    return ok(translate.language_detail(response.language))


@router.post(
    "/code-sessions",
    status_code=201,
    responses={201: {"model": schemas.SessionState}, **schemas.errors(400, 404, 413, 503)},
    openapi_extra=schemas.request_body(schemas.CreateSessionBody),
)
async def create_session(request: Request) -> JSONResponse:
    message = translate.create_session_request(await json_object(request))
    services = backends(request)
    response = await services.sessions.CreateSession(message, timeout=services.deadline_s)
    return ok(translate.session_state(response.session), 201)


@router.get(
    "/code-sessions/{session_id}",
    responses={200: {"model": schemas.Session}, **schemas.errors(400, 404, 503)},
)
async def get_session(session_id: str, request: Request) -> JSONResponse:
    services = backends(request)
    response = await services.sessions.GetSession(
        session_pb2.GetSessionRequest(session_id=session_id), timeout=services.deadline_s
    )
    return ok(translate.session_detail(response.session))


@router.patch(
    "/code-sessions/{session_id}",
    responses={200: {"model": schemas.SessionState}, **schemas.errors(400, 404, 409, 413, 503)},
    openapi_extra=schemas.request_body(schemas.UpdateSourceBody),
)
async def update_source(session_id: str, request: Request) -> JSONResponse:
    message = translate.update_source_request(session_id, await json_object(request))
    services = backends(request)
    response = await services.sessions.UpdateSource(message, timeout=services.deadline_s)
    return ok(translate.session_state(response.session))


@router.post(
    "/code-sessions/{session_id}/run",
    status_code=202,
    responses={
        200: {"model": schemas.Execution, "description": "with ?wait=N: the run ended within N seconds"},
        202: {"model": schemas.ExecutionCreated},
        **schemas.errors(400, 404, 409, 413, 429, 503),
    },
    openapi_extra={
        **schemas.request_body(schemas.RunBody, required=False),
        "parameters": [
            {
                "name": IDEMPOTENCY_KEY_HEADER,
                "in": "header",
                "required": False,
                "description": "1 to 255 visible ASCII characters; the same key in the same session "
                "answers the same execution for 24 h",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            },
            schemas.WAIT_PARAMETER,
        ],
    },
)
async def run(session_id: str, request: Request) -> Response:
    idempotency_key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    wait_s = translate.parse_wait(request.query_params.get("wait"))
    message = translate.create_execution_request(session_id, await json_object(request, optional=True), idempotency_key)
    services = backends(request)
    try:
        response = await services.executions.CreateExecution(message, timeout=services.deadline_s)
    except grpc.aio.AioRpcError as err:
        failed = rpc_error_response(err, replay_safe=idempotency_key is not None)
        return JSONResponse(failed.body, status_code=failed.status, headers=failed.headers)
    if wait_s is not None:
        # The run exists now: a failed wait still answers 202, never an error that invites a second run.
        with suppress(grpc.aio.AioRpcError):
            answer, finished = await request.app.state.execution_reads.read_when_finished(response.execution.id, wait_s)
            if finished:
                return Response(answer, media_type="application/json")
    return ok(translate.execution_created(response.execution), 202)


@router.get(
    "/code-sessions/{session_id}/executions",
    responses={200: {"model": schemas.ExecutionList}, **schemas.errors(400, 404, 503)},
    openapi_extra={
        "parameters": [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
            }
        ]
    },
)
async def list_executions(session_id: str, request: Request) -> JSONResponse:
    limit = translate.parse_limit(request.query_params.get("limit"))
    services = backends(request)
    response = await services.executions.ListExecutions(
        translate.list_executions_request(session_id, limit), timeout=services.deadline_s
    )
    return ok(translate.executions_list(session_id, response.executions))


@router.patch(
    "/code-sessions/{session_id}/close",
    responses={200: {"model": schemas.SessionState}, **schemas.errors(400, 404, 503)},
)
async def close_session(session_id: str, request: Request) -> JSONResponse:
    services = backends(request)
    response = await services.sessions.CloseSession(
        session_pb2.CloseSessionRequest(session_id=session_id), timeout=services.deadline_s
    )
    return ok(translate.session_state(response.session))


@router.get(
    "/admin/keys",
    responses={200: {"model": schemas.KeyList}, **schemas.errors(401, 403, 503)},
)
async def list_keys(request: Request) -> JSONResponse:
    """Every API key of the deployment, without secrets: for admin keys only."""
    require_admin()
    services = backends(request)
    response = await services.access.ListKeys(execution_pb2.ListKeysRequest(), timeout=services.deadline_s)
    return ok(translate.keys_list(response.keys))


_STATUS_NAMES = ["QUEUED", "RUNNING", "COMPLETED", "FAILED", "TIMEOUT"]


@router.get(
    "/executions",
    responses={200: {"model": schemas.FoundExecutions}, **schemas.errors(400, 401, 403, 503)},
    openapi_extra={
        "parameters": [
            {"name": "status", "in": "query", "required": False, "schema": {"type": "string", "enum": _STATUS_NAMES}},
            {"name": "reason", "in": "query", "required": False, "schema": {"type": "string"}},
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
            },
            {"name": "page_token", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 200}},
        ]
    },
)
async def find_executions(request: Request) -> JSONResponse:
    """Executions of every tenant by status and reason, newest first (admin keys only): e.g. the dead
    letters, `?status=FAILED&reason=internal_error`."""
    require_admin()
    find = translate.find_executions_request(request.query_params)
    services = backends(request)
    response = await services.executions.FindExecutions(find, timeout=services.deadline_s)
    return ok(translate.executions_found(response))


@router.post(
    "/executions/{execution_id}/retry",
    status_code=202,
    responses={202: {"model": schemas.ExecutionRetried}, **schemas.errors(400, 401, 403, 404, 409, 503)},
)
async def retry_execution(execution_id: str, request: Request) -> JSONResponse:
    """A new attempt of a run the machinery failed (FAILED, internal_error), with the same snapshot
    (admin keys only); 409 for any other run: a program's own failure is its result."""
    require_admin()
    services = backends(request)
    response = await services.executions.RetryExecution(
        execution_pb2.RetryExecutionRequest(execution_id=execution_id), timeout=services.deadline_s
    )
    # This process's kept FAILED answer goes now, before the change feed says so (a wait right after the 202).
    request.app.state.terminal_executions.discard(response.execution.id)
    return ok(translate.execution_retried(response.execution), 202)


@router.get(
    "/system",
    responses={200: {"model": schemas.System}, **schemas.errors(401, 403, 503)},
)
async def get_system(request: Request) -> JSONResponse:
    """The run queues, the live executors and their pools, recent runs by state, the services' releases:
    for admin keys only."""
    require_admin()
    services = backends(request)
    response = await services.executions.GetSystem(execution_pb2.GetSystemRequest(), timeout=services.deadline_s)
    return ok(translate.system(response, VERSION))


@router.get(
    "/health",
    responses={200: {"model": schemas.Health}, 503: {"model": schemas.Health, "description": "a backend is down"}},
)
async def health(request: Request) -> JSONResponse:
    statuses = await backends(request).health()
    if all(status == "SERVING" for status in statuses.values()):
        return ok({"status": "ok", "services": statuses})
    body = {"status": "unavailable", "error": "a backend service is unavailable", "services": statuses}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
