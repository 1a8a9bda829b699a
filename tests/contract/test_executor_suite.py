"""Judge mode through a real executor: test suites as RQ jobs on a real Redis, reported to a stand-in
ExecutorReportService over a real channel, their cases run on the real toolchains (unconfined, as
tests/contract/test_executor.py does; one suite through the sandbox too)."""

from __future__ import annotations

import base64
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from common.grpc_server import RunningServer, start_server
from common.job import Compare, Encoding, SourceFile, Suite
from common.job import TestCase as Case  # pytest would take a class named Test... for tests
from common.outcome import CaseOutcome, CaseStatus, Reason, RunOutcome, Status, outcome_from_proto
from common.run_events import Kind, RunEvents, decode_entry, stream_key
from executor import jobs
from executor.compile_cache import CompileCache
from executor.launcher import Launcher
from executor.process import UnconfinedLauncher
from executor.sandbox.detect import detect
from executor.settings import ExecutorConfig
from executor.suite import MAX_CASE_OUTPUT_BYTES
from tests.c_programs import SELF_REWRITING_C
from tests.contract.test_executor import OUTPUT_LIMIT, Executor, StandInReports

# Does what its stdin says: "square N", "sleep", "crash", "exit N", "args" (prints its arguments).
ACTIONS_C = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char how[16] = "";
    long n = 0;
    if (scanf("%15s %ld", how, &n) < 1) return 2;
    if (strcmp(how, "square") == 0) { printf("%ld\n", n * n); return 0; }
    if (strcmp(how, "sleep") == 0) { sleep(30); return 0; }
    if (strcmp(how, "crash") == 0) return *(volatile int *)NULL;
    if (strcmp(how, "exit") == 0) return (int)n;
    if (strcmp(how, "args") == 0) { for (int i = 1; i < argc; i++) puts(argv[i]); return 0; }
    return 2;
}
"""
SQUARE_PY = "n = int(input())\nprint(n * n)\n"
# Fresh unless an earlier case's file is still there.
MARKING_PY = (
    "import os\nseen = os.path.exists('mark')\nopen('mark', 'w').write('x')\nprint('seen' if seen else 'fresh')\n"
)


class SuiteExecutor(Executor):
    """The contract tests' executor, with a run event stream and a compile cache of its own."""

    def __init__(
        self,
        redis_url: str,
        reports: tuple[StandInReports, RunningServer],
        work_root: Path,
        launcher: Launcher | None = None,
    ) -> None:
        super().__init__(redis_url, reports[1].port, work_root)
        self.servicer = reports[0]
        self.events = RunEvents.from_url(redis_url)
        self.cache = CompileCache(work_root.parent / "compile-cache", 64 * 1024 * 1024)
        jobs.install(
            jobs.Runtime(
                launcher=launcher or UnconfinedLauncher(work_root),
                reports=self.reports,
                output_limit_bytes=OUTPUT_LIMIT,
                compile_cache=self.cache,
                events=self.events,
            )
        )

    def run_suite(self, language: str, source: str, suite: Suite, **options: Any) -> tuple[str, RunOutcome]:
        execution_id = self.enqueue(language, source, suite=suite, **options).args[0]["execution_id"]
        self.work()
        return execution_id, outcome_from_proto(self.servicer.results[execution_id].result)

    def test_events(self, execution_id: str) -> list[dict[str, Any]]:
        entries = redis.Redis.from_url(self.config.redis_url).xrange(stream_key(execution_id))
        decoded = [decode_entry(fields) for _, fields in entries]
        return [fields for kind, fields in decoded if kind == Kind.TEST]


@pytest.fixture
def reports() -> Iterator[tuple[StandInReports, RunningServer]]:
    servicer = StandInReports()
    server = start_server("127.0.0.1:0", servicer.register, ["lce.execution.v1.ExecutorReportService"])
    yield servicer, server
    server.stop(1)


@pytest.fixture
def executor(redis_url: str, reports: tuple[StandInReports, RunningServer], tmp_path: Path) -> Iterator[SuiteExecutor]:
    executor = SuiteExecutor(redis_url, reports, tmp_path / "runs")
    yield executor
    executor.close()


def statuses(outcome: RunOutcome) -> list[tuple[str, CaseStatus, str, bool]]:
    return [(case.name, case.status, case.reason_text, case.passed) for case in outcome.tests]


