"""The FastAPI app factory: routes, the lifespan owning the gRPC channels, JSON error answers, and
the in-memory answers about executions (gateway/execution_cache.py) in front of the routes, the
change feed that keeps those about unfinished executions honest (gateway/change_feed.py), and the
bounds on request bodies in front of the routes (gateway/request_limits.py).

Every error leaves as {"error": "..."}: the gateway's own refusals (HttpError), backend
failures (mapped by gateway/http_errors.py), Starlette's 404/405 and anything unexpected.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from gateway import http_errors, metrics, playground
from gateway.auth import Authentication, KeyCheck
from gateway.change_feed import ChangeFollower
from gateway.clients import Backends
from gateway.cors import Cors
from gateway.execution_cache import LiveExecutions, ServeKnownExecutions, TerminalExecutions
from gateway.execution_reads import ExecutionReads
from gateway.request_limits import BodyLimits, JsonBodies
from gateway.routes import router
from gateway.run_stream import RunStreams
from gateway.settings import GatewayConfig

log = logging.getLogger(__name__)

DESCRIPTION = (
    "LCE runs code in eight languages. Create a session, autosave its source, run it, poll the execution. "
    'Every error is JSON {"error": "..."}.'
)


def create_app(config: GatewayConfig | None = None) -> FastAPI:
    """The gateway app; with no config, from the LCE_* environment (as uvicorn's factory call does)."""
    config = config or GatewayConfig.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backends = Backends.open(config)
        app.state.key_check = KeyCheck(app.state.backends.access, app.state.backends.deadline_s)
        reads = ExecutionReads(app.state.backends, app.state.terminal_executions, app.state.live_executions)
        app.state.execution_reads = reads
        app.state.run_streams = RunStreams(config.redis_url, reads)
        feed = ChangeFollower(
            app.state.backends.executions, app.state.live_executions, reads.changed, reads.feed_restarted
        )
        feed.start()
        try:
            yield
        finally:
            await feed.stop()
            await app.state.run_streams.close()
            await reads.close()
            await app.state.backends.close()
            metrics.process_exiting()

    # routes= rather than include_router: FastAPI wraps an included router in one more routing layer per request.
    # The docs come from the build, not FastAPI's CDN (gateway/playground.py); ReDoc is not offered.
    app = FastAPI(
        title="LCE",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        routes=router.routes + playground.routes(),
        docs_url=None,
        redoc_url=None,
    )
    app.state.terminal_executions = TerminalExecutions()
    app.state.live_executions = LiveExecutions()
    # Middleware added later runs earlier: answers from memory (read no body) before the body's bounds.
    app.add_middleware(JsonBodies)
    app.add_middleware(BodyLimits)
    app.add_middleware(ServeKnownExecutions, terminal=app.state.terminal_executions, live=app.state.live_executions)
    # Outermost: nothing is answered, not even from memory, before the caller's key is checked.
    app.add_middleware(Authentication, required=config.auth, keys=lambda: app.state.key_check)
    # Outside even that: a preflight carries no key, and a refusal (401, 413...) must reach the page.
    if config.cors_origins:
        app.add_middleware(Cors, origins=config.cors_origins)
    # Outermost: every answer is counted and timed (gateway/metrics.py), refusals and preflights too.
    app.add_middleware(metrics.RequestMetrics)
    app.add_exception_handler(http_errors.HttpError, gateway_error)  # type: ignore[arg-type]
    app.add_exception_handler(grpc.aio.AioRpcError, backend_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, starlette_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected_error)
    publish_openapi_without_422(app)
    return app


def publish_openapi_without_422(app: FastAPI) -> None:
    """FastAPI documents a 422 for every route with parameters; this gateway answers 400 instead."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def gateway_error(request: Request, exc: http_errors.HttpError) -> JSONResponse:
    return error(exc.status, exc.message)


async def backend_error(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
    mapped = http_errors.rpc_error_response(exc)
    return JSONResponse(mapped.body, status_code=mapped.status, headers=mapped.headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts on this path.

    Starlette's own Allow header names only the first route whose path matched, but GET and
    PATCH /code-sessions/{id} are two routes.
    """
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is Match.PARTIAL:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


async def starlette_error(request: Request, exc: HTTPException) -> JSONResponse:
    if exc.status_code == 404:
        return error(404, f"no route {request.method} {request.url.path}")
    if exc.status_code == 405:
        allow = ", ".join(allowed_methods(request))
        return error(405, f"method {request.method} not allowed here (allowed: {allow})", {"Allow": allow})
    return error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Handlers parse their own input; this only guards routes declaring typed parameters.
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return error(400, problems or "invalid request")


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc, extra={"method": request.method, "path": request.url.path})
    return error(500, http_errors.INTERNAL_MESSAGE)
