"""Judge mode: a run's test suite, compiled once, each case run in a fresh sandbox of its own.

The compile (or the compile cache) works in a workspace of its own; what it built, the language's
declared artifacts, is taken out of it the way the compile cache takes them (no link followed, plain
files only) and placed, with the program's files, into each case's fresh workspace, so nothing one
case writes reaches another. Cases run on a few threads: each takes a workspace (a slot uid, a tmpfs,
a cgroup of its own) and runs its case there while the others set theirs up. Each case's verdict is
appended to the run's events in request order, as soon as it and the ones before it are decided.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import replace

from common.job import Compare, Encoding, ExecutionJob, Suite, TestCase, encode_output
from common.languages import Language
from common.outcome import CaseOutcome, CaseStatus, Reason, Status
from common.run_events import Kind
from executor import jobs, verdicts
from executor.compile_cache import Artifact, NotCacheable, collect, place
from executor.launcher import StageOutcome
from executor.output_compare import exact_equal, tokens_equal, trimmed_equal
from executor.verdicts import Verdict

# Kept of each stream of each case, so that a 100-case result stays small; the whole is compared.
MAX_CASE_OUTPUT_BYTES = 8 * 1024
# Cases running at once: each holds a sandbox and up to the run's memory limit.
PARALLEL_CASES = min(4, len(os.sched_getaffinity(0)))

_CASE_STATUS = {
    Status.COMPLETED: CaseStatus.COMPLETED,
    Status.FAILED: CaseStatus.FAILED,
    Status.TIMEOUT: CaseStatus.TIMEOUT,
}
_UTF8_CONTINUATION = 0b1100_0000, 0b1000_0000  # (mask, value) of a byte inside a character
_MAX_UTF8_CONTINUATIONS = 3


def run_suite(job: ExecutionJob, suite: Suite, language: Language, runtime: jobs.Runtime) -> Verdict:
    """The run's verdict: COMPLETED once every case has its own, FAILED when the compile failed (every
    case then SKIPPED). Raises when the machinery fails (the run is then retried as an internal error)."""
    events = _CaseEvents(job, runtime)
    try:
        compiled, files = _build(job, language, runtime)
    except NotCacheable as refused:
        # The program built something no case can be given (a link, a huge file, too many): its own doing.
        message = f"the build cannot be copied to the test cases: {refused}\n".encode()
        failed = Verdict(status=Status.FAILED, reason=Reason.COMPILE_ERROR, stderr=encode_output(message, job.encoding))
        return replace(failed, tests=_all_skipped(suite, events))
    compile_stage = (verdicts.stage_metrics("compile", compiled),) if compiled is not None else ()
    if compiled is not None and verdicts.compile_failed(compiled):
        return replace(verdicts.compile_error(compiled, job.encoding), tests=_all_skipped(suite, events))

    def run_case(case: TestCase) -> CaseOutcome:
        with runtime.launcher.workspace() as workdir:
            place(files, workdir)
            ran = jobs.run_program(job, language, workdir, runtime, stdin=case.stdin, args=case.args)
        return judge_case(case, ran, suite, job.encoding)

    cases = run_cases(suite, run_case, on_decided=events.append)
    ran = [case for case in cases if case.status is not CaseStatus.SKIPPED]
    return Verdict(
        status=Status.COMPLETED,
        execution_time_ms=sum(case.execution_time_ms for case in ran),
        memory_kb=max((case.memory_kb for case in ran), default=0),
        stages=compile_stage,
        tests=tuple(cases),
    )


def _all_skipped(suite: Suite, events: _CaseEvents) -> tuple[CaseOutcome, ...]:
    skipped = tuple(CaseOutcome(case.name, CaseStatus.SKIPPED) for case in suite.cases)
    for index, case in enumerate(skipped):
        events.append(index, case)
    return skipped


def _build(job: ExecutionJob, language: Language, runtime: jobs.Runtime) -> tuple[StageOutcome | None, list[Artifact]]:
    """The compile stage's outcome (None when none ran) and the files every case starts with: the
    program's own, then what the compile built, which replaces a program file of the same name as it
    did in the compile's work dir (none when the compile failed)."""
    source = job.source_code.encode("utf-8")
    program = jobs.program_files(language, source, job.files)
    if not language.compile:
        return None, program
    with runtime.launcher.workspace() as workdir:
        place(program, workdir)
        # No run follows in this work dir: each case has its own.
        compiled = jobs.build(job, language, workdir, runtime, run_follows=False)
        if compiled is not None and verdicts.compile_failed(compiled):
            return compiled, []
        built = collect(workdir, language.artifacts)  # NotCacheable for a build no case can be given
    names = {artifact.name for artifact in built}
    return compiled, [file for file in program if file.name not in names] + list(built)