def suite_of(*cases: Case, **options: Any) -> Suite:
    return Suite(cases, **options)


def test_a_c_suite_is_compiled_once_and_each_case_judged(executor: SuiteExecutor) -> None:
    suite = suite_of(
        Case("square", stdin=b"square 3\n", expected_output="9\n"),
        Case("wrong", stdin=b"square 4\n", expected_output="15\n"),
        Case("hangs", stdin=b"sleep\n", expected_output=""),
        Case("crashes", stdin=b"crash\n"),
        Case("args", stdin=b"args\n", args=("a b", "c"), expected_output="a b\nc\n"),
        Case("exits 3", stdin=b"exit 3\n"),
        Case("no expectation", stdin=b"exit 0\n"),
    )
    started = time.monotonic()
    _, outcome = executor.run_suite("c", ACTIONS_C, suite, time_limit_ms=1000)
    # The hanging case costs its own time limit, not the suite's.
    assert time.monotonic() - started < 10
    assert (outcome.status, outcome.reason) == (Status.COMPLETED, Reason.NONE)
    assert [stage.name for stage in outcome.stages] == ["compile"]
    assert statuses(outcome) == [
        ("square", CaseStatus.COMPLETED, "", True),
        ("wrong", CaseStatus.COMPLETED, "", False),
        ("hangs", CaseStatus.TIMEOUT, "time_limit_exceeded:wall", False),
        ("crashes", CaseStatus.FAILED, "signal:SIGSEGV", False),
        ("args", CaseStatus.COMPLETED, "", True),
        ("exits 3", CaseStatus.FAILED, "runtime_error", False),
        ("no expectation", CaseStatus.COMPLETED, "", True),
    ]
    assert outcome.tests_passed == 3
    by_name = {case.name: case for case in outcome.tests}
    assert (by_name["square"].stdout, by_name["wrong"].stdout, by_name["exits 3"].exit_code) == ("9\n", "16\n", 3)
    assert by_name["hangs"].execution_time_ms >= 1000
    assert outcome.execution_time_ms == sum(case.execution_time_ms for case in outcome.tests)
    assert outcome.memory_kb == max(case.memory_kb for case in outcome.tests) > 0
    assert (outcome.stdout, outcome.stderr, outcome.exit_code) == ("", "", None)


def test_a_second_suite_of_the_same_source_takes_the_build_from_the_compile_cache(executor: SuiteExecutor) -> None:
    source = f"{ACTIONS_C}/* {uuid.uuid4()} */\n"
    suite = suite_of(*(Case(f"{n}", stdin=f"square {n}\n".encode(), expected_output=f"{n * n}\n") for n in range(5)))
    _, first = executor.run_suite("c", source, suite)
    _, second = executor.run_suite("c", source, suite)
    assert [stage.name for stage in first.stages] == ["compile"]
    assert second.stages == ()
    assert first.tests_passed == second.tests_passed == 5


def test_each_case_starts_in_a_fresh_work_dir(executor: SuiteExecutor) -> None:
    suite = suite_of(*(Case(f"case {n}", expected_output="fresh\n") for n in range(6)))
    _, outcome = executor.run_suite("python", MARKING_PY, suite)
    assert [case.stdout for case in outcome.tests] == ["fresh\n"] * 6
    assert outcome.tests_passed == 6


def test_a_case_that_rewrites_the_binary_does_not_change_the_next_cases(executor: SuiteExecutor) -> None:
    tag = uuid.uuid4().hex
    suite = suite_of(*(Case(f"case {n}", expected_output=f"original {tag}\n") for n in range(4)))
    _, outcome = executor.run_suite("c", SELF_REWRITING_C.replace("TAG", tag), suite)
    assert outcome.tests_passed == 4, statuses(outcome)


