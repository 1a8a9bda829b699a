"""One way to build, serve and stop a gRPC server: health service, error translation, bounded
capacity, graceful stop.

The gRPC services call `start_server` and then `serve_until_signalled`; the executor uses
`start_server` for its health endpoint only. Contract tests call `start_server` with port 0
and talk to the result over a real channel.

Capacity: each service's calls run on threads of their own (THREADS_PER_SERVICE), so a flood of
one service's calls (the gateways') never delays another's (the executors' reports); health
checks have threads of their own too, and are answered while every other thread is busy. A call
waits for a thread in its service's queue; one whose caller left meanwhile (its deadline passed)
is dropped unrun. No more than MAX_CALLS_IN_FLIGHT calls are in the server at once, running or
waiting: gRPC refuses the next ones at once with RESOURCE_EXHAUSTED. Threads do not isolate work
that holds the GIL (a backtracking regex, a huge parse): such work stalls every thread of the
process, health included, so work on a request path must be bounded by itself.

Security (common/service_auth.py): with LCE_GRPC_TLS_* the port serves TLS and requires client
certificates; where callers are identified, each call is admitted by who makes it, and its servicer
can ask `service_auth.caller()`. Plaintext is served on loopback only, unless LCE_GRPC_ALLOW_PLAINTEXT.

Every server also serves gRPC server reflection (grpc.reflection.v1alpha), so grpcurl lists and
describes its services without the protos; service_auth says who may ask.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import redis.exceptions
import sqlalchemy.exc
from google.protobuf import descriptor_pool
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from common import logs, metrics, service_auth
from common.config import ConfigError, GrpcSecurity
from common.errors import LceError
from common.grpc_client import MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES

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

HEALTH_SERVICE = service_auth.HEALTH_SERVICE
# A service's unary calls running at once.
THREADS_PER_SERVICE = 32
# A service's streams open at once, each holding its thread for its life (ExecutionService: the change
# feed's watchers, at most change_feed.MAX_WATCHERS, and per-run watches, at most servicer.MAX_RUN_WATCHERS).
STREAM_THREADS = 48
# Health checks, and anything not run on a service's own threads.
HEALTH_THREADS = 4
# Calls in the server at once, running or waiting for a thread: a burst of a few hundred runs waits
# its turn, a flood beyond is refused. (grpcio reads a waiting call's request only when its turn
# comes, and drops it unrun if its caller left by then.)
MAX_CALLS_IN_FLIGHT = 512


def service_of(method: str) -> str:
    """The service in a method's full name: "/pkg.Service/Method" -> "pkg.Service"."""
    return method.lstrip("/").rpartition("/")[0]


