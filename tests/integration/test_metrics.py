"""Operations on the running stack: every process's /metrics is scraped before and after real runs and
the key series move as they must; every gRPC port lists its services through server reflection."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from devstack import Service, Stack
from execution_service import SERVICE_NAMES as EXECUTION_SERVICES
from session_service import SERVICE_NAME as SESSION_SERVICE
from tests.integration.conftest import metrics_url, new_session, start_gateway, wait_terminal

pytestmark = pytest.mark.integration

HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
Labels = dict[str, str]


class Scrape:
    """One scrape of one /metrics: its samples by name and labels."""

    def __init__(self, url: str) -> None:
        answer = httpx.get(url, timeout=5)
        answer.raise_for_status()
        self.samples = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
        ]

    def total(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels`."""
        return sum(
            value
            for sample, have, value in self.samples
            if sample == name and all(have.get(k) == v for k, v in labels.items())
        )

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples}


def scrape(stack: Stack, *names: str) -> list[Scrape]:
    return [Scrape(metrics_url(stack.find(name))) for name in names]


def executors(stack: Stack) -> list[Service]:
    return [service for service in stack.services if service.module == "executor"]


def moved(before: list[Scrape], after: list[Scrape], name: str, **labels: str) -> float:
    """How much `name` (with `labels`) went up, over the processes scraped."""
    return sum(b.total(name, **labels) for b in after) - sum(a.total(name, **labels) for a in before)


def test_every_process_serves_its_metrics(stack: Stack, api: httpx.Client) -> None:
    api.get("/health")
    expected = {
        "session_service": "lce_grpc_server_handled_total",
        "execution_service": "lce_grpc_server_handled_total",
        "gateway": "lce_gateway_requests_total",
        **{executor.name: "lce_executor_sandbox_info" for executor in executors(stack)},
    }
    for name, series in expected.items():
        assert series in Scrape(metrics_url(stack.find(name))).names(), name


def test_a_run_moves_the_key_series(stack: Stack, api: httpx.Client, languages: dict[str, dict[str, Any]]) -> None:
    watched = ("gateway", "session_service", "execution_service")
    executor_names = [executor.name for executor in executors(stack)]
    before, before_executors = scrape(stack, *watched), scrape(stack, *executor_names)

    session_id = new_session(api, languages["python"]["id"], "print(6 * 7)\n")
    ran = api.post(f"/code-sessions/{session_id}/run?wait=30", json={})
    assert ran.status_code == 200 and ran.json()["status"] == "COMPLETED", ran.text
    assert api.get(f"/executions/{ran.json()['execution_id']}").status_code == 200
    assert api.get("/executions/not-an-id").status_code == 400

    after, after_executors = scrape(stack, *watched), scrape(stack, *executor_names)
    requests = "lce_gateway_requests_total"
    assert moved(before, after, requests, route="/code-sessions", method="POST", status="201") == 1
    assert moved(before, after, requests, route="/code-sessions/{session_id}", method="PATCH", status="200") == 1
    assert moved(before, after, requests, route="/code-sessions/{session_id}/run", method="POST", status="200") == 1
    # Ids never become labels: both reads are one route's.
    assert moved(before, after, requests, route="/executions/{execution_id}", method="GET", status="200") == 1
    assert moved(before, after, requests, route="/executions/{execution_id}", method="GET", status="400") == 1
    run_route = {"route": "/code-sessions/{session_id}/run", "method": "POST"}
    assert moved(before, after, "lce_gateway_request_seconds_count", **run_route) == 1
    assert moved(before, after, "lce_executions_created_total", language="python") == 1
    finished = {"language": "python", "status": "COMPLETED", "reason": ""}
    assert moved(before, after, "lce_executions_finished_total", **finished) == 1
    assert moved(before_executors, after_executors, "lce_executor_runs_total", **finished) == 1
    handled = "lce_grpc_server_handled_total"
    for method in ("ExecutionService/CreateExecution", "ExecutorReportService/ReportStarted"):
        assert moved(before, after, handled, method=f"/lce.execution.v1.{method}", code="OK") >= 1, method
    assert moved(before, after, handled, method="/lce.session.v1.SessionService/CreateSession", code="OK") == 1


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def open_streams(stack: Stack, kind: str) -> float:
    return Scrape(metrics_url(stack.find("gateway"))).total("lce_gateway_open_streams", kind=kind)


SLOW = "import time\nprint('started', flush=True)\ntime.sleep(2)\nprint('done')\n"


def test_the_open_streams_gauge_follows_an_event_stream(
    stack: Stack, api: httpx.Client, languages: dict[str, dict[str, Any]]
) -> None:
    # Streams of earlier tests whose clients left end at their next write (a keep-alive within 15 s).
    wait_until(lambda: open_streams(stack, "sse") == 0, timeout_s=30)
    session_id = new_session(api, languages["python"]["id"], SLOW)
    execution_id = api.post(f"/code-sessions/{session_id}/run", json={}).json()["execution_id"]
    with api.stream("GET", f"/executions/{execution_id}/stream") as events:
        lines = events.iter_lines()
        assert next(line for line in lines if line.startswith("event:"))  # the stream is open and flowing
        assert open_streams(stack, "sse") == 1
        assert "event: result" in list(lines)  # read to its end: the run finished
    wait_until(lambda: open_streams(stack, "sse") == 0)