def test_the_programs_files_and_build_reach_every_case(executor: SuiteExecutor) -> None:
    """Java: classes in a package folder, compiled once, placed in each case's work dir."""
    helper = SourceFile("util/Helper.java", "package util;\npublic class Helper { public static int twice(int n) "
                        "{ return 2 * n; } }\n")  # fmt: skip
    main = (
        "import util.Helper;\npublic class Main { public static void main(String[] a) {\n"
        "System.out.println(Helper.twice(new java.util.Scanner(System.in).nextInt())); } }\n"
    )
    suite = suite_of(*(Case(f"{n}", stdin=f"{n}\n".encode(), expected_output=f"{2 * n}\n") for n in range(3)))
    _, outcome = executor.run_suite("java", main, suite, files=(helper,), time_limit_ms=10_000)
    assert [stage.name for stage in outcome.stages] == ["compile"]
    assert outcome.tests_passed == 3, [case.stderr for case in outcome.tests]


def test_an_interpreted_suite_has_no_stage_and_sees_its_files(executor: SuiteExecutor) -> None:
    helper = SourceFile("helper.py", "def square(n):\n    return n * n\n")
    source = "import helper\nprint(helper.square(int(input())))\n"
    suite = suite_of(*(Case(f"{n}", stdin=f"{n}\n".encode(), expected_output=f"{n * n}\n") for n in range(3)))
    _, outcome = executor.run_suite("python", source, suite, files=(helper,))
    assert outcome.stages == ()
    assert outcome.tests_passed == 3


def test_stop_on_first_failure_skips_the_rest(executor: SuiteExecutor) -> None:
    cases = [Case(f"{n}", stdin=f"{n}\n".encode(), expected_output=f"{n * n}\n") for n in range(6)]
    cases[2] = Case("2", stdin=b"2\n", expected_output="5\n")
    execution_id, outcome = executor.run_suite("python", SQUARE_PY, suite_of(*cases, stop_on_first_failure=True))
    assert outcome.status == Status.COMPLETED
    assert [(case.status, case.passed) for case in outcome.tests] == [
        (CaseStatus.COMPLETED, True),
        (CaseStatus.COMPLETED, True),
        (CaseStatus.COMPLETED, False),
        *[(CaseStatus.SKIPPED, False)] * 3,
    ]
    assert outcome.tests[3:] == tuple(CaseOutcome(f"{n}", CaseStatus.SKIPPED) for n in range(3, 6))
    assert outcome.execution_time_ms == sum(case.execution_time_ms for case in outcome.tests[:3])
    assert [event["status"] for event in executor.test_events(execution_id)] == ["COMPLETED"] * 3 + ["SKIPPED"] * 3


@pytest.mark.parametrize(
    ("compare", "tolerance", "printed", "expected", "passed"),
    [
        (Compare.TRIM, None, "1 2  \\n3\\n\\n", "1 2\n3", True),
        (Compare.TRIM, None, "1  2\\n3\\n", "1 2\n3\n", False),
        (Compare.EXACT, None, "1 2\\n3\\n", "1 2\n3\n", True),
        (Compare.EXACT, None, "1 2\\n3\\n", "1 2\n3", False),
        (Compare.TOKENS, None, "1  2\\n\\n3", "1 2 3\n", True),
        (Compare.TOKENS, None, "0.333333", "0.3333333333\n", False),
        (Compare.TOKENS, 1e-5, "0.333333", "0.3333333333\n", True),
    ],
)
def test_each_compare_mode(
    executor: SuiteExecutor, compare: Compare, tolerance: float | None, printed: str, expected: str, passed: bool
) -> None:
    suite = suite_of(Case("only", expected_output=expected), compare=compare, float_tolerance=tolerance)
    _, outcome = executor.run_suite("python", f"import sys\nsys.stdout.write('{printed}')\n", suite)
    [case] = outcome.tests
    assert (case.status, case.passed) == (CaseStatus.COMPLETED, passed)


def test_a_compile_error_fails_the_run_and_skips_every_case(executor: SuiteExecutor) -> None:
    suite = suite_of(Case("a", expected_output="1\n"), Case("b"))
    execution_id, outcome = executor.run_suite("c", "int main(void) { return missing; }\n", suite)
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.COMPILE_ERROR)
    assert "missing" in outcome.stderr
    assert [stage.name for stage in outcome.stages] == ["compile"]
    assert outcome.tests == (CaseOutcome("a", CaseStatus.SKIPPED), CaseOutcome("b", CaseStatus.SKIPPED))
    assert [(event["index"], event["status"]) for event in executor.test_events(execution_id)] == [
        (0, "SKIPPED"),
        (1, "SKIPPED"),
    ]


