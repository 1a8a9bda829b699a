"""Proto -> JSON shapes and JSON -> proto requests."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from common import execution_json
from gateway import translate
from gateway.http_errors import HttpError
from lce.execution.v1 import execution_pb2
from lce.session.v1 import session_pb2

LANGUAGE = session_pb2.Language(
    id="lang-1",
    name="javascript",
    runtime="node",
    version="18.19.0",
    template_code="console.log('Hello World');",
    file_name="main.js",
    default_time_limit_ms=5000,
    default_memory_mb=256,
    versions=["18.19.0", "20.11.1"],
    available=True,
)


def stamp(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


# --- timestamps and statuses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "nanos", "text"),
    [
        (1768989600, 0, "2026-01-21T10:00:00.000Z"),
        (1768989600, 999_999_999, "2026-01-21T10:00:00.999Z"),  # truncated, never rounded into the next second
        (1768989600, 5_000_000, "2026-01-21T10:00:00.005Z"),
        (0, 0, "1970-01-01T00:00:00.000Z"),
    ],
)
def test_iso_timestamp(seconds: int, nanos: int, text: str) -> None:
    assert execution_json.iso_timestamp(stamp(seconds, nanos)) == text


def test_unset_timestamp_is_null() -> None:
    execution = execution_pb2.Execution(created_at=stamp(1))
    assert execution_json.optional_timestamp(execution, "started_at") is None
    assert execution_json.optional_timestamp(execution, "created_at") == "1970-01-01T00:00:01.000Z"


def test_statuses_lose_their_enum_prefix() -> None:
    names = [execution_json.execution_status(v) for v in range(1, 6)]
    assert names == ["QUEUED", "RUNNING", "COMPLETED", "FAILED", "TIMEOUT"]
    assert translate.session_status(session_pb2.SESSION_STATUS_ACTIVE) == "ACTIVE"
    assert translate.session_status(session_pb2.SESSION_STATUS_INACTIVE) == "INACTIVE"
    assert execution_json.execution_status(99) == "UNSPECIFIED"


# --- languages and sessions ----------------------------------------------------------------


def test_languages_list_shape() -> None:
    body = translate.languages_list([LANGUAGE, LANGUAGE])
    assert body["total"] == 2
    assert body["languages"][0] == {
        "id": "lang-1",
        "name": "javascript",
        "runtime": "node",
        "version": "18.19.0",
        "versions": ["18.19.0", "20.11.1"],
        "available": True,
        "default_time_limit_ms": 5000,
        "default_memory_mb": 256,
    }


def test_language_detail_adds_template_and_file_name() -> None:
    body = translate.language_detail(LANGUAGE)
    assert body["template_code"] == "console.log('Hello World');"
    assert body["file_name"] == "main.js"
    assert body["packages"] == {}
    assert len(body) == 11


def test_session_detail_shape() -> None:
    session = session_pb2.Session(
        id="s-1",
        status=session_pb2.SESSION_STATUS_ACTIVE,
        language=LANGUAGE,
        source_code="console.log('Hello');",
        created_at=stamp(1768989600),
        updated_at=stamp(1768989900),
    )
    assert translate.session_detail(session) == {
        "session_id": "s-1",
        "status": "ACTIVE",
        "language_id": "lang-1",
        "language_name": "javascript",
        "source_code": "console.log('Hello');",
        "files": [],
        "runtime": "node",
        "version": "18.19.0",
        "created_at": "2026-01-21T10:00:00.000Z",
        "updated_at": "2026-01-21T10:05:00.000Z",
    }
    assert translate.session_state(session) == {
        "session_id": "s-1",
        "status": "ACTIVE",
        "updated_at": "2026-01-21T10:05:00.000Z",
    }


# --- executions ----------------------------------------------------------------------------


def queued() -> execution_pb2.Execution:
    return execution_pb2.Execution(
        id="e-1",
        session_id="s-1",
        status=execution_pb2.EXECUTION_STATUS_QUEUED,
        language="python",
        time_limit_ms=5000,
        memory_limit_mb=256,
        created_at=stamp(1768989600),
    )


def finished(status: int = execution_pb2.EXECUTION_STATUS_COMPLETED, **result: Any) -> execution_pb2.Execution:
    execution = queued()
    execution.status = status
    execution.started_at.CopyFrom(stamp(1768989601))
    execution.finished_at.CopyFrom(stamp(1768989602, 250_000_000))
    execution.result.CopyFrom(execution_pb2.RunResult(status=status, **result))
    return execution


def test_pending_execution_has_no_result_keys() -> None:
    assert execution_json.execution_detail(queued()) == {
        "execution_id": "e-1",
        "status": "QUEUED",
        "session_id": "s-1",
        "language": "python",
        "created_at": "2026-01-21T10:00:00.000Z",
        "started_at": None,
        "warnings": [],
        "encoding": "utf8",
        "interactive": False,
        "priority": "interactive",
    }


def test_warnings_are_carried_in_every_state() -> None:
    warning = "line 1: `while True` has no break, return or exit in its body and may never end"
    pending = queued()
    pending.warnings.append(warning)
    done = finished(execution_pb2.EXECUTION_STATUS_TIMEOUT)
    done.warnings.append(warning)
    assert execution_json.execution_detail(pending)["warnings"] == [warning]
    assert execution_json.execution_detail(done)["warnings"] == [warning]
    assert translate.execution_created(pending) == {"execution_id": "e-1", "status": "QUEUED", "warnings": [warning]}


def test_the_202_answer_reads_queued_even_when_a_replay_finds_the_run_over() -> None:
    assert translate.execution_created(finished()) == {"execution_id": "e-1", "status": "QUEUED", "warnings": []}


def test_events_oldest_first_with_their_details_only() -> None:
    events = [
        execution_pb2.ExecutionEvent(type="QUEUED", at=stamp(1768989600)),
        execution_pb2.ExecutionEvent(type="RUNNING", at=stamp(1768989601, 5_000_000), attempt=1, executor_id="ex-a"),
        execution_pb2.ExecutionEvent(
            type="RETRIED", at=stamp(1768989611), attempt=1, executor_id="ex-a", reason="lease_expired"
        ),
        execution_pb2.ExecutionEvent(type="COMPLETED", at=stamp(1768989620), attempt=2, executor_id="ex-b"),
    ]
    assert translate.execution_events("e-1", events) == {
        "execution_id": "e-1",
        "events": [
            {"type": "QUEUED", "at": "2026-01-21T10:00:00.000Z"},
            {"type": "RUNNING", "at": "2026-01-21T10:00:01.005Z", "attempt": 1, "executor_id": "ex-a"},
            {
                "type": "RETRIED",
                "at": "2026-01-21T10:00:11.000Z",
                "attempt": 1,
                "executor_id": "ex-a",
                "reason": "lease_expired",
            },
            {"type": "COMPLETED", "at": "2026-01-21T10:00:20.000Z", "attempt": 2, "executor_id": "ex-b"},
        ],
    }


def test_the_idempotency_key_is_passed_on_only_when_sent() -> None:
    assert not translate.create_execution_request("s-1", {}).HasField("idempotency_key")
    assert translate.create_execution_request("s-1", {}, "k-1").idempotency_key == "k-1"
    assert translate.create_execution_request("s-1", {}, "").HasField("idempotency_key")


def test_terminal_execution_carries_the_result() -> None:
    stages = [
        execution_pb2.StageMetrics(name="compile", cpu_time_ms=300, wall_time_ms=350, memory_kb=50000, exit_code=0),
        execution_pb2.StageMetrics(name="run", cpu_time_ms=5000, wall_time_ms=5001, memory_kb=1000, signal="SIGKILL"),
    ]
    body = execution_json.execution_detail(
        finished(
            execution_pb2.EXECUTION_STATUS_TIMEOUT,
            reason=execution_pb2.REASON_TIME_LIMIT_EXCEEDED_CPU,
            stdout="partial",
            stderr="",
            execution_time_ms=5001,
            memory_kb=1000,
            stages=stages,
            stdout_truncated=True,
        )
    )
    assert list(body)[:5] == ["execution_id", "status", "stdout", "stderr", "execution_time_ms"]
    assert body["status"] == "TIMEOUT"
    assert body["exit_code"] is None  # killed by a signal: no exit code
    assert body["reason"] == "time_limit_exceeded:cpu"
    assert body["stdout_truncated"] is True and body["stderr_truncated"] is False
    assert body["finished_at"] == "2026-01-21T10:00:02.250Z"
    assert body["stages"][1] == {
        "name": "run",
        "cpu_time_ms": 5000,
        "wall_time_ms": 5001,
        "memory_kb": 1000,
        "exit_code": None,
        "signal": "SIGKILL",
    }
    assert body["stages"][0]["exit_code"] == 0 and body["stages"][0]["signal"] is None
    assert (body["time_limit_ms"], body["memory_limit_mb"]) == (5000, 256)


def test_completed_execution_reason_is_null_and_exit_code_zero() -> None:
    body = execution_json.execution_detail(finished(exit_code=0, stdout="Hello World\n", execution_time_ms=120))
    assert body["reason"] is None
    assert body["exit_code"] == 0
    assert body["stdout"] == "Hello World\n"


def test_summary_nulls_until_terminal() -> None:
    assert translate.execution_summary(queued()) == {
        "execution_id": "e-1",
        "status": "QUEUED",
        "execution_time_ms": None,
        "exit_code": None,
        "created_at": "2026-01-21T10:00:00.000Z",
    }
    done = translate.execution_summary(
        finished(execution_pb2.EXECUTION_STATUS_FAILED, exit_code=3, execution_time_ms=9)
    )
    assert (done["status"], done["execution_time_ms"], done["exit_code"]) == ("FAILED", 9, 3)


def test_executions_list_shape() -> None:
    body = translate.executions_list("s-1", [queued()])
    assert body["session_id"] == "s-1"
    assert [e["execution_id"] for e in body["executions"]] == ["e-1"]


# --- inbound -------------------------------------------------------------------------------


def test_create_session_request() -> None:
    message = translate.create_session_request({"language_id": "l", "unknown": "ignored"})
    assert message.language_id == "l" and not message.HasField("source_code")
    assert translate.create_session_request({"language_id": "l", "source_code": ""}).HasField("source_code")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "language_id is required"),
        ({"language_id": None}, "language_id is required"),
        ({"language_id": 1}, "language_id must be a string"),
        ({"language_id": ["l"]}, "language_id must be a string"),
        ({"language_id": "l", "source_code": False}, "source_code must be a string"),
    ],
)
def test_create_session_request_is_strict(body: dict[str, Any], message: str) -> None:
    with pytest.raises(HttpError) as raised:
        translate.create_session_request(body)
    assert (raised.value.status, raised.value.message) == (400, message)


def test_create_execution_request_limits_are_optional() -> None:
    message = translate.create_execution_request("s", {})
    assert not message.HasField("time_limit_ms") and not message.HasField("memory_limit_mb")
    message = translate.create_execution_request("s", {"time_limit_ms": 100, "memory_limit_mb": None})
    assert message.time_limit_ms == 100 and not message.HasField("memory_limit_mb")


def test_out_of_domain_limits_pass_through_to_the_service() -> None:
    assert translate.create_execution_request("s", {"time_limit_ms": 0}).time_limit_ms == 0


@pytest.mark.parametrize("value", ["5000", 5000.0, True, False, [5000], {"ms": 5000}, 2**31, -(2**31) - 1])
def test_create_execution_request_is_strict(value: object) -> None:
    with pytest.raises(HttpError) as raised:
        translate.create_execution_request("s", {"time_limit_ms": value})
    assert raised.value.status == 400 and "time_limit_ms" in raised.value.message


def test_compile_limits_and_encoding_are_read() -> None:
    message = translate.create_execution_request(
        "s", {"compile_time_limit_ms": 2000, "compile_memory_limit_mb": 128, "encoding": "base64"}
    )
    assert (message.compile_time_limit_ms, message.compile_memory_limit_mb) == (2000, 128)
    assert message.encoding == execution_pb2.ENCODING_BASE64
    message = translate.create_execution_request("s", {})
    assert not message.HasField("compile_time_limit_ms") and not message.HasField("compile_memory_limit_mb")
    assert message.encoding == execution_pb2.ENCODING_UNSPECIFIED
    assert translate.create_execution_request("s", {"encoding": "utf8"}).encoding == execution_pb2.ENCODING_UTF8


@pytest.mark.parametrize(
    "body",
    [
        {"encoding": "BASE64"},
        {"encoding": "hex"},
        {"encoding": ""},
        {"encoding": 1},
        {"compile_time_limit_ms": "2000"},
        {"compile_memory_limit_mb": 1.5},
    ],
)
def test_compile_limits_and_encoding_are_strict(body: dict[str, object]) -> None:
    with pytest.raises(HttpError) as raised:
        translate.create_execution_request("s", body)
    assert raised.value.status == 400 and next(iter(body)) in raised.value.message


def test_stdin_and_args_are_read() -> None:
    message = translate.create_execution_request("s", {"stdin": "héllo\n", "args": ["a b", "$(x)", ""]})
    assert message.stdin == "héllo\n".encode()
    assert list(message.args) == ["a b", "$(x)", ""]
    raw = bytes(range(256))
    message = translate.create_execution_request("s", {"stdin": base64.b64encode(raw).decode(), "encoding": "base64"})
    assert message.stdin == raw
    assert translate.create_execution_request("s", {}).stdin == b""


@pytest.mark.parametrize(
    "body",
    [
        {"stdin": 5},
        {"stdin": ["x"]},
        {"stdin": "\ud800"},
        {"stdin": "not base64!", "encoding": "base64"},
        {"args": "a b"},
        {"args": [1]},
        {"args": [None]},
        {"args": ["\udfff"]},
    ],
)
def test_stdin_and_args_are_strict(body: dict[str, object]) -> None:
    with pytest.raises(HttpError) as raised:
        translate.create_execution_request("s", body)
    assert raised.value.status == 400 and next(iter(body)) in raised.value.message


def test_a_lone_surrogate_in_source_code_is_a_400_not_a_crash() -> None:
    with pytest.raises(HttpError) as raised:
        translate.update_source_request("s", {"source_code": "print('\ud83d')"})
    assert raised.value.status == 400


def test_a_finished_execution_names_its_encoding_and_compile_limits() -> None:
    execution = finished(execution_pb2.EXECUTION_STATUS_COMPLETED, stdout="aGk=")
    execution.encoding = execution_pb2.ENCODING_BASE64
    execution.compile_time_limit_ms, execution.compile_memory_limit_mb = 2000, 128
    body = execution_json.execution_detail(execution)
    assert (body["encoding"], body["stdout"]) == ("base64", "aGk=")
    assert (body["compile_time_limit_ms"], body["compile_memory_limit_mb"]) == (2000, 128)
    execution.encoding = execution_pb2.ENCODING_UNSPECIFIED
    assert execution_json.execution_detail(execution)["encoding"] == "utf8"


@pytest.mark.parametrize(("raw", "value"), [(None, None), ("1", 1.0), ("0.5", 0.5), ("30", 30.0), ("2.", 2.0)])
def test_parse_wait(raw: str | None, value: float | None) -> None:
    assert translate.parse_wait(raw) == value


@pytest.mark.parametrize(
    "raw", ["", "0", "0.0", "30.01", "31", "-1", "+1", "1e1", ".", "1..2", "nan", "inf", " 1", "\u0661", "9" * 50]
)
def test_parse_wait_rejects(raw: str) -> None:
    with pytest.raises(HttpError) as raised:
        translate.parse_wait(raw)
    assert raised.value.status == 400 and "wait" in raised.value.message


@pytest.mark.parametrize(("raw", "value"), [(None, None), ("10", 10), ("+5", 5), ("-1", -1), ("0100", 100)])
def test_parse_limit(raw: str | None, value: int | None) -> None:
    assert translate.parse_limit(raw) == value


@pytest.mark.parametrize("raw", ["", "+", "1.0", "1e2", "1_0", " 1", "١٢", "true", "2147483648", "9" * 5000])
def test_parse_limit_rejects(raw: str) -> None:
    with pytest.raises(HttpError) as raised:
        translate.parse_limit(raw)
    assert raised.value.status == 400


# --- test suites ----------------------------------


def test_a_suite_request() -> None:
    body = {
        "tests": [{"name": "a", "stdin": "1\n", "args": ["x"], "expected_output": "2\n"}, {}],
        "compare": "tokens",
        "float_tolerance": 0,
        "stop_on_first_failure": True,
    }
    request = translate.create_execution_request("s-1", body)
    assert [(case.name, case.stdin, list(case.args)) for case in request.tests] == [("a", b"1\n", ["x"]), ("", b"", [])]
    assert request.tests[0].expected_output == "2\n" and not request.tests[1].HasField("expected_output")
    assert (request.compare, request.float_tolerance) == (execution_pb2.COMPARE_MODE_TOKENS, 0.0)
    assert request.stop_on_first_failure
    base64_case = translate.create_execution_request("s-1", {"encoding": "base64", "tests": [{"stdin": "AP8="}]})
    assert base64_case.tests[0].stdin == b"\x00\xff"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tests": []}, "tests must have 1 to 100 cases"),
        ({"tests": [{}] * 101}, "tests must have 1 to 100 cases"),
        ({"tests": {}}, "tests must be a list"),
        ({"tests": ["x"]}, "tests[0] must be an object"),
        ({"tests": [{}, {"stdin": 1}]}, "tests[1].stdin must be a string"),
        ({"tests": [{"args": "x"}]}, "tests[0].args must be a list"),
        ({"tests": [{"expected": "x"}]}, "tests[0] must be an object of name"),
        ({"tests": [{"stdin": "%"}], "encoding": "base64"}, "tests[0].stdin is not valid base64"),
        ({"tests": [{}], "compare": "fuzzy"}, "compare must be one of exact, tokens, trim"),
        ({"tests": [{}], "float_tolerance": True}, "float_tolerance must be a number"),
        ({"tests": [{}], "float_tolerance": 10**400}, "float_tolerance is out of range"),
        ({"tests": [{}], "stop_on_first_failure": 1}, "stop_on_first_failure must be true or false"),
    ],
)
def test_malformed_suites(body: dict[str, Any], message: str) -> None:
    with pytest.raises(HttpError) as refused:
        translate.create_execution_request("s-1", body)
    assert refused.value.status == 400 and refused.value.message.startswith(message)


def test_a_finished_suite_carries_its_cases() -> None:
    cases = [
        execution_pb2.TestCaseResult(name="a", status=execution_pb2.CASE_STATUS_COMPLETED, passed=True, stdout="2\n"),
        execution_pb2.TestCaseResult(
            status=execution_pb2.CASE_STATUS_FAILED, reason=execution_pb2.REASON_SIGNAL, signal="SIGSEGV"
        ),
        execution_pb2.TestCaseResult(status=execution_pb2.CASE_STATUS_SKIPPED),
    ]
    execution = finished(tests=cases)
    execution.tests_total = 3
    body = execution_json.execution_detail(execution)
    assert (body["tests_passed"], body["tests_total"]) == (1, 3)
    assert [(c["name"], c["status"], c["reason"], c["passed"]) for c in body["tests"]] == [
        ("a", "COMPLETED", None, True),
        ("case 2", "FAILED", "signal:SIGSEGV", False),
        ("case 3", "SKIPPED", None, False),
    ]
    assert "tests" not in execution_json.execution_detail(finished())
