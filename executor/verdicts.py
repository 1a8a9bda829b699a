"""From stage outcomes to a verdict: the documented status plus the finer reason and per-stage metrics.

Pure functions over executor.launcher.StageOutcome, so every rule here is testable without
running anything. A program's own failure is a verdict, never an exception.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import StrEnum

from common.job import Encoding, encode_output
from executor.launcher import LimitExceeded, StageOutcome

# Runtimes that catch their own allocation failure and exit instead of being killed.
_OUT_OF_MEMORY_MARKERS: tuple[bytes, ...] = (b"java.lang.OutOfMemoryError",)


class Status(StrEnum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"


class Reason(StrEnum):
    NONE = ""
    COMPILE_ERROR = "compile_error"
    COMPILE_TIME = "compile_time_limit_exceeded"
    COMPILE_MEMORY = "compile_memory_limit_exceeded"
    RUNTIME_ERROR = "runtime_error"
    WALL_TIME = LimitExceeded.WALL_TIME.value
    CPU_TIME = LimitExceeded.CPU_TIME.value
    MEMORY = LimitExceeded.MEMORY.value
    OUTPUT = LimitExceeded.OUTPUT.value
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class StageMetrics:
    name: str  # "compile" or "run"
    cpu_time_ms: int
    wall_time_ms: int
    memory_kb: int
    exit_code: int | None
    signal: str  # e.g. "SIGKILL"; "" when the stage exited by itself


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str  # a Reason, or "signal:SIGSEGV" style for a death by signal
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    exit_code: int | None = None
    execution_time_ms: int = 0  # wall time of the run stage
    memory_kb: int = 0  # peak memory of the run stage
    stages: tuple[StageMetrics, ...] = ()


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


def stage_metrics(name: str, outcome: StageOutcome) -> StageMetrics:
    return StageMetrics(
        name=name,
        cpu_time_ms=outcome.cpu_time_ms,
        wall_time_ms=outcome.wall_time_ms,
        memory_kb=outcome.memory_kb,
        exit_code=outcome.exit_code,
        signal=signal_name(outcome.signal) if outcome.signal is not None else "",
    )


def compile_failed(outcome: StageOutcome) -> bool:
    return outcome.exit_code != 0 or outcome.limit_exceeded is not None


_COMPILE_ERROR = (Status.FAILED, Reason.COMPILE_ERROR)
# A compile stopped at one of its limits has that limit as its verdict; any other failure is the program's.
_COMPILE_LIMITS: dict[LimitExceeded, tuple[Status, Reason]] = {
    LimitExceeded.CPU_TIME: (Status.TIMEOUT, Reason.COMPILE_TIME),
    LimitExceeded.WALL_TIME: (Status.TIMEOUT, Reason.COMPILE_TIME),
    LimitExceeded.MEMORY: (Status.FAILED, Reason.COMPILE_MEMORY),
}


def compile_error(outcome: StageOutcome, encoding: Encoding = Encoding.UTF8) -> Verdict:
    """The compile failed: the compiler's whole output (it may write errors to either stream) in stderr."""
    message = outcome.stdout + outcome.stderr
    if outcome.limit_exceeded is not None:
        message += f"\ncompilation stopped: {outcome.limit_exceeded.value}\n".encode()
    elif outcome.signal is not None:
        message += f"\ncompilation stopped: {signal_name(outcome.signal)}\n".encode()
    limit = outcome.limit_exceeded
    status, reason = _COMPILE_LIMITS.get(limit, _COMPILE_ERROR) if limit else _COMPILE_ERROR
    return Verdict(
        status=status,
        reason=reason,
        stderr=encode_output(message, encoding),
        stderr_truncated=outcome.stdout_truncated or outcome.stderr_truncated,
        stages=(stage_metrics("compile", outcome),),
    )


def judge_run(run: StageOutcome, compiled: StageOutcome | None = None, encoding: Encoding = Encoding.UTF8) -> Verdict:
    """The verdict on a program that ran (after a successful compile stage, when there was one)."""
    stages = (*((stage_metrics("compile", compiled),) if compiled else ()), stage_metrics("run", run))
    status, reason = _classify(run)
    return Verdict(
        status=status,
        reason=reason,
        stdout=encode_output(run.stdout, encoding),
        stderr=encode_output(run.stderr, encoding),
        stdout_truncated=run.stdout_truncated,
        stderr_truncated=run.stderr_truncated,
        exit_code=run.exit_code,
        execution_time_ms=run.wall_time_ms,
        memory_kb=run.memory_kb,
        stages=stages,
    )


def _classify(run: StageOutcome) -> tuple[Status, str]:
    if run.limit_exceeded in (LimitExceeded.WALL_TIME, LimitExceeded.CPU_TIME):
        return Status.TIMEOUT, run.limit_exceeded.value
    if run.limit_exceeded is not None:
        return Status.FAILED, run.limit_exceeded.value
    if run.exit_code != 0 and any(marker in run.stderr for marker in _OUT_OF_MEMORY_MARKERS):
        return Status.FAILED, Reason.MEMORY
    if run.signal is not None:
        return Status.FAILED, f"signal:{signal_name(run.signal)}"
    if run.exit_code != 0:
        return Status.FAILED, Reason.RUNTIME_ERROR
    return Status.COMPLETED, Reason.NONE


def internal_error(message: str) -> Verdict:
    """LCE itself failed to run the program: say so without blaming the program. Never a run's final
    result (execution_service retries it, then writes its own), so its text is plain whatever the encoding."""
    return Verdict(status=Status.FAILED, reason=Reason.INTERNAL_ERROR, stderr=message)