def test_each_verdict_is_appended_to_the_run_events_in_order(executor: SuiteExecutor) -> None:
    cases = [Case(f"case {n}", stdin=f"{n}\n".encode(), expected_output=f"{n * n}\n") for n in range(8)]
    cases[5] = Case("case 5", stdin=b"x\n", expected_output="25\n")  # int("x") raises
    execution_id, outcome = executor.run_suite("python", SQUARE_PY, suite_of(*cases), attempt=2)
    events = executor.test_events(execution_id)
    assert events == [
        {
            "attempt": 2,
            "index": index,
            "name": f"case {index}",
            "status": "FAILED" if index == 5 else "COMPLETED",
            "reason": "runtime_error" if index == 5 else "",
            "passed": index != 5,
        }
        for index in range(8)
    ]
    assert [case.passed for case in outcome.tests] == [event["passed"] for event in events]


def test_a_case_keeps_a_capped_share_of_its_output(executor: SuiteExecutor) -> None:
    # Over the kept share, under the run's output limit (OUTPUT_LIMIT): compared whole, kept in part.
    source = "import sys\nsys.stdout.write('x' * 50_000)\nsys.stderr.write('e' * 10)\n"
    suite = suite_of(Case("big", expected_output="x" * 50_000))
    _, outcome = executor.run_suite("python", source, suite)
    [case] = outcome.tests
    assert case.passed
    assert (case.stdout, case.stdout_truncated) == ("x" * MAX_CASE_OUTPUT_BYTES, True)
    assert (case.stderr, case.stderr_truncated) == ("e" * 10, False)


def test_base64_cases_carry_their_bytes(executor: SuiteExecutor) -> None:
    source = "import sys\nsys.stdout.buffer.write(bytes([0, 255, 10]))\n"
    _, outcome = executor.run_suite("python", source, suite_of(Case("bytes")), encoding=Encoding.BASE64)
    [case] = outcome.tests
    assert base64.b64decode(case.stdout) == b"\x00\xff\n"


# --- through the sandbox: cases side by side, each in a sandbox of its own ---


@pytest.fixture
def sandboxed(redis_url: str, reports: tuple[StandInReports, RunningServer], tmp_path: Path) -> Iterator[SuiteExecutor]:
    # Not under pytest's tmp_path: that is 0700 root, which the slot uids could not traverse.
    work_root = Path(f"/tmp/lce-suite-{uuid.uuid4().hex[:8]}")
    launcher = detect(ExecutorConfig.from_env().sandbox_mode, work_root)
    executor = SuiteExecutor(redis_url, reports, tmp_path / "runs", launcher)
    try:
        yield executor
    finally:
        executor.close()
        launcher.close()
        shutil.rmtree(work_root, ignore_errors=True)


MARKING_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) {
    long n = 0;
    int seen = access("mark", F_OK) == 0;
    FILE *mark = fopen("mark", "w");
    if (mark == NULL || scanf("%ld", &n) != 1) return 2;
    printf("%s %ld\n", seen ? "seen" : "fresh", n * n);
    return 0;
}
"""


def test_sandboxed_cases_each_get_a_fresh_sandbox(sandboxed: SuiteExecutor) -> None:
    suite = suite_of(*(Case(f"{n}", stdin=f"{n}\n".encode(), expected_output=f"fresh {n * n}\n") for n in range(12)))
    _, outcome = sandboxed.run_suite("c", MARKING_C, suite)
    assert outcome.sandbox != "none"
    assert outcome.tests_passed == 12, [(case.stdout, case.stderr) for case in outcome.tests]
    assert [stage.name for stage in outcome.stages] == ["compile"]


def test_a_build_no_case_can_be_given_is_the_programs_compile_error(executor: SuiteExecutor) -> None:
    # 301 classes: more artifacts than a build may hand to its cases (compile_cache.MAX_FILES).
    classes = " ".join(f"static class C{n} {{}}" for n in range(300))
    source = f"public class Main {{ {classes} public static void main(String[] a) {{ }} }}\n"
    _, outcome = executor.run_suite("java", source, suite_of(Case("one"), Case("two")))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.COMPILE_ERROR)
    assert "cannot be copied to the test cases" in outcome.stderr
    assert [case.status for case in outcome.tests] == [CaseStatus.SKIPPED, CaseStatus.SKIPPED]
