"""A run's result, defined once: its status, its reason, its stages, and their one mapping to the
contract (lce.execution.v1 RunResult) and to text (storage and JSON).

The executor builds a RunOutcome, execution_service stores and serves it, the gateway shows it:
each through the functions here. Status and Reason mirror the proto enums member for member
(`EXECUTION_STATUS_<name>`, `REASON_<name>`); a reason's text is its value, and a death by signal
reads "signal:SIGSEGV".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from lce.execution.v1 import execution_pb2 as pb


class Status(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"


TERMINAL: frozenset[Status] = frozenset({Status.COMPLETED, Status.FAILED, Status.TIMEOUT})
UNFINISHED: frozenset[Status] = frozenset({Status.QUEUED, Status.RUNNING})


class Reason(StrEnum):
    NONE = ""  # the run COMPLETED
    COMPILE_ERROR = "compile_error"
    COMPILE_TIME_LIMIT_EXCEEDED = "compile_time_limit_exceeded"
    COMPILE_MEMORY_LIMIT_EXCEEDED = "compile_memory_limit_exceeded"
    RUNTIME_ERROR = "runtime_error"
    SIGNAL = "signal"  # with the signal's name: "signal:SIGSEGV"
    TIME_LIMIT_EXCEEDED_CPU = "time_limit_exceeded:cpu"
    TIME_LIMIT_EXCEEDED_WALL = "time_limit_exceeded:wall"
    MEMORY_LIMIT_EXCEEDED = "memory_limit_exceeded"
    OUTPUT_LIMIT_EXCEEDED = "output_limit_exceeded"
    INTERNAL_ERROR = "internal_error"  # the machinery failed, not the program: execution_service retries it


_STATUS_TO_PROTO = {status: pb.ExecutionStatus.Value(f"EXECUTION_STATUS_{status.name}") for status in Status}
_STATUS_FROM_PROTO = {value: status for status, value in _STATUS_TO_PROTO.items()}
_REASON_TO_PROTO = {
    reason: pb.Reason.Value("REASON_UNSPECIFIED" if reason is Reason.NONE else f"REASON_{reason.name}")
    for reason in Reason
}
_REASON_FROM_PROTO = {value: reason for reason, value in _REASON_TO_PROTO.items()}
_SIGNAL_PREFIX = f"{Reason.SIGNAL.value}:"


def status_to_proto(status: Status) -> int:
    return _STATUS_TO_PROTO[status]


def status_from_proto(value: int) -> Status | None:
    """None for EXECUTION_STATUS_UNSPECIFIED or a value this release does not know."""
    return _STATUS_FROM_PROTO.get(value)


def reason_to_proto(reason: Reason) -> int:
    return _REASON_TO_PROTO[reason]


def reason_from_proto(value: int) -> Reason | None:
    """None for a value this release does not know (REASON_UNSPECIFIED is Reason.NONE)."""
    return _REASON_FROM_PROTO.get(value)


def reason_text(reason: Reason, signal: str = "") -> str:
    """The reason as storage and JSON carry it."""
    return f"{_SIGNAL_PREFIX}{signal}" if reason is Reason.SIGNAL else reason.value


def reason_from_text(text: str) -> tuple[Reason, str]:
    """The reason and signal name of a reason's text (reason_text's inverse)."""
    if text.startswith(_SIGNAL_PREFIX):
        return Reason.SIGNAL, text.removeprefix(_SIGNAL_PREFIX)
    return Reason(text), ""


def reason_text_of(result: pb.RunResult | pb.TestCaseResult) -> str:
    """A RunResult's (or a case's) reason as text; empty for a value this release does not know."""
    reason = _REASON_FROM_PROTO.get(result.reason)
    return reason_text(reason, result.signal) if reason is not None else ""


class CaseStatus(StrEnum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    SKIPPED = "SKIPPED"  # not run: an earlier case did not pass and the suite stops on the first failure


@dataclass(frozen=True)
class CaseOutcome:
    """One test case's verdict in a suite (judge mode)."""

    name: str
    status: CaseStatus
    reason: Reason = Reason.NONE
    signal: str = ""
    passed: bool = False  # it completed, and its stdout matched the expected output when one was given
    stdout: str = ""  # in the run's encoding, cut at the per-case cap
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    exit_code: int | None = None
    execution_time_ms: int = 0
    memory_kb: int = 0

    @property
    def reason_text(self) -> str:
        return reason_text(self.reason, self.signal)

    @property
    def crashed(self) -> bool:
        """The program failed (a crash, a limit), as against a wrong answer or a skip."""
        return self.status in (CaseStatus.FAILED, CaseStatus.TIMEOUT)


@dataclass(frozen=True)
class Stage:
    """What one stage (compile or run) cost."""

    name: str  # "compile" or "run"
    cpu_time_ms: int
    wall_time_ms: int
    memory_kb: int
    exit_code: int | None
    signal: str  # e.g. "SIGKILL"; "" when the stage exited by itself


