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


def reason_text(reason: Reason, signal: str = "") -> str:
    """The reason as storage and JSON carry it."""
    return f"{_SIGNAL_PREFIX}{signal}" if reason is Reason.SIGNAL else reason.value


def reason_from_text(text: str) -> tuple[Reason, str]:
    """The reason and signal name of a reason's text (reason_text's inverse)."""
    if text.startswith(_SIGNAL_PREFIX):
        return Reason.SIGNAL, text.removeprefix(_SIGNAL_PREFIX)
    return Reason(text), ""


def reason_text_of(result: pb.RunResult) -> str:
    """A RunResult's reason as text; empty for a value this release does not know."""
    reason = _REASON_FROM_PROTO.get(result.reason)
    return reason_text(reason, result.signal) if reason is not None else ""


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

    @property
    def reason_text(self) -> str:
        return reason_text(self.reason, self.signal)


def outcome_to_proto(outcome: RunOutcome) -> pb.RunResult:
    return pb.RunResult(
        status=status_to_proto(outcome.status),
        reason=_REASON_TO_PROTO[outcome.reason],
        signal=outcome.signal,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated,
        exit_code=outcome.exit_code,
        execution_time_ms=outcome.execution_time_ms,
        memory_kb=outcome.memory_kb,
        stages=[_stage_to_proto(stage) for stage in outcome.stages],
        sandbox=outcome.sandbox,
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
        stdout=result.stdout,
        stderr=result.stderr,
        stdout_truncated=result.stdout_truncated,
        stderr_truncated=result.stderr_truncated,
        exit_code=result.exit_code if result.HasField("exit_code") else None,
        execution_time_ms=result.execution_time_ms,
        memory_kb=result.memory_kb,
        stages=tuple(_stage_from_proto(stage) for stage in result.stages),
        sandbox=result.sandbox,
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
