"""From stage outcomes to a verdict: the documented status plus the finer reason and per-stage metrics.

Pure functions over executor.launcher.StageOutcome, so every rule here is testable without
running anything. A program's own failure is a verdict, never an exception.
"""

from __future__ import annotations

import signal

from common.job import Encoding, encode_output
from common.outcome import Reason, RunOutcome, Stage, Status
from executor.launcher import LimitExceeded, StageOutcome

# Runtimes that catch their own allocation failure and exit instead of being killed.
_OUT_OF_MEMORY_MARKERS: tuple[bytes, ...] = (b"java.lang.OutOfMemoryError",)


# A verdict is the run's outcome as common/outcome.py defines it; the sandbox is named when it is reported.
Verdict = RunOutcome

# The limit that stopped a program, as the reason it ended.
_LIMIT_REASONS: dict[LimitExceeded, Reason] = {
    LimitExceeded.WALL_TIME: Reason.TIME_LIMIT_EXCEEDED_WALL,
    LimitExceeded.CPU_TIME: Reason.TIME_LIMIT_EXCEEDED_CPU,
    LimitExceeded.MEMORY: Reason.MEMORY_LIMIT_EXCEEDED,
    LimitExceeded.OUTPUT: Reason.OUTPUT_LIMIT_EXCEEDED,
}


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


def stage_metrics(name: str, outcome: StageOutcome) -> Stage:
    return Stage(
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
    LimitExceeded.CPU_TIME: (Status.TIMEOUT, Reason.COMPILE_TIME_LIMIT_EXCEEDED),
    LimitExceeded.WALL_TIME: (Status.TIMEOUT, Reason.COMPILE_TIME_LIMIT_EXCEEDED),
    LimitExceeded.MEMORY: (Status.FAILED, Reason.COMPILE_MEMORY_LIMIT_EXCEEDED),
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
    status, reason, signal_killed_by = _classify(run)
    return Verdict(
        status=status,
        reason=reason,
        signal=signal_killed_by,
        stdout=encode_output(run.stdout, encoding),
        stderr=encode_output(run.stderr, encoding),
        stdout_truncated=run.stdout_truncated,
        stderr_truncated=run.stderr_truncated,
        exit_code=run.exit_code,
        execution_time_ms=run.wall_time_ms,
        memory_kb=run.memory_kb,
        stages=stages,
    )


def _classify(run: StageOutcome) -> tuple[Status, Reason, str]:
    """Status, reason and the signal's name (a death by signal)."""
    if run.limit_exceeded in (LimitExceeded.WALL_TIME, LimitExceeded.CPU_TIME):
        return Status.TIMEOUT, _LIMIT_REASONS[run.limit_exceeded], ""
    if run.limit_exceeded is not None:
        return Status.FAILED, _LIMIT_REASONS[run.limit_exceeded], ""
    if run.exit_code != 0 and any(marker in run.stderr for marker in _OUT_OF_MEMORY_MARKERS):
        return Status.FAILED, Reason.MEMORY_LIMIT_EXCEEDED, ""
    if run.signal is not None:
        return Status.FAILED, Reason.SIGNAL, signal_name(run.signal)
    if run.exit_code != 0:
        return Status.FAILED, Reason.RUNTIME_ERROR, ""
    return Status.COMPLETED, Reason.NONE, ""


def internal_error(message: str) -> Verdict:
    """LCE itself failed to run the program: say so without blaming the program. Never a run's final
    result (execution_service retries it, then writes its own), so its text is plain whatever the encoding."""
    return Verdict(status=Status.FAILED, reason=Reason.INTERNAL_ERROR, stderr=message)