@dataclass(frozen=True)
class RunOutcome:
    """The end of a run, as an executor reports it and execution_service keeps it."""

    status: Status  # COMPLETED, FAILED or TIMEOUT
    reason: Reason = Reason.NONE
    signal: str = ""  # Reason.SIGNAL: the signal's name
    stdout: str = ""  # in the run's encoding
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    exit_code: int | None = None
    execution_time_ms: int = 0  # wall time of the run stage
    memory_kb: int = 0  # peak memory of the run stage
    stages: tuple[Stage, ...] = ()
    sandbox: str = ""  # the confinement that ran it; "none" under the development override
    tests: tuple[CaseOutcome, ...] = ()  # a test suite's cases, in request order

    @property
    def reason_text(self) -> str:
        return reason_text(self.reason, self.signal)

    @property
    def tests_passed(self) -> int:
        return sum(case.passed for case in self.tests)


# What a run, or one case of a suite, wrote and cost: the same fields in the dataclasses, the
# proto messages and storage (exit_code, optional, is mapped beside them).
OUTPUT_FIELDS = ("stdout", "stderr", "stdout_truncated", "stderr_truncated", "execution_time_ms", "memory_kb")


def output_of(source: RunOutcome | CaseOutcome) -> dict[str, Any]:
    return {name: getattr(source, name) for name in OUTPUT_FIELDS} | {"exit_code": source.exit_code}


def _output_from_proto(message: pb.RunResult | pb.TestCaseResult) -> dict[str, Any]:
    exit_code = message.exit_code if message.HasField("exit_code") else None
    return {name: getattr(message, name) for name in OUTPUT_FIELDS} | {"exit_code": exit_code}


def outcome_to_proto(outcome: RunOutcome) -> pb.RunResult:
    return pb.RunResult(
        status=status_to_proto(outcome.status),
        reason=_REASON_TO_PROTO[outcome.reason],
        signal=outcome.signal,
        **output_of(outcome),
        stages=[_stage_to_proto(stage) for stage in outcome.stages],
        sandbox=outcome.sandbox,
        tests=[_case_to_proto(case) for case in outcome.tests],
    )


def outcome_from_proto(result: pb.RunResult) -> RunOutcome:
    """Raises ValueError for a status or reason this release does not know."""
    status = status_from_proto(result.status)
    reason = _REASON_FROM_PROTO.get(result.reason)
    if status is None or reason is None:
        raise ValueError(f"unknown status {result.status} or reason {result.reason}")
    return RunOutcome(
        status=status,
        reason=reason,
        signal=result.signal,
        **_output_from_proto(result),
        stages=tuple(_stage_from_proto(stage) for stage in result.stages),
        sandbox=result.sandbox,
        tests=tuple(_case_from_proto(case) for case in result.tests),
    )


def _stage_to_proto(stage: Stage) -> pb.StageMetrics:
    return pb.StageMetrics(
        name=stage.name,
        cpu_time_ms=stage.cpu_time_ms,
        wall_time_ms=stage.wall_time_ms,
        memory_kb=stage.memory_kb,
        exit_code=stage.exit_code,
        signal=stage.signal,
    )


def _stage_from_proto(stage: pb.StageMetrics) -> Stage:
    return Stage(
        name=stage.name,
        cpu_time_ms=stage.cpu_time_ms,
        wall_time_ms=stage.wall_time_ms,
        memory_kb=stage.memory_kb,
        exit_code=stage.exit_code if stage.HasField("exit_code") else None,
        signal=stage.signal,
    )


_CASE_STATUS_TO_PROTO = {status: pb.CaseStatus.Value(f"CASE_STATUS_{status.name}") for status in CaseStatus}
_CASE_STATUS_FROM_PROTO = {value: status for status, value in _CASE_STATUS_TO_PROTO.items()}


def _case_to_proto(case: CaseOutcome) -> pb.TestCaseResult:
    return pb.TestCaseResult(
        name=case.name,
        status=_CASE_STATUS_TO_PROTO[case.status],
        reason=_REASON_TO_PROTO[case.reason],
        signal=case.signal,
        passed=case.passed,
        **output_of(case),
    )


def _case_from_proto(case: pb.TestCaseResult) -> CaseOutcome:
    status = _CASE_STATUS_FROM_PROTO.get(case.status)
    reason = _REASON_FROM_PROTO.get(case.reason)
    if status is None or reason is None:
        raise ValueError(f"unknown case status {case.status} or reason {case.reason}")
    return CaseOutcome(
        name=case.name,
        status=status,
        reason=reason,
        signal=case.signal,
        passed=case.passed,
        **_output_from_proto(case),
    )


def case_status_to_proto(status: CaseStatus) -> int:
    return _CASE_STATUS_TO_PROTO[status]


def case_status_name(value: int) -> str:
    """A TestCaseResult's status as JSON shows it."""
    status = _CASE_STATUS_FROM_PROTO.get(value)
    return status.value if status is not None else "UNSPECIFIED"


def case_to_json(case: CaseOutcome) -> dict[str, object]:
    """A case's verdict as storage keeps it: its reason as text."""
    return {
        "name": case.name,
        "status": case.status.value,
        "reason": case.reason_text,
        "passed": case.passed,
        **output_of(case),
    }


def case_from_json(value: dict[str, Any]) -> CaseOutcome:
    reason, signal = reason_from_text(value["reason"])
    kept = {name: value[name] for name in CaseOutcome.__dataclass_fields__ if name not in _DECODED}
    return CaseOutcome(**kept, status=CaseStatus(value["status"]), reason=reason, signal=signal)


_DECODED = ("status", "reason", "signal")