def run_cases(
    suite: Suite,
    run_case: Callable[[TestCase], CaseOutcome],
    *,
    on_decided: Callable[[int, CaseOutcome], None],
    parallel: int = PARALLEL_CASES,
) -> list[CaseOutcome]:
    """Every case's outcome, in request order; on_decided is told each, in that order, as soon as it and
    those before it are decided. Stopping on the first failure, the cases after it are SKIPPED: those not
    started are never run, and those already running in parallel are run out but reported SKIPPED.
    A run_case that raises (the machinery failed) ends the suite: no case starts after it."""
    decisions = _Decisions(suite, on_decided)
    abandoned = threading.Event()

    def decide(index: int) -> None:
        if abandoned.is_set():
            return
        case = suite.cases[index]
        try:
            decisions.decide(index, run_case(case) if decisions.still_needed(index) else _skipped(case))
        except BaseException:
            abandoned.set()
            raise

    pool = ThreadPoolExecutor(max_workers=max(1, min(parallel, len(suite.cases))), thread_name_prefix="lce-case")
    try:
        futures = [pool.submit(decide, index) for index in range(len(suite.cases))]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            future.result()  # the first failure of the machinery, if any, fails the run
    except BaseException:
        abandoned.set()  # also on a job timeout: those running end within their limits
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return decisions.outcomes()


class _Decisions:
    """The cases' outcomes as they come, handed on in request order."""

    def __init__(self, suite: Suite, on_decided: Callable[[int, CaseOutcome], None]) -> None:
        self._suite = suite
        self._on_decided = on_decided
        self._lock = threading.Lock()
        self._outcomes: list[CaseOutcome | None] = [None] * len(suite.cases)
        self._handed_on = 0
        self._first_failure: int | None = None

    def still_needed(self, index: int) -> bool:
        """False once an earlier case failed in a suite that stops on the first failure."""
        with self._lock:
            return not self._after_the_stop(index)

    def decide(self, index: int, outcome: CaseOutcome) -> None:
        with self._lock:
            self._outcomes[index] = outcome
            failed = outcome.status is not CaseStatus.SKIPPED and not outcome.passed
            if self._suite.stop_on_first_failure and failed and not self._after_the_stop(index):
                self._first_failure = index
            # Under the lock: hand-offs stay in order whichever thread decides the next one.
            while self._handed_on < len(self._outcomes) and (ready := self._outcomes[self._handed_on]) is not None:
                if self._after_the_stop(self._handed_on):
                    ready = self._outcomes[self._handed_on] = _skipped(self._suite.cases[self._handed_on])
                self._on_decided(self._handed_on, ready)
                self._handed_on += 1

    def _after_the_stop(self, index: int) -> bool:
        return self._first_failure is not None and index > self._first_failure

    def outcomes(self) -> list[CaseOutcome]:
        decided = [outcome for outcome in self._outcomes if outcome is not None]
        if len(decided) != len(self._outcomes):
            raise RuntimeError("a case of the suite was left without a verdict")
        return decided


def _skipped(case: TestCase) -> CaseOutcome:
    return CaseOutcome(case.name, CaseStatus.SKIPPED)


def judge_case(case: TestCase, ran: StageOutcome, suite: Suite, encoding: Encoding) -> CaseOutcome:
    """The case's verdict: the run's status, and whether its whole stdout matched the expected output;
    at most MAX_CASE_OUTPUT_BYTES of each stream are kept."""
    verdict = verdicts.judge_run(ran, encoding=encoding)
    status = _CASE_STATUS[verdict.status]
    passed = status is CaseStatus.COMPLETED and (
        case.expected_output is None
        or outputs_match(suite, case.expected_output, ran.stdout.decode("utf-8", "replace"))
    )
    stdout, stdout_cut = cap_output(ran.stdout, encoding)
    stderr, stderr_cut = cap_output(ran.stderr, encoding)
    return CaseOutcome(
        name=case.name,
        status=status,
        reason=verdict.reason,
        signal=verdict.signal,
        passed=passed,
        stdout=encode_output(stdout, encoding),
        stderr=encode_output(stderr, encoding),
        stdout_truncated=ran.stdout_truncated or stdout_cut,
        stderr_truncated=ran.stderr_truncated or stderr_cut,
        exit_code=ran.exit_code,
        execution_time_ms=ran.wall_time_ms,
        memory_kb=ran.memory_kb,
    )


def outputs_match(suite: Suite, expected: str, actual: str) -> bool:
    match suite.compare:
        case Compare.EXACT:
            return exact_equal(expected, actual)
        case Compare.TOKENS:
            return tokens_equal(expected, actual, suite.float_tolerance)
        case Compare.TRIM:
            return trimmed_equal(expected, actual)


def cap_output(data: bytes, encoding: Encoding, limit: int = MAX_CASE_OUTPUT_BYTES) -> tuple[bytes, bool]:
    """The first `limit` bytes of a stream and whether that cut it; as text (UTF-8) the cut never splits a
    character, which would show as U+FFFD."""
    if len(data) <= limit:
        return data, False
    end = limit
    if encoding == Encoding.UTF8:
        mask, continuation = _UTF8_CONTINUATION
        while end > limit - _MAX_UTF8_CONTINUATIONS and data[end] & mask == continuation:
            end -= 1
    return data[:end], True


class _CaseEvents:
    """Each case's verdict on the run's event stream (common/run_events.py), for live readers."""

    def __init__(self, job: ExecutionJob, runtime: jobs.Runtime) -> None:
        self._job = job
        self._events = runtime.events

    def append(self, index: int, case: CaseOutcome) -> None:
        if self._events is None:
            return
        self._events.append(
            self._job.execution_id,
            Kind.TEST,
            attempt=self._job.attempt,
            index=index,
            name=case.name,
            status=case.status.value,
            reason=case.reason_text,
            passed="1" if case.passed else "0",
        )
