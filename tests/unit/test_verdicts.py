"""Every verdict the executor can reach, from stage outcomes alone."""

from __future__ import annotations

import base64
import signal
from dataclasses import replace

import pytest

from common.job import Encoding
from common.outcome import Reason, Stage, Status
from executor import verdicts
from executor.launcher import LimitExceeded, StageOutcome

OK = StageOutcome(
    exit_code=0,
    signal=None,
    wall_time_ms=12,
    cpu_time_ms=9,
    memory_kb=8000,
    stdout=b"Hello World\n",
    stderr=b"",
    stdout_truncated=False,
    stderr_truncated=False,
    limit_exceeded=None,
)
KILLED = replace(OK, exit_code=None, signal=signal.SIGKILL)


def test_completed() -> None:
    verdict = verdicts.judge_run(OK)
    assert (verdict.status, verdict.reason) == (Status.COMPLETED, "")
    assert verdict.stdout == "Hello World\n"
    assert verdict.exit_code == 0
    assert (verdict.execution_time_ms, verdict.memory_kb) == (12, 8000)
    assert verdict.stages == (Stage("run", 9, 12, 8000, 0, ""),)


def test_runtime_error() -> None:
    verdict = verdicts.judge_run(replace(OK, exit_code=1, stderr=b"Traceback ...\nZeroDivisionError\n"))
    assert (verdict.status, verdict.reason, verdict.exit_code) == (Status.FAILED, "runtime_error", 1)
    assert "ZeroDivisionError" in verdict.stderr


@pytest.mark.parametrize(
    ("signum", "reason"),
    [
        (signal.SIGSEGV, "signal:SIGSEGV"),
        (signal.SIGABRT, "signal:SIGABRT"),
        (signal.SIGXFSZ, "signal:SIGXFSZ"),  # past the file size limit: no limit of its own, the signal says it
    ],
)
def test_death_by_signal(signum: int, reason: str) -> None:
    verdict = verdicts.judge_run(replace(OK, exit_code=None, signal=signum))
    assert (verdict.status, verdict.reason_text, verdict.exit_code) == (Status.FAILED, reason, None)
    assert verdict.stages[0].signal == reason.removeprefix("signal:")


@pytest.mark.parametrize("code", [126, 127, 128, 137, 139, 152, 153, 159, 255])
def test_a_high_exit_code_is_the_programs_exit_code_not_a_signal(code: int) -> None:
    verdict = verdicts.judge_run(replace(OK, exit_code=code))
    assert (verdict.status, verdict.reason, verdict.exit_code) == (Status.FAILED, "runtime_error", code)
    assert verdict.stages[0].signal == ""


def test_sigxcpu_at_the_cpu_limit_is_a_cpu_timeout_that_names_the_signal() -> None:
    verdict = verdicts.judge_run(
        replace(OK, exit_code=None, signal=signal.SIGXCPU, limit_exceeded=LimitExceeded.CPU_TIME)
    )
    assert (verdict.status, verdict.reason, verdict.exit_code) == (Status.TIMEOUT, "time_limit_exceeded:cpu", None)
    assert verdict.stages[0].signal == "SIGXCPU"


def test_unknown_signal_number_still_names_something() -> None:
    assert verdicts.signal_name(200) == "SIG200"


@pytest.mark.parametrize(
    ("limit", "reason"),
    [
        (LimitExceeded.WALL_TIME, "time_limit_exceeded:wall"),
        (LimitExceeded.CPU_TIME, "time_limit_exceeded:cpu"),
    ],
)
def test_time_limits_are_timeout(limit: LimitExceeded, reason: str) -> None:
    verdict = verdicts.judge_run(replace(KILLED, limit_exceeded=limit, stdout=b"partial"))
    assert (verdict.status, verdict.reason) == (Status.TIMEOUT, reason)
    assert verdict.stdout == "partial"


def test_memory_limit_kill() -> None:
    verdict = verdicts.judge_run(replace(KILLED, limit_exceeded=LimitExceeded.MEMORY))
    assert (verdict.status, verdict.reason) == (Status.FAILED, "memory_limit_exceeded")


def test_java_out_of_memory_error_is_a_memory_limit() -> None:
    stderr = b'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space\n\tat Main.main(Main.java:3)\n'
    verdict = verdicts.judge_run(replace(OK, exit_code=1, stderr=stderr))
    assert (verdict.status, verdict.reason) == (Status.FAILED, "memory_limit_exceeded")


def test_out_of_memory_text_on_a_clean_exit_is_just_output() -> None:
    verdict = verdicts.judge_run(replace(OK, stderr=b"java.lang.OutOfMemoryError is a class name\n"))
    assert verdict.status == Status.COMPLETED


def test_output_limit_keeps_the_first_part_and_flags() -> None:
    outcome = replace(KILLED, stdout=b"y\n" * 100, stdout_truncated=True, limit_exceeded=LimitExceeded.OUTPUT)
    verdict = verdicts.judge_run(outcome)
    assert (verdict.status, verdict.reason) == (Status.FAILED, "output_limit_exceeded")
    assert verdict.stdout == "y\n" * 100
    assert verdict.stdout_truncated and not verdict.stderr_truncated