@contextmanager
def interaction(stack: Stack, execution_id: str) -> Iterator[Any]:
    url = stack.config.gateway_url.replace("http", "ws", 1) + f"/executions/{execution_id}/interact"
    with connect(url, open_timeout=10) as websocket:
        yield websocket


def test_the_open_streams_gauge_follows_a_websocket(
    stack: Stack, api: httpx.Client, languages: dict[str, dict[str, Any]]
) -> None:
    wait_until(lambda: open_streams(stack, "websocket") == 0, timeout_s=30)
    session_id = new_session(api, languages["python"]["id"], "print(input()[::-1])\n")
    execution_id = api.post(f"/code-sessions/{session_id}/run", json={"interactive": True}).json()["execution_id"]
    with interaction(stack, execution_id) as websocket:
        wait_until(lambda: open_streams(stack, "websocket") == 1)
        websocket.send(json.dumps({"type": "stdin", "data": "olleh\n"}))
        messages = [json.loads(message) for message in websocket]  # until the server closes it
        assert messages[-1]["type"] == "result" and messages[-1]["execution"]["stdout"] == "hello\n"
    wait_until(lambda: open_streams(stack, "websocket") == 0)


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("session_service", {SESSION_SERVICE, HEALTH, REFLECTION}),
        ("execution_service", {*EXECUTION_SERVICES, HEALTH, REFLECTION}),
        ("executor-1", {HEALTH, REFLECTION}),
    ],
)
def test_every_grpc_port_lists_its_services_through_reflection(stack: Stack, service: str, expected: set[str]) -> None:
    host, port = stack.find(service).health
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        assert set(ProtoReflectionDescriptorDatabase(channel).get_services()) == expected


# --- a gateway of the test's own beside the stack: its processes started, stopped and killed ---------


@contextmanager
def own_gateway(stack: Stack, workers: int) -> Iterator[Service]:
    """Another gateway on the stack's backends, with `workers` processes and /metrics of its own."""
    gateway, _ = start_gateway(stack, "own-gateway", LCE_GATEWAY_WORKERS=str(workers))
    try:
        yield gateway
    finally:
        stack.stop_service(gateway)


def base_url(gateway: Service) -> str:
    return str(gateway.health).removesuffix("/health")


def requests_counted(gateway: Service, route: str) -> float:
    return Scrape(metrics_url(gateway)).total("lce_gateway_requests_total", route=route)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_gateway_counts_every_process_afresh_at_each_start(stack: Stack, workers: int) -> None:
    for _ in range(2):
        with own_gateway(stack, workers) as gateway:
            assert requests_counted(gateway, "/languages") == 0  # a fresh directory: nothing of the last start
            for _ in range(6):  # over several connections: each worker takes some
                assert httpx.get(base_url(gateway) + "/languages", timeout=10).status_code == 200
            assert requests_counted(gateway, "/languages") == 6


def worker_pids(gateway: Service) -> list[int]:
    """uvicorn's worker processes: the children of the gateway's process (but multiprocessing's helper)."""
    assert gateway.process is not None
    pid = gateway.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()]


def test_a_killed_worker_s_streams_are_forgotten_and_its_counts_kept(
    stack: Stack, languages: dict[str, dict[str, Any]]
) -> None:
    with own_gateway(stack, workers=2) as gateway, httpx.Client(base_url=base_url(gateway)) as api:
        session_id = new_session(api, languages["python"]["id"], "import time\nprint(1, flush=True)\ntime.sleep(3)\n")
        execution_id = api.post(f"/code-sessions/{session_id}/run", json={}).json()["execution_id"]
        stream_route = "/executions/{execution_id}/stream"
        with api.stream("GET", f"/executions/{execution_id}/stream", timeout=30) as events:
            lines = events.iter_lines()  # held: a dropped iterator would close the connection
            assert next(line for line in lines if line.startswith("event:"))
            assert Scrape(metrics_url(gateway)).total("lce_gateway_open_streams", kind="sse") == 1
            for pid in worker_pids(gateway):
                os.kill(pid, signal.SIGKILL)
            with pytest.raises(httpx.HTTPError):
                list(lines)
        assert Scrape(metrics_url(gateway)).total("lce_gateway_open_streams", kind="sse") == 0
        assert requests_counted(gateway, stream_route) == 1  # the dead worker's counts stay
        wait_terminal_over(stack, execution_id)


def wait_terminal_over(stack: Stack, execution_id: str) -> None:
    """The run goes on without the gateway that streamed it (the stack's own gateway tells)."""
    with httpx.Client(base_url=stack.config.gateway_url, timeout=30) as api:
        assert wait_terminal(api, execution_id)["status"] == "COMPLETED"
