"""What the gateway counts (requests by route template, method and status; their latency; open event
streams and WebSockets), and the /metrics endpoint that adds up its worker processes.

uvicorn runs LCE_GATEWAY_WORKERS processes and each counts what it answers, so prometheus-client
runs in its multiprocess mode: every process writes its samples to files of its own in
PROMETHEUS_MULTIPROC_DIR, a fresh directory (gateway/samples_dir.py) that gateway/__main__.py makes
at each start before any process imports prometheus-client (it chooses the mode on import). The gateway's first process
(uvicorn's supervisor, or the only worker) serves /metrics at LCE_METRICS_LISTEN, as the other
services do: a port of its own, never the public API's, so scrapers need no API key and tenants
see nothing of each other's traffic. Counters of a worker that died stay counted; the open-streams
gauge forgets a dead worker's streams (its live files are removed, as the library's docs say).
Without the directory (the app built in-process, in tests) the samples are this process's own.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.metrics_core import Metric
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common import metrics as common_metrics
from gateway import samples_dir

# From an answer from memory (well under a millisecond) to a ?wait=30 poll.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Any other method a client sends is "other": labels must come from a bounded set.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A path no route matches: one label, whatever the path (an id in a label would make a series per id).
UNMATCHED = "unmatched"
# A client that left before it was answered (nginx's convention).
CLIENT_LEFT = 499

REQUESTS = Counter(
    "lce_gateway_requests",
    "HTTP requests answered, by route template, method and status (a WebSocket handshake: 101 when accepted)",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "lce_gateway_request_seconds",
    "Time from a request's arrival to its response head (an event stream: until it starts), by route and method",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
OPEN_STREAMS = Gauge(
    "lce_gateway_open_streams",
    "Event streams (sse) and WebSockets (websocket) open now, over every gateway process",
    ["kind"],
    multiprocess_mode="livesum",
)


class RequestMetrics:
    """ASGI middleware, outermost: counts every answer, those given before routing (401, answers from
    memory, preflights) included, by the template of the route it matched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope.get("method", "GET")  # a WebSocket handshake is a GET
        method = method if method in _METHODS else "other"
        answered = False

        def count(status: int) -> None:
            nonlocal answered
            answered = True
            route = route_template(scope)  # once answered: the router has said which route took it
            LATENCY.labels(route, method).observe(time.perf_counter() - started)
            REQUESTS.labels(route, method, str(status)).inc()

        async def counting_send(message: Message) -> None:
            if not answered and (status := _status_of(message)) is not None:
                count(status)  # at the head: a stream is counted when it starts, not when it ends
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            if not answered:
                count(500)  # the app's failure, answered 500 by Starlette outside us
            raise
        finally:
            if not answered:
                count(CLIENT_LEFT)


def _status_of(message: Message) -> int | None:
    """The status a message answers the request with, if it is the one that does."""
    kind = message["type"]
    if kind in ("http.response.start", "websocket.http.response.start"):
        return int(message["status"])
    if kind == "websocket.accept":
        return 101
    if kind == "websocket.close":  # closed before it was accepted: the server's 403
        return 403
    return None


def route_template(scope: Scope) -> str:
    """The path template of the route that takes the request ("/executions/{execution_id}"), or of the
    first one whose path matched when none takes its method (answered 405); UNMATCHED otherwise.
    Starlette's router names the route it chose in the scope; a request answered before routing
    (from memory, a refusal) is matched here as the router would."""
    routed = scope.get("route")
    if routed is not None:
        return str(routed.path)
    partial = None
    for route in scope["app"].router.routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(route.path)
        if match is Match.PARTIAL and partial is None:
            partial = str(route.path)
    return partial or UNMATCHED


async def counted_stream(kind: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`chunks`, with the stream counted open from its first chunk until it ends or is dropped."""
    with OPEN_STREAMS.labels(kind).track_inprogress():
        async for chunk in chunks:
            yield chunk


# --- /metrics ---------------------------------------------------------------------------------


_LIVE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")


def forget_dead_processes(directory: Path) -> None:
    """Removes the live-gauge files of processes that are gone (a worker killed, then replaced by
    uvicorn): their open streams closed with them."""
    for file in directory.glob("gauge_live*.db"):
        matched = _LIVE_FILE.fullmatch(file.name)
        if matched and not samples_dir.alive(int(matched.group(1))):
            multiprocess.mark_process_dead(int(matched.group(1)), str(directory))


class _EveryProcess:
    """The samples of every process that wrote to `directory`, the dead ones' gauges forgotten."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files = multiprocess.MultiProcessCollector(None, str(directory))

    def collect(self) -> Iterable[Metric]:
        forget_dead_processes(self.directory)
        return self._files.collect()  # type: ignore[no-any-return]


def serve(listen_addr: str) -> int | None:
    """Serves /metrics of every gateway process at host:port on a thread of this one; the bound port,
    or None when off (empty). Needs PROMETHEUS_MULTIPROC_DIR (gateway/__main__.py sets it)."""
    directory = samples_dir.current()
    if not listen_addr:
        return None
    if directory is None:
        raise RuntimeError(f"{samples_dir.VARIABLE} must be set before the gateway serves metrics")
    registry = CollectorRegistry()
    registry.register(_EveryProcess(directory))  # type: ignore[arg-type]
    return common_metrics.serve(listen_addr, registry)


def process_exiting() -> None:
    """This process's open streams are over: its live gauges are forgotten at once (a graceful stop)."""
    directory = samples_dir.current()
    if directory is not None:
        multiprocess.mark_process_dead(os.getpid(), str(directory))
