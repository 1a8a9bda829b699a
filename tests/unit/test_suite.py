"""Judge mode's pure rules (executor/suite.py): a case's verdict, its kept output, the order cases are
handed on in, and the stop on the first failure."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Collection

import pytest

# Imported under another name: pytest would take a class named Test... for tests.
from common.job import Compare, Encoding, ExecutionJob, Suite
from common.job import TestCase as Case
from common.outcome import CaseOutcome, CaseStatus, Reason
from executor.launcher import LimitExceeded, StageOutcome
from executor.suite import MAX_CASE_OUTPUT_BYTES, cap_output, judge_case, run_cases


def ran(
    stdout: bytes = b"",
    stderr: bytes = b"",
    *,
    exit_code: int | None = 0,
    signal: int | None = None,
    limit: LimitExceeded | None = None,
    stdout_truncated: bool = False,
) -> StageOutcome:
    return StageOutcome(
        exit_code=exit_code,
        signal=signal,
        wall_time_ms=7,
        cpu_time_ms=3,
        memory_kb=1234,
        stdout=stdout,
        stderr=stderr,
        stdout_truncated=stdout_truncated,
        stderr_truncated=False,
        limit_exceeded=limit,
    )


def suite_of(
    *cases: Case,
    compare: Compare = Compare.TRIM,
    float_tolerance: float | None = None,
    stop_on_first_failure: bool = False,
) -> Suite:
    return Suite(cases, compare, float_tolerance, stop_on_first_failure)


CASE = Case("square", stdin=b"3\n", expected_output="9\n")


# --- a case's verdict ---


def test_a_matching_answer_passes() -> None:
    outcome = judge_case(CASE, ran(b"9\n"), suite_of(CASE), Encoding.UTF8)
    assert outcome == CaseOutcome(
        name="square",
        status=CaseStatus.COMPLETED,
        passed=True,
        stdout="9\n",
        exit_code=0,
        execution_time_ms=7,
        memory_kb=1234,
    )


def test_a_wrong_answer_completes_without_passing() -> None:
    outcome = judge_case(CASE, ran(b"10\n"), suite_of(CASE), Encoding.UTF8)
    assert (outcome.status, outcome.reason, outcome.passed, outcome.stdout) == (
        CaseStatus.COMPLETED,
        Reason.NONE,
        False,
        "10\n",
    )
    assert not outcome.crashed


def test_without_an_expected_output_completing_is_passing() -> None:
    case = Case("any")
    assert judge_case(case, ran(b"whatever"), suite_of(case), Encoding.UTF8).passed


@pytest.mark.parametrize(
    ("stage", "status", "reason", "signal"),
    [
        (ran(b"9\n", exit_code=1), CaseStatus.FAILED, Reason.RUNTIME_ERROR, ""),
        (ran(b"9\n", exit_code=None, signal=11), CaseStatus.FAILED, Reason.SIGNAL, "SIGSEGV"),
        (ran(b"9\n", exit_code=None, signal=9, limit=LimitExceeded.WALL_TIME), CaseStatus.TIMEOUT,
         Reason.TIME_LIMIT_EXCEEDED_WALL, ""),
        (ran(b"9\n", exit_code=None, signal=9, limit=LimitExceeded.MEMORY), CaseStatus.FAILED,
         Reason.MEMORY_LIMIT_EXCEEDED, ""),
    ],
)  # fmt: skip
def test_a_program_that_fails_does_not_pass_even_with_the_right_output(
    stage: StageOutcome, status: CaseStatus, reason: Reason, signal: str
) -> None:
    outcome = judge_case(CASE, stage, suite_of(CASE), Encoding.UTF8)
    assert (outcome.status, outcome.reason, outcome.signal, outcome.passed) == (status, reason, signal, False)
    assert outcome.crashed
    assert outcome.exit_code == stage.exit_code


@pytest.mark.parametrize(
    ("compare", "tolerance", "expected", "actual", "passed"),
    [
        (Compare.TRIM, None, "1 2\n3\n", "1 2   \n3\n\n\n", True),
        (Compare.TRIM, None, "1 2\n3\n", " 1 2\n3\n", False),
        (Compare.EXACT, None, "1 2\n3\n", "1 2\n3\n", True),
        (Compare.EXACT, None, "1 2\n3\n", "1 2\n3", False),
        (Compare.TOKENS, None, "1 2\n3\n", "1\n2 3", True),
        (Compare.TOKENS, None, "0.5", "0.50001", False),
        (Compare.TOKENS, 1e-3, "0.5", "0.50001", True),
        (Compare.TOKENS, 1e-6, "0.5", "0.50001", False),
    ],
)
def test_each_compare_mode(compare: Compare, tolerance: float | None, expected: str, actual: str, passed: bool) -> None:
    case = Case("c", expected_output=expected)
    suite = suite_of(case, compare=compare, float_tolerance=tolerance)
    assert judge_case(case, ran(actual.encode()), suite, Encoding.UTF8).passed is passed


def test_bytes_that_are_not_utf8_compare_as_replacement_characters() -> None:
    case = Case("c", expected_output="a\ufffdb")
    assert judge_case(case, ran(b"a\xffb"), suite_of(case), Encoding.UTF8).passed


# --- what is kept of a case's output ---


def test_the_whole_output_is_compared_but_only_the_cap_is_kept() -> None:
    text = "".join(f"{n}\n" for n in range(5000))  # about 24 KiB
    case = Case("long", expected_output=text)
    outcome = judge_case(case, ran(text.encode(), b"e" * (MAX_CASE_OUTPUT_BYTES + 1)), suite_of(case), Encoding.UTF8)
    assert outcome.passed
    assert outcome.stdout == text[:MAX_CASE_OUTPUT_BYTES] and outcome.stdout_truncated
    assert outcome.stderr == "e" * MAX_CASE_OUTPUT_BYTES and outcome.stderr_truncated


def test_output_within_the_cap_is_kept_whole_and_not_flagged() -> None:
    text = "x" * MAX_CASE_OUTPUT_BYTES
    outcome = judge_case(Case("c"), ran(text.encode()), suite_of(Case("c")), Encoding.UTF8)
    assert (outcome.stdout, outcome.stdout_truncated) == (text, False)


def test_output_the_launcher_cut_stays_flagged() -> None:
    outcome = judge_case(Case("c"), ran(b"x", stdout_truncated=True), suite_of(Case("c")), Encoding.UTF8)
    assert outcome.stdout_truncated


@pytest.mark.parametrize("character", ["é", "€", "🙂"])
def test_the_cut_never_splits_a_character_of_text(character: str) -> None:
    data = ("a" * (MAX_CASE_OUTPUT_BYTES - 1) + character * 4).encode()
    kept, cut = cap_output(data, Encoding.UTF8)
    assert cut and kept == b"a" * (MAX_CASE_OUTPUT_BYTES - 1)
    assert (
        len(cap_output(("a" * MAX_CASE_OUTPUT_BYTES + character).encode(), Encoding.UTF8)[0]) == MAX_CASE_OUTPUT_BYTES
    )


def test_base64_keeps_exactly_the_first_bytes() -> None:
    data = "é".encode() * MAX_CASE_OUTPUT_BYTES
    outcome = judge_case(Case("c"), ran(data), suite_of(Case("c")), Encoding.BASE64)
    assert base64.b64decode(outcome.stdout) == data[:MAX_CASE_OUTPUT_BYTES]
    assert outcome.stdout_truncated


# --- running the cases: order, stop on the first failure ---


def cases(count: int) -> tuple[Case, ...]:
    return tuple(Case(f"case {index}", stdin=str(index).encode()) for index in range(count))


class Recorder:
    """A run_case whose outcome is planned per case (passed unless listed), and what it was asked to run."""

    def __init__(self, failing: Collection[int] = (), slow: Collection[int] = ()) -> None:
        self.failing = set(failing)
        self.slow = set(slow)
        self.started: list[int] = []
        self.handed_on: list[tuple[int, CaseOutcome]] = []
        self._lock = threading.Lock()

    def run_case(self, case: Case) -> CaseOutcome:
        index = int(case.stdin)
        with self._lock:
            self.started.append(index)
        if index in self.slow:
            time.sleep(0.2)
        if index in self.failing:
            return CaseOutcome(case.name, CaseStatus.FAILED, Reason.RUNTIME_ERROR, exit_code=1)
        return CaseOutcome(case.name, CaseStatus.COMPLETED, passed=True, exit_code=0)

    def on_decided(self, index: int, outcome: CaseOutcome) -> None:
        self.handed_on.append((index, outcome))


@pytest.mark.parametrize("parallel", [1, 4])
def test_every_case_runs_and_is_handed_on_in_request_order(parallel: int) -> None:
    recorder = Recorder(failing={2}, slow={0})  # the first case ends last
    outcomes = run_cases(suite_of(*cases(10)), recorder.run_case, on_decided=recorder.on_decided, parallel=parallel)
    assert sorted(recorder.started) == list(range(10))
    assert [outcome.name for outcome in outcomes] == [f"case {index}" for index in range(10)]
    assert recorder.handed_on == list(enumerate(outcomes))
    assert [outcome.passed for outcome in outcomes] == [index != 2 for index in range(10)]


def test_cases_run_in_parallel() -> None:
    recorder = Recorder(slow=set(range(8)))
    started = time.monotonic()
    run_cases(suite_of(*cases(8)), recorder.run_case, on_decided=recorder.on_decided, parallel=4)
    assert time.monotonic() - started < 0.2 * 8 / 2


def test_after_the_first_failure_the_rest_is_skipped_and_never_run() -> None:
    recorder = Recorder(failing={3, 5})
    suite = suite_of(*cases(8), stop_on_first_failure=True)
    outcomes = run_cases(suite, recorder.run_case, on_decided=recorder.on_decided, parallel=1)
    assert recorder.started == [0, 1, 2, 3]
    assert [outcome.status for outcome in outcomes] == [CaseStatus.COMPLETED] * 3 + [CaseStatus.FAILED] + [
        CaseStatus.SKIPPED
    ] * 4
    assert outcomes[4:] == [CaseOutcome(f"case {index}", CaseStatus.SKIPPED) for index in range(4, 8)]
    assert recorder.handed_on == list(enumerate(outcomes))


def test_a_wrong_answer_stops_the_suite_too() -> None:
    def wrong_at_1(case: Case) -> CaseOutcome:
        return CaseOutcome(case.name, CaseStatus.COMPLETED, passed=case.stdin != b"1")

    suite = suite_of(*cases(4), stop_on_first_failure=True)
    outcomes = run_cases(suite, wrong_at_1, on_decided=lambda index, outcome: None, parallel=1)
    assert [outcome.status for outcome in outcomes] == [CaseStatus.COMPLETED] * 2 + [CaseStatus.SKIPPED] * 2


def test_in_parallel_a_stop_reports_the_same_and_starts_no_case_after_it() -> None:
    # Case 1 fails at once while case 0 runs: cases running beside them are run out, but reported SKIPPED.
    recorder = Recorder(failing={1}, slow={0, 2})
    suite = suite_of(*cases(20), stop_on_first_failure=True)
    outcomes = run_cases(suite, recorder.run_case, on_decided=recorder.on_decided, parallel=3)
    assert [outcome.status for outcome in outcomes] == [CaseStatus.COMPLETED, CaseStatus.FAILED] + [
        CaseStatus.SKIPPED
    ] * 18
    assert recorder.handed_on == list(enumerate(outcomes))
    # Up to three start at once; the thread that ran case 1 finds the stop before it takes another.
    assert {0, 1} <= set(recorder.started) <= {0, 1, 2}


def test_an_earlier_failure_found_later_still_wins() -> None:
    # Case 4 fails first; case 2, slow, fails after: 3 and 4 end up SKIPPED, 2 is the failure.
    recorder = Recorder(failing={2, 4}, slow={2})
    suite = suite_of(*cases(6), stop_on_first_failure=True)
    outcomes = run_cases(suite, recorder.run_case, on_decided=recorder.on_decided, parallel=3)
    assert [outcome.status for outcome in outcomes] == [CaseStatus.COMPLETED] * 2 + [CaseStatus.FAILED] + [
        CaseStatus.SKIPPED
    ] * 3


def test_without_a_stop_every_case_runs_after_a_failure() -> None:
    recorder = Recorder(failing={0})
    outcomes = run_cases(suite_of(*cases(5)), recorder.run_case, on_decided=recorder.on_decided, parallel=1)
    assert recorder.started == [0, 1, 2, 3, 4]
    assert [outcome.status for outcome in outcomes] == [CaseStatus.FAILED] + [CaseStatus.COMPLETED] * 4


def test_a_failure_of_the_machinery_ends_the_suite_and_starts_no_other_case() -> None:
    started: list[bytes] = []

    def broken_at_2(case: Case) -> CaseOutcome:
        started.append(case.stdin)
        if case.stdin == b"2":
            raise OSError("cannot create the cgroup")
        return CaseOutcome(case.name, CaseStatus.COMPLETED, passed=True)

    with pytest.raises(OSError, match="cgroup"):
        run_cases(suite_of(*cases(10)), broken_at_2, on_decided=lambda index, outcome: None, parallel=1)
    assert started == [b"0", b"1", b"2"]


# --- how long RQ lets a suite's job run ---


def test_the_job_timeout_allows_every_case_to_run_to_its_time_limit_one_after_another() -> None:
    plain = ExecutionJob("e", "c", "int main(void){}", time_limit_ms=5000, memory_limit_mb=256)
    suite = ExecutionJob("e", "c", "int main(void){}", 5000, 256, suite=suite_of(*cases(100)))
    assert suite.job_timeout_s - plain.job_timeout_s >= 100 * 5 - 5
    one_case = ExecutionJob("e", "c", "int main(void){}", 5000, 256, suite=suite_of(*cases(1)))
    assert one_case.job_timeout_s >= plain.job_timeout_s
