"""Hostile input to the gRPC services of the real stack: bytes that are no message, messages over
the servers' bound, enum values no proto defines. Each is refused with INVALID_ARGUMENT or
RESOURCE_EXHAUSTED (never UNKNOWN or INTERNAL, the codes of a handler that broke), nothing is
created, and the services go on answering."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.grpc_client import MAX_REQUEST_BYTES
from devstack import Stack
from lce.execution.v1 import execution_pb2, execution_pb2_grpc
from lce.session.v1 import session_pb2, session_pb2_grpc
from tests.integration.conftest import new_session

pytestmark = pytest.mark.integration

TIMEOUT_S = 10
EXECUTION = "lce.execution.v1.ExecutionService"
SESSION = "lce.session.v1.SessionService"
# Every method of the two public services, and how it streams.
METHODS = {
    "CreateExecution": (EXECUTION, "unary"),
    "GetExecution": (EXECUTION, "unary"),
    "ListExecutions": (EXECUTION, "unary"),
    "ListExecutionEvents": (EXECUTION, "unary"),
    "WatchExecutions": (EXECUTION, "server_stream"),
    "WatchExecution": (EXECUTION, "server_stream"),
    "InteractExecution": (EXECUTION, "bidi_stream"),
    "ListLanguages": (SESSION, "unary"),
    "GetLanguage": (SESSION, "unary"),
    "CreateSession": (SESSION, "unary"),
    "GetSession": (SESSION, "unary"),
    "UpdateSource": (SESSION, "unary"),
    "CloseSession": (SESSION, "unary"),
}
# Bytes no message of these services parses as: a field of wire type 7 (none is), a field longer
# than the bytes that follow, and a string (field 1) that is not UTF-8.
MALFORMED = {
    "no wire type": b"\x0f\x01",
    "cut short": b"\x0a\x10abc",
    "not UTF-8": b"\x0a\x02\xff\xfe",
}
# Requests without a field 1, for which those last bytes are an unknown field (proto3 keeps it).
WITHOUT_FIELDS = {"ListLanguages", "WatchExecutions"}
MALFORMED_CALLS = [
    pytest.param(method, raw, id=f"{method}, {name}")
    for method in METHODS
    for name, raw in MALFORMED.items()
    if not (method in WITHOUT_FIELDS and name == "not UTF-8")
]


@pytest.fixture(scope="module")
def channels(stack: Stack) -> Iterator[dict[str, grpc.Channel]]:
    # No bound on what this client sends: the servers' own bound is under test.
    options = [("grpc.max_send_message_length", -1)]
    opened = {
        EXECUTION: grpc.insecure_channel(f"{stack.config.host}:{stack.config.execution_port}", options=options),
        SESSION: grpc.insecure_channel(f"{stack.config.host}:{stack.config.session_port}", options=options),
    }
    yield opened
    for channel in opened.values():
        channel.close()


@pytest.fixture(scope="module")
def executions(channels: dict[str, grpc.Channel]) -> execution_pb2_grpc.ExecutionServiceStub:
    return execution_pb2_grpc.ExecutionServiceStub(channels[EXECUTION])


@pytest.fixture(scope="module")
def sessions(channels: dict[str, grpc.Channel]) -> session_pb2_grpc.SessionServiceStub:
    return session_pb2_grpc.SessionServiceStub(channels[SESSION])


def raw_call(channel: grpc.Channel, service: str, method: str, kind: str, request: bytes) -> grpc.StatusCode:
    """The status of a call sending `request` as it is (the stub would serialize a message)."""
    path = f"/{service}/{method}"
    try:
        if kind == "unary":
            channel.unary_unary(path)(request, timeout=TIMEOUT_S)
        elif kind == "server_stream":
            list(channel.unary_stream(path)(request, timeout=TIMEOUT_S))
        else:
            list(channel.stream_stream(path)(iter([request]), timeout=TIMEOUT_S))
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def code_of(call: Any, request: Any) -> grpc.StatusCode:
    try:
        call(request, timeout=TIMEOUT_S)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize(("method", "request_bytes"), MALFORMED_CALLS)
def test_bytes_that_are_no_message_are_invalid_argument(
    channels: dict[str, grpc.Channel], method: str, request_bytes: bytes
) -> None:
    service, kind = METHODS[method]
    assert raw_call(channels[service], service, method, kind, request_bytes) == grpc.StatusCode.INVALID_ARGUMENT
    assert_serving(channels[service], service)


@pytest.mark.parametrize(
    ("service", "method", "field"),
    [(EXECUTION, "CreateExecution", 8), (SESSION, "UpdateSource", 3), (SESSION, "CreateSession", 2)],
    ids=["CreateExecution stdin", "UpdateSource source", "CreateSession source"],
)
def test_a_message_over_the_bound_is_resource_exhausted(
    channels: dict[str, grpc.Channel], service: str, method: str, field: int
) -> None:
    payload = b"x" * (MAX_REQUEST_BYTES + 1)
    request = _varint(field << 3 | 2) + _varint(len(payload)) + payload
    assert raw_call(channels[service], service, method, "unary", request) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_serving(channels[service], service)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def assert_serving(channel: grpc.Channel, service: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def session_id(api: httpx.Client, languages: dict[str, dict[str, Any]]) -> str:
    return new_session(api, languages["python"]["id"], "print(1)\n")


ONE_CASE = [execution_pb2.TestCase()]


@pytest.mark.parametrize(
    "fields",
    [
        {"encoding": 99},
        {"encoding": -1},
        {"encoding": 2**31 - 1},
        {"compare": 99, "tests": ONE_CASE},
        {"compare": -7, "tests": ONE_CASE},
        {"compare": execution_pb2.COMPARE_MODE_TOKENS, "float_tolerance": float("nan"), "tests": ONE_CASE},
        {"compare": execution_pb2.COMPARE_MODE_TOKENS, "float_tolerance": float("inf"), "tests": ONE_CASE},
        {"time_limit_ms": -(2**31)},
        {"memory_limit_mb": 2**31 - 1},
        {"args": ["a\x00b"]},
    ],
)
def test_unknown_enum_values_and_numbers_out_of_range_create_nothing(
    executions: execution_pb2_grpc.ExecutionServiceStub, session_id: str, fields: dict[str, Any]
) -> None:
    request = execution_pb2.CreateExecutionRequest(session_id=session_id, **fields)
    assert code_of(executions.CreateExecution, request) == grpc.StatusCode.INVALID_ARGUMENT
    listed = executions.ListExecutions(execution_pb2.ListExecutionsRequest(session_id=session_id), timeout=TIMEOUT_S)
    assert list(listed.executions) == []


@pytest.mark.parametrize(
    ("method", "request_bytes"),
    [
        ("CreateSession", b"\x08\x01"),  # language_id (field 1) as a number: kept as an unknown field
        ("GetLanguage", b"\x08\x01"),
        ("ListExecutions", b"\x10\xff\xff\xff\xff\x0f"),  # limit: 2**32 - 1 read as int32, -1
        ("ListExecutions", b"\x10" + b"\xff" * 9 + b"\x01"),  # limit: a 64-bit -1
    ],
)
def test_fields_of_the_wrong_type_or_size_are_invalid_argument(
    channels: dict[str, grpc.Channel], method: str, request_bytes: bytes
) -> None:
    service, kind = METHODS[method]
    assert raw_call(channels[service], service, method, kind, request_bytes) == grpc.StatusCode.INVALID_ARGUMENT


def test_a_source_update_refused_leaves_the_session_as_it_was(
    sessions: session_pb2_grpc.SessionServiceStub, session_id: str
) -> None:
    for refused in (
        session_pb2.UpdateSourceRequest(session_id=session_id, source_code="x\x00"),
        session_pb2.UpdateSourceRequest(
            session_id=session_id,
            source_code="print(2)\n",
            file_set=session_pb2.FileSet(files=[session_pb2.SourceFile(name="../etc/passwd", content="")]),
        ),
    ):
        assert code_of(sessions.UpdateSource, refused) == grpc.StatusCode.INVALID_ARGUMENT
    stored = sessions.GetSession(session_pb2.GetSessionRequest(session_id=session_id), timeout=TIMEOUT_S).session
    assert (stored.source_code, list(stored.files)) == ("print(1)\n", [])
