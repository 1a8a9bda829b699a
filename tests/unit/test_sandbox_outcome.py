"""How the sandboxed launcher reads a run's end: the program's wait status as the sandbox's init told it,
the executor's own timers and the cgroup's events for limits, and never bwrap's exit code."""

from __future__ import annotations

import signal
from dataclasses import replace

import pytest

from executor.launcher import LimitExceeded, Limits
from executor.process import Captured
from executor.sandbox.confined import SandboxFailed, _outcome
from executor.sandbox.prespawn import Ran, Usage

LIMITS = Limits(wall_time_ms=2000, cpu_time_ms=1000, memory_mb=64)
# bwrap's monitor ends as its init did: exit code 0 once the init has told the status.
BWRAP_DONE = Captured(
    returncode=0,
    signal=None,
    wall_time_ms=5,
    cpu_time_ms=1,
    maxrss_kb=2000,
    stdout=b"",
    stderr=b"",
    stdout_truncated=False,
    stderr_truncated=False,
    timed_out=False,
    output_exceeded=False,
)
QUIET = Usage(cpu_time_ms=3, memory_kb=1000, oom_kills=0)


def exited(code: int) -> int:
    """The wait status of exit(code)."""
    return code << 8


def ran(program_status: int | None, captured: Captured = BWRAP_DONE, usage: Usage = QUIET) -> Ran:
    return Ran(captured, usage, cpu_killed=False, program_status=program_status)


@pytest.mark.parametrize("code", [0, 1, 126, 127, 128, 137, 139, 152, 153, 159, 255])
def test_an_exit_is_its_exit_code_whatever_its_value(code: int) -> None:
    # bwrap would have exited with the same code: read as 128 + N, it looked like a signal.
    outcome = _outcome(ran(exited(code), replace(BWRAP_DONE, returncode=code)), LIMITS)
    assert (outcome.exit_code, outcome.signal, outcome.limit_exceeded) == (code, None, None)


@pytest.mark.parametrize(
    ("signo", "limit"),
    [
        (signal.SIGSEGV, None),
        (signal.SIGABRT, None),
        (signal.SIGXFSZ, None),
        (signal.SIGXCPU, None),  # raised by the program, or its own lowered RLIMIT_CPU: not our limit
    ],
)
def test_a_death_by_signal_is_that_signal(signo: int, limit: LimitExceeded | None) -> None:
    outcome = _outcome(ran(signo), LIMITS)  # a wait status of a death by signal is the signal's number
    assert (outcome.exit_code, outcome.signal, outcome.limit_exceeded) == (None, signo, limit)


@pytest.mark.parametrize(
    ("killed", "limit"),
    [
        (ran(None, replace(BWRAP_DONE, timed_out=True)), LimitExceeded.WALL_TIME),
        (ran(None, replace(BWRAP_DONE, output_exceeded=True)), LimitExceeded.OUTPUT),
        (replace(ran(None), cpu_killed=True), LimitExceeded.CPU_TIME),
        (ran(None, usage=replace(QUIET, oom_kills=1)), LimitExceeded.MEMORY),
    ],
    ids=["wall", "output", "cpu", "memory"],
)
def test_a_kill_at_a_limit_that_took_the_init_too_is_a_sigkill_at_that_limit(killed: Ran, limit: LimitExceeded) -> None:
    outcome = _outcome(killed, LIMITS)
    assert (outcome.exit_code, outcome.signal, outcome.limit_exceeded) == (None, signal.SIGKILL, limit)


def test_the_limits_come_from_the_executor_whatever_the_program_says() -> None:
    # The init told a clean exit, but the wall clock had run out first.
    outcome = _outcome(ran(exited(0), replace(BWRAP_DONE, timed_out=True)), LIMITS)
    assert (outcome.exit_code, outcome.limit_exceeded) == (0, LimitExceeded.WALL_TIME)


def test_no_status_and_no_limit_is_the_sandboxs_failure_not_the_programs() -> None:
    broken = ran(None, replace(BWRAP_DONE, returncode=1, stderr=b"bwrap: Can't mount proc on /newroot/proc\n"))
    with pytest.raises(SandboxFailed, match="Can't mount proc"):
        _outcome(broken, LIMITS)


def test_our_rlimit_cpu_backstop_is_the_cpu_limit() -> None:
    """RLIMIT_CPU is set a second past the limit: when it strikes, the cgroup's CPU time says so."""
    over = replace(QUIET, cpu_time_ms=LIMITS.cpu_time_ms + 1000)
    outcome = _outcome(ran(signal.SIGXCPU, usage=over), LIMITS)
    assert (outcome.signal, outcome.limit_exceeded) == (signal.SIGXCPU, LimitExceeded.CPU_TIME)