class ServicePools:
    """One thread pool per service, made on the service's first call.

    gRPC runs a method on the pool named by its behaviour's `experimental_thread_pool` attribute
    (the mechanism grpcio's own health service uses for Watch), else on the server's pool.
    """

    def __init__(self, threads_per_service: int) -> None:
        self.threads_per_service = threads_per_service
        self._pools: dict[str, futures.ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def assign(self, behaviour: Callable[..., Any], method: str, *, streaming: bool = False) -> Callable[..., Any]:
        """`behaviour`, set to run on the pool of `method`'s service (the server's own for health checks);
        a stream, which holds its thread for its whole life, on the service's pool for streams."""
        service = service_of(method)
        if service != HEALTH_SERVICE:
            name, threads = (f"{service}/streams", STREAM_THREADS) if streaming else (service, self.threads_per_service)
            behaviour.experimental_thread_pool = self._pool(name, threads)  # type: ignore[attr-defined]
        return behaviour

    def _pool(self, name: str, threads: int) -> futures.ThreadPoolExecutor:
        pool = self._pools.get(name)
        if pool is not None:
            return pool
        with self._lock:
            pool = self._pools.get(name)
            if pool is None:
                pool = futures.ThreadPoolExecutor(threads, thread_name_prefix=name)
                self._pools[name] = pool
            return pool

    def shutdown(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.shutdown(wait=False, cancel_futures=True)


class _ErrorTranslation(grpc.ServerInterceptor):
    """Turns domain and infrastructure errors into precise status codes, logs and counts each call,
    and hands each call to its service's threads.

    Outermost, it wraps each method's handler (with what the inner interceptors made of it) once, on
    the method's first call, though gRPC asks the interceptors on every call: a short call then does
    not pay for building handlers. Only registered methods are kept, so callers naming made-up
    methods cannot grow the table."""

    def __init__(self, pools: ServicePools) -> None:
        self.pools = pools
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        wrapped = self._handlers.get(details.method)
        if wrapped is None:
            handler = continuation(details)
            if handler is None:
                return handler
            wrapped = self._handlers.setdefault(details.method, self._wrap(handler, details.method))
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        parse = handler.request_deserializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self.pools.assign(_translated(handler.unary_unary, method, parse), method),
                response_serializer=handler.response_serializer,
            )
        # A stream maps its own errors (see WatchExecutions); health's Watch is left as it is: it
        # holds no thread (grpcio's non-blocking stream).
        if handler.unary_stream is not None and service_of(method) != HEALTH_SERVICE:
            return grpc.unary_stream_rpc_method_handler(
                self.pools.assign(_with_parsed_request(handler.unary_stream, parse), method, streaming=True),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self.pools.assign(_with_parsed_requests(handler.stream_stream, parse), method, streaming=True),
                response_serializer=handler.response_serializer,
            )
        return handler


Parse = Callable[[bytes], Any] | None


def _parsed(parse: Parse, raw: bytes, context: grpc.ServicerContext) -> Any:
    """The request in `raw`. Bytes that are no such message are the caller's mistake: INVALID_ARGUMENT.
    (gRPC's own parsing answers INTERNAL, and after a few such streams of requests, grpcio 1.85's
    server.stop() never returns.)"""
    try:
        return parse(raw) if parse is not None else raw
    except DecodeError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid message for this method")


def _with_parsed_request(behaviour: Callable[..., Any], parse: Parse) -> Callable[..., Any]:
    def parsing(raw: bytes, context: grpc.ServicerContext) -> Any:
        return behaviour(_parsed(parse, raw, context), context)

    return parsing


def _with_parsed_requests(behaviour: Callable[..., Any], parse: Parse) -> Callable[..., Any]:
    def parsing(raws: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        return behaviour((_parsed(parse, raw, context) for raw in raws), context)

    return parsing


def _translated(inner: Callable[[Any, grpc.ServicerContext], Any], method: str, parse: Parse) -> Callable[..., Any]:
    def translated(raw: bytes, context: grpc.ServicerContext) -> Any:
        request = _parsed(parse, raw, context)
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

    return translated


class _CallerCheck(grpc.ServerInterceptor):
    """Admits each call by who makes it (service_auth.CallerPolicy), and tells its servicer who that is."""

    def __init__(self, policy: service_auth.CallerPolicy) -> None:
        self.policy = policy

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        service = service_of(details.method)
        if handler is None or service == HEALTH_SERVICE:
            return handler
        method, codec = details.method, (handler.request_deserializer, handler.response_serializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._admitted(handler.unary_unary, method), *codec)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._admitted(handler.stream_unary, method), *codec)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(self._admitted_stream(handler.unary_stream, method), *codec)
        return grpc.stream_stream_rpc_method_handler(self._admitted_stream(handler.stream_stream, method), *codec)

    def _admit(self, method: str, context: grpc.ServicerContext) -> str | None:
        try:
            return self.policy.admit(
                service_of(method),
                service_auth.token_of(context.invocation_metadata()),
                service_auth.common_name_of(context.auth_context()),
            )
        except service_auth.Refused as refused:
            log.warning("call refused", extra={"method": method, "peer": context.peer(), "why": refused.details})
            context.abort(refused.code, refused.details)
            raise  # abort raises already; a refusal must never fall through to the handler

    def _admitted(self, behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
        def admitted(request: Any, context: grpc.ServicerContext) -> Any:
            with service_auth.serving(self._admit(method, context)):
                return behaviour(request, context)

        return admitted

    def _admitted_stream(self, behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
        def admitted(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            who = self._admit(method, context)  # refused before the first response
            with service_auth.serving(who):
                responses = iter(behaviour(request, context))
            return _each_served(who, responses)

        return admitted


def _each_served(who: str | None, responses: Iterator[Any]) -> Iterator[Any]:
    """The responses, each made knowing `caller()`: the context is set around each step only, as
    gRPC may drop a stream unfinished."""
    while True:
        with service_auth.serving(who):
            try:
                response = next(responses)
            except StopIteration:
                return
        yield response


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    pools: ServicePools

    def stop(self, grace_s: float) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()
        self.pools.shutdown()


def start_server(
    listen_addr: str,
    register: Callable[[grpc.Server], None],
    service_names: Iterable[str],
    *,
    threads_per_service: int = THREADS_PER_SERVICE,
    max_calls_in_flight: int = MAX_CALLS_IN_FLIGHT,
    security: GrpcSecurity | None = None,
) -> RunningServer:
    """Starts a server with our servicers (added by `register`) and a health service marking them SERVING.

    `security`: TLS and the callers admitted, as the service's settings say; none: plaintext, every caller."""
    if security is None:
        security = GrpcSecurity()
    if not (security.tls or security.allow_plaintext or service_auth.is_loopback(listen_addr)):
        raise ConfigError(
            f"{listen_addr} is reachable beyond this host: set LCE_GRPC_TLS_CERT, LCE_GRPC_TLS_KEY and "
            "LCE_GRPC_TLS_CA, or LCE_GRPC_ALLOW_PLAINTEXT=1 where the network encrypts (a service mesh)"
        )
    policy = service_auth.CallerPolicy.of(security)
    if not (policy.identifies or service_auth.is_loopback(listen_addr)):
        raise ConfigError(
            f"{listen_addr} is reachable beyond this host but identifies no caller: set LCE_INTERNAL_TOKEN and "
            "LCE_EXECUTOR_TOKEN, or LCE_GRPC_TLS_* (client certificates)"
        )
    pools = ServicePools(threads_per_service)
    server = grpc.server(
        futures.ThreadPoolExecutor(HEALTH_THREADS, thread_name_prefix="health"),
        # The caller check is inner: a refused call is counted and logged like any other.
        interceptors=[_ErrorTranslation(pools), *([_CallerCheck(policy)] if policy.identifies else [])],
        options=[
            ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
            ("grpc.max_send_message_length", MAX_RESPONSE_BYTES),
        ],
        maximum_concurrent_rpcs=max_calls_in_flight,
    )
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(reflected_services(service_names), server)
    if security.tls:
        port = server.add_secure_port(listen_addr, service_auth.server_credentials(security))
    else:
        port = server.add_insecure_port(listen_addr)
    if port == 0:
        raise OSError(f"cannot listen on {listen_addr}")
    server.start()
    for name in ("", *service_names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server=server, port=port, health=health_servicer, pools=pools)


def reflected_services(service_names: Iterable[str]) -> tuple[str, ...]:
    """What server reflection lists (grpcurl): of the names health reports, those that are gRPC services
    whose schema this process knows (an executor's health names are none), then health and reflection."""
    pool = descriptor_pool.Default()

    def known(name: str) -> bool:
        try:
            pool.FindServiceByName(name)
        except KeyError:
            return False
        return True

    return (*filter(known, service_names), HEALTH_SERVICE, reflection.SERVICE_NAME)


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
