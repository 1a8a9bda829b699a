"""An execution as the REST API shows it (GET /executions/{id}): from its proto to the documented JSON.

One definition for everyone who sends it: the gateway's answers and execution_service's webhooks.
Timestamps are ISO-8601 UTC with milliseconds and "Z"; statuses go without their enum prefix.
"""

from __future__ import annotations

import time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from common.outcome import TERMINAL, case_status_name, reason_text_of, status_from_proto
from lce.execution.v1 import execution_pb2

Json = dict[str, Any]

# "utf8", "base64": the encodings a run may ask for, by their proto names.
ENCODINGS: dict[str, int] = {
    value.name.removeprefix("ENCODING_").lower(): value.number
    for value in execution_pb2.Encoding.DESCRIPTOR.values
    if value.number != execution_pb2.ENCODING_UNSPECIFIED
}
ENCODING_NAMES = {number: name for name, number in ENCODINGS.items()}
# "interactive", "batch": a run's lane (README "Priority lanes"), by their proto names.
PRIORITIES: dict[str, int] = {
    value.name.removeprefix("PRIORITY_").lower(): value.number
    for value in execution_pb2.Priority.DESCRIPTOR.values
    if value.number != execution_pb2.PRIORITY_UNSPECIFIED
}
PRIORITY_NAMES = {number: name for name, number in PRIORITIES.items()}


def iso_timestamp(ts: Timestamp) -> str:
    """2026-01-21T10:00:00.000Z"""
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(ts.seconds))}.{ts.nanos // 1_000_000:03d}Z"


def optional_timestamp(message: Any, field: str) -> str | None:
    return iso_timestamp(getattr(message, field)) if message.HasField(field) else None


def execution_status(status: int) -> str:
    known = status_from_proto(status)
    return known.value if known is not None else "UNSPECIFIED"


def is_terminal(execution: execution_pb2.Execution) -> bool:
    return status_from_proto(execution.status) in TERMINAL


def stage_json(stage: execution_pb2.StageMetrics) -> Json:
    return {
        "name": stage.name,
        "cpu_time_ms": stage.cpu_time_ms,
        "wall_time_ms": stage.wall_time_ms,
        "memory_kb": stage.memory_kb,
        "exit_code": stage.exit_code if stage.HasField("exit_code") else None,
        "signal": stage.signal or None,
    }


def case_json(index: int, case: execution_pb2.TestCaseResult) -> Json:
    return {
        "name": case.name or f"case {index + 1}",
        "status": case_status_name(case.status),
        "reason": reason_text_of(case) or None,
        "passed": case.passed,
        "stdout": case.stdout,
        "stderr": case.stderr,
        "stdout_truncated": case.stdout_truncated,
        "stderr_truncated": case.stderr_truncated,
        "exit_code": case.exit_code if case.HasField("exit_code") else None,
        "execution_time_ms": case.execution_time_ms,
        "memory_kb": case.memory_kb,
    }


def execution_detail(execution: execution_pb2.Execution) -> Json:
    """GET /executions/{id}: the documented keys first, then additive detail."""
    body: Json = {"execution_id": execution.id, "status": execution_status(execution.status)}
    if is_terminal(execution):
        result = execution.result
        body.update(
            stdout=result.stdout,
            stderr=result.stderr,
            execution_time_ms=result.execution_time_ms,
            exit_code=result.exit_code if result.HasField("exit_code") else None,
            reason=reason_text_of(result) or None,
            stdout_truncated=result.stdout_truncated,
            stderr_truncated=result.stderr_truncated,
            memory_kb=result.memory_kb,
            sandbox=result.sandbox or None,
            stages=[stage_json(stage) for stage in result.stages],
            finished_at=optional_timestamp(execution, "finished_at"),
            time_limit_ms=execution.time_limit_ms,
            memory_limit_mb=execution.memory_limit_mb,
            compile_time_limit_ms=execution.compile_time_limit_ms or None,
            compile_memory_limit_mb=execution.compile_memory_limit_mb or None,
        )
        if execution.tests_total:
            body.update(
                tests=[case_json(index, case) for index, case in enumerate(result.tests)],
                tests_passed=sum(case.passed for case in result.tests),
                tests_total=execution.tests_total,
            )
    body.update(
        session_id=execution.session_id,
        language=execution.language,
        created_at=optional_timestamp(execution, "created_at"),
        started_at=optional_timestamp(execution, "started_at"),
        warnings=list(execution.warnings),
        encoding=ENCODING_NAMES.get(execution.encoding, "utf8"),
        interactive=execution.interactive,
        priority=PRIORITY_NAMES.get(execution.priority, "interactive"),
    )
    return body
