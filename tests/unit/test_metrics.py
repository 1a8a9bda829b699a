"""/metrics over real HTTP: every gRPC call a server answers is counted by method and status code."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest
import sqlalchemy.exc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common import metrics
from common.errors import NotFound
from common.grpc_client import channel
from common.grpc_server import RunningServer, start_server

CHECK = "/grpc.health.v1.Health/Check"


FAULTS = "lce.test.Faults"


def _raises(error: BaseException) -> grpc.RpcMethodHandler:
    def handler(request: bytes, context: grpc.ServicerContext) -> bytes:
        raise error

    return grpc.unary_unary_rpc_method_handler(handler)


def _add_faults(server: grpc.Server) -> None:
    """Methods that fail the ways our servicers can: a domain error, the database, a bug."""
    methods = {
        "NotFound": _raises(NotFound("no such thing")),
        "DatabaseDown": _raises(sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionError("down"))),
        "Bug": _raises(ValueError("a bug")),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(FAULTS, methods),))


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server("127.0.0.1:0", _add_faults, ["lce.test"])
    yield running
    running.stop(0)


@pytest.fixture(scope="module")
def metrics_url() -> str:
    port = metrics.serve("127.0.0.1:0")
    assert port is not None
    return f"http://127.0.0.1:{port}/metrics"


def scraped(url: str, sample: str) -> float:
    """The value of one sample line of the text format, 0 when absent."""
    for line in httpx.get(url, timeout=5).text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


def test_no_listen_address_serves_nothing() -> None:
    assert metrics.serve("") is None


def test_answered_and_refused_calls_are_counted_by_code(server: RunningServer, metrics_url: str) -> None:
    ok = f'lce_grpc_server_handled_total{{code="OK",method="{CHECK}"}}'
    not_found = f'lce_grpc_server_handled_total{{code="NOT_FOUND",method="{CHECK}"}}'
    timed = f'lce_grpc_server_handling_seconds_count{{method="{CHECK}"}}'
    before = [scraped(metrics_url, sample) for sample in (ok, not_found, timed)]
    with channel(f"127.0.0.1:{server.port}") as client:
        stub = health_pb2_grpc.HealthStub(client)
        stub.Check(health_pb2.HealthCheckRequest(service="lce.test"), timeout=5)
        stub.Check(health_pb2.HealthCheckRequest(service="lce.test"), timeout=5)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.service"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    after = [scraped(metrics_url, sample) for sample in (ok, not_found, timed)]
    assert [b - a for a, b in zip(before, after, strict=True)] == [2, 1, 3]


@pytest.mark.parametrize(
    ("method", "code"),
    [("NotFound", "NOT_FOUND"), ("DatabaseDown", "UNAVAILABLE"), ("Bug", "UNKNOWN")],
)
def test_failed_calls_are_counted_with_the_code_they_ended_with(
    server: RunningServer, metrics_url: str, method: str, code: str
) -> None:
    path = f"/{FAULTS}/{method}"
    sample = f'lce_grpc_server_handled_total{{code="{code}",method="{path}"}}'
    before = scraped(metrics_url, sample)
    with channel(f"127.0.0.1:{server.port}") as client, pytest.raises(grpc.RpcError) as failed:
        client.unary_unary(path)(b"", timeout=5)
    assert failed.value.code().name == code
    assert scraped(metrics_url, sample) == before + 1