def test_compile_error_puts_all_compiler_output_in_stderr() -> None:
    compiled = replace(OK, exit_code=1, stdout=b"main.c:1: error: expected ';'\n", stderr=b"1 error\n")
    assert verdicts.compile_failed(compiled)
    verdict = verdicts.compile_error(compiled)
    assert (verdict.status, verdict.reason) == (Status.FAILED, "compile_error")
    assert verdict.stdout == ""
    assert verdict.stderr == "main.c:1: error: expected ';'\n1 error\n"
    assert verdict.exit_code is None
    assert [stage.name for stage in verdict.stages] == ["compile"]
    assert verdict.stages[0].exit_code == 1


@pytest.mark.parametrize(
    ("limit", "status", "reason"),
    [
        (LimitExceeded.WALL_TIME, Status.TIMEOUT, "compile_time_limit_exceeded"),
        (LimitExceeded.CPU_TIME, Status.TIMEOUT, "compile_time_limit_exceeded"),
        (LimitExceeded.MEMORY, Status.FAILED, "compile_memory_limit_exceeded"),
        (LimitExceeded.OUTPUT, Status.FAILED, "compile_error"),
    ],
)
def test_compiler_stopped_by_a_limit_has_that_limit_as_its_verdict(
    limit: LimitExceeded, status: Status, reason: str
) -> None:
    compiled = replace(KILLED, stdout=b"", limit_exceeded=limit)
    assert verdicts.compile_failed(compiled)
    verdict = verdicts.compile_error(compiled)
    assert (verdict.status, verdict.reason) == (status, reason)
    assert f"compilation stopped: {limit.value}" in verdict.stderr
    assert verdict.stages[0].signal == "SIGKILL"


def test_base64_encoding_carries_the_exact_bytes() -> None:
    raw = b"\xff\xfe not utf-8 \x00\n"
    verdict = verdicts.judge_run(replace(OK, stdout=raw, stderr=b"\x80"), encoding=Encoding.BASE64)
    assert base64.b64decode(verdict.stdout, validate=True) == raw
    assert base64.b64decode(verdict.stderr, validate=True) == b"\x80"
    assert verdicts.judge_run(replace(OK, stdout=raw)).stdout == "\ufffd\ufffd not utf-8 \ufffd\n"


def test_a_nul_in_text_output_becomes_a_replacement_character() -> None:
    verdict = verdicts.judge_run(replace(OK, stdout=b"a\0b", stderr=b"\0"))
    assert (verdict.stdout, verdict.stderr) == ("a\ufffdb", "\ufffd")
    assert base64.b64decode(verdicts.judge_run(replace(OK, stdout=b"a\0b"), encoding=Encoding.BASE64).stdout) == b"a\0b"


def test_base64_encoding_of_a_compile_error() -> None:
    failed = replace(OK, exit_code=1, stdout=b"\xff", stderr=b"error\n")
    verdict = verdicts.compile_error(failed, Encoding.BASE64)
    assert base64.b64decode(verdict.stderr, validate=True) == b"\xfferror\n"


def test_successful_compile_is_not_a_failure_and_both_stages_are_reported() -> None:
    compiled = replace(OK, stdout=b"", wall_time_ms=380, cpu_time_ms=300, memory_kb=90_000)
    assert not verdicts.compile_failed(compiled)
    verdict = verdicts.judge_run(OK, compiled)
    assert [stage.name for stage in verdict.stages] == ["compile", "run"]
    assert verdict.stages[0] == Stage("compile", 300, 380, 90_000, 0, "")
    assert verdict.execution_time_ms == OK.wall_time_ms  # the run stage only


def test_internal_error() -> None:
    verdict = verdicts.internal_error("no such language")
    assert (verdict.status, verdict.reason, verdict.stderr) == (Status.FAILED, "internal_error", "no such language")


def test_output_is_decoded_leniently() -> None:
    verdict = verdicts.judge_run(replace(OK, stdout=b"caf\xc3\xa9 \xff\xfe"))
    assert verdict.stdout == "café \ufffd\ufffd"


def test_every_reason_is_reachable() -> None:
    reached = {
        verdicts.judge_run(replace(OK, exit_code=1)).reason,
        verdicts.compile_error(replace(OK, exit_code=1)).reason,
        verdicts.internal_error("x").reason,
        verdicts.judge_run(replace(OK, exit_code=None, signal=signal.SIGSEGV)).reason,
        *(verdicts.judge_run(replace(KILLED, limit_exceeded=limit)).reason for limit in LimitExceeded),
        *(verdicts.compile_error(replace(KILLED, limit_exceeded=limit)).reason for limit in LimitExceeded),
    }
    assert reached | {Reason.NONE} == set(Reason)
