"""One way to build, serve and stop a gRPC server: health service, error translation, graceful stop.

The gRPC services call `start_server` and then `serve_until_signalled`; the executor uses
`start_server` for its health endpoint only. Contract tests call `start_server` with port 0
and talk to the result over a real channel.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import redis.exceptions
import sqlalchemy.exc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common import logs, metrics
from common.errors import LceError
from common.grpc_client import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

# Failures of the machinery under a call rather than of the request: the caller may retry.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
_PEER_DOWN = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class _ErrorTranslation(grpc.ServerInterceptor):
    """Turns domain and infrastructure errors into precise status codes, logs and counts each call."""

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = details.method

        def translated(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            token = logs.execution_id.set(getattr(request, "execution_id", "") or None)
            answered = False
            try:
                response = inner(request, context)
                answered = True
                return response
            except LceError as err:
                context.set_trailing_metadata(err.trailing_metadata())
                context.abort(err.code, err.message)
            except INFRASTRUCTURE_ERRORS as err:
                log.warning("dependency unavailable", extra={"method": method, "error": repr(err)})
                context.abort(grpc.StatusCode.UNAVAILABLE, "a dependency of the service is unavailable")
            except grpc.RpcError as err:
                if err.code() in _PEER_DOWN:  # type: ignore[attr-defined]
                    context.abort(grpc.StatusCode.UNAVAILABLE, "a peer service is unavailable")
                raise
            finally:
                logs.execution_id.reset(token)
                elapsed_s = time.perf_counter() - started
                # The code an abort set (ours above, or the handler's own); none set: OK, or UNKNOWN
                # for an exception nobody translated, as gRPC answers it.
                code = context.code() or (grpc.StatusCode.OK if answered else grpc.StatusCode.UNKNOWN)
                metrics.GRPC_HANDLED.labels(method, code.name).inc()
                metrics.GRPC_HANDLING_SECONDS.labels(method).observe(elapsed_s)
                # Guarded: the extra dict would be built for every call even with debug logging off.
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("rpc", extra={"method": method, "ms": round(elapsed_s * 1000, 2)})

        return grpc.unary_unary_rpc_method_handler(
            translated,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer

    def stop(self, grace_s: float) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()


def start_server(
    listen_addr: str,
    register: Callable[[grpc.Server], None],
    service_names: Iterable[str],
    *,
    max_workers: int = 32,
) -> RunningServer:
    """Starts a server with our servicers (added by `register`) and a health service marking them SERVING."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=[_ErrorTranslation()],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(listen_addr)
    if port == 0:
        raise OSError(f"cannot listen on {listen_addr}")
    server.start()
    for name in ("", *service_names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server=server, port=port, health=health_servicer)


def wait_for_stop_signal() -> None:
    """Blocks until SIGTERM or SIGINT."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


def serve_until_signalled(
    running: RunningServer, *, name: str, grace_s: float = 10.0, on_drain: Callable[[], None] | None = None
) -> None:
    """Serves until SIGTERM/SIGINT, then reports NOT_SERVING and drains in-flight calls for up to grace_s
    (`on_drain` first: it ends the calls that would otherwise never finish, such as streams)."""
    log.info("serving", extra={"service": name, "port": running.port})
    wait_for_stop_signal()
    log.info("draining", extra={"grace_s": grace_s})
    if on_drain is not None:
        on_drain()
    running.stop(grace_s)
    log.info("stopped")
