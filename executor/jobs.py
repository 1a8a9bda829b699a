"""The RQ job: report RUNNING (sent as the worker takes the job: send_start), compile and run in a
fresh workspace (a test suite: executor/suite.py), report the verdict.

RQ calls `run_execution` by its dotted path (common.job.JOB_FUNCTION) with the job's JSON
payload and nothing else, so the process-wide objects a job needs (the launcher, the report
client) are installed once per worker process with `install()`: by `python -m executor` at
start (the worker never forks, so its gRPC channel lives as long as the process); by tests likewise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import logs
from common.job import ExecutionJob, SourceFile
from common.languages import Language, by_name, expand, stage_env
from common.run_events import RunEvents
from common.run_input import RunInput
from executor import loop_advice, metrics, suite, verdicts
from executor.compile_cache import PLAIN, Artifact, CompileCache, place
from executor.launcher import Launcher, Limits, LiveStdin, StageOutcome
from executor.lease import LeaseKeeper
from executor.live_input import LiveInput
from executor.live_output import LiveOutput
from executor.report_client import ReportClient
from executor.verdicts import Verdict

log = logging.getLogger(__name__)

# A compile gets its own limits (the job's, set by execution_service); its wall clock allows for I/O.
COMPILE_WALL_TIME_FACTOR = 2
COMPILE_MAX_PROCESSES = 128
# The JVM needs room beside its heap (metaspace, code cache, thread stacks) under the memory limit.
HEAP_SHARE = 0.75
MIN_HEAP_MB = 16


@dataclass(frozen=True)
class Runtime:
    launcher: Launcher
    reports: ReportClient
    output_limit_bytes: int
    # Successful compiles by content (executor/compile_cache.py); None compiles every time.
    compile_cache: CompileCache | None = None
    # Where the run's output goes as it is written (common/run_events.py); None: only with the result.
    events: RunEvents | None = None
    # Where an interactive run's stdin comes from as the client sends it (common/run_input.py).
    inputs: RunInput | None = None


_runtime: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime


def current_runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("executor.jobs.install() was not called in this worker process")
    return _runtime


def send_start(args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    """The worker took the job (rq calls run_execution with these arguments): its start report leaves
    now, to travel while rq records the job as started; run_execution waits for the answer before
    anything runs. A payload that does not decode is left to run_execution."""
    if _runtime is None:
        return
    try:
        job = ExecutionJob.from_payload(kwargs.get("payload", args[0] if args else None))
    except Exception:
        return
    _runtime.reports.send_start(job.execution_id, job.attempt)


def run_execution(payload: dict[str, Any]) -> dict[str, str]:
    """Runs one execution end to end; returns the verdict's status and reason (kept by RQ as the job result)."""
    job = ExecutionJob.from_payload(payload)
    runtime = current_runtime()
    token = logs.execution_id.set(job.execution_id)
    try:
        start = runtime.reports.started(job.execution_id, job.attempt)
        if not start.should_run:
            metrics.SKIPPED.inc()
            log.info("not running it: the run is over or this attempt is stale", extra={"attempt": job.attempt})
            return {"status": "skipped", "reason": "not the current attempt"}
        # The work dir is torn down (and the next execution's prepared) once the result is reported:
        # after it, not on its way.
        with ExitStack() as teardown:
            with LeaseKeeper(runtime.reports, job.execution_id, job.attempt, start.lease_s):
                verdict = _execute(job, runtime, teardown)
                warnings = _advice(job)
            # Outside the lease: while the result waits out an outage of execution_service, nothing else
            # is renewed, and if the lease ran out meanwhile the service still takes this result
            # (repository.finish).
            runtime.reports.result(
                job.execution_id, job.attempt, verdict, sandbox=runtime.launcher.mode, warnings=warnings
            )
            metrics.record(job.language, verdict)
            log.info("execution finished", extra={"status": verdict.status, "reason": verdict.reason})
        return {"status": verdict.status.value, "reason": verdict.reason}
    finally:
        logs.execution_id.reset(token)


def _advice(job: ExecutionJob) -> list[str]:
    """Worked out here, not in execution_service: a costly source costs its own run, within the advice's
    budget. Advice is never a reason for anything, its own failure included."""
    try:
        return loop_advice.advise(job.language, job.source_code)
    except Exception:
        log.exception("loop advice failed; the run goes without")
        return []


def _execute(job: ExecutionJob, runtime: Runtime, teardown: ExitStack) -> Verdict:
    """The verdict; the work dir stays until `teardown` closes."""
    language = by_name(job.language)
    if language is None:
        log.error("unknown language", extra={"language": job.language})
        return verdicts.internal_error(f"language {job.language!r} is not available on this executor")
    try:
        if job.suite is not None:
            return suite.run_suite(job, job.suite, language, runtime)
        workdir = teardown.enter_context(runtime.launcher.workspace())
        return _compile_and_run(job, language, workdir, runtime)
    except Exception:
        # A failure of the machinery (workspace, sandbox set-up), not of the program: the
        # internal_error verdict makes execution_service retry the run (execution_service/attempts.py).
        log.exception("could not run the program")
        return verdicts.internal_error("the executor could not run the program")


def _compile_and_run(job: ExecutionJob, language: Language, workdir: Path, runtime: Runtime) -> Verdict:
    write_program(workdir, language, job.source_code.encode("utf-8"), job.files)
    compiled = build(job, language, workdir, runtime, run_follows=True)
    if compiled is not None and verdicts.compile_failed(compiled):
        return verdicts.compile_error(compiled, job.encoding)
    with ExitStack() as live:
        output = live.enter_context(_live_output(job, runtime))
        typed = live.enter_context(_live_input(job, runtime))
        ran = run_program(
            job,
            language,
            workdir,
            runtime,
            stdin=job.stdin,
            args=job.args,
            live_stdin=typed,
            on_output=output.write if output is not None else None,
        )
    return verdicts.judge_run(ran, compiled, job.encoding)


def build(
    job: ExecutionJob, language: Language, workdir: Path, runtime: Runtime, *, run_follows: bool
) -> StageOutcome | None:
    """Compiles the program written in workdir, unless the compile cache has its build (placed there
    instead): the compile stage's outcome, None when none ran. A failed compile is the caller's to judge
    (verdicts.compile_failed). run_follows: the program runs in this work dir next."""
    if not language.compile:
        return None
    cache = runtime.compile_cache
    key = cache.key_for(language, job.source_code.encode("utf-8"), job.files) if cache is not None else None
    # A cache hit skips the compile stage: the result then has no "compile" stage at all.
    if cache and key and cache.load(key, workdir):
        return None
    placeholders = _placeholders(job, workdir)
    compiled = runtime.launcher.run(
        _expand_all(language.compile_command(file.name for file in job.files), placeholders),
        workdir=workdir,
        env=stage_env(language, placeholders),
        limits=compile_limits(job, runtime.output_limit_bytes),
        another_stage_follows=run_follows,
    )
    if cache and key and not verdicts.compile_failed(compiled):
        # Now, between the stages: the compile's processes are gone, and the program, which
        # may rewrite anything in its work dir, has not started.
        cache.store(key, workdir, language.artifacts)
    return compiled


def run_program(
    job: ExecutionJob,
    language: Language,
    workdir: Path,
    runtime: Runtime,
    *,
    stdin: bytes,
    args: Sequence[str],
    live_stdin: LiveStdin | None = None,
    on_output: Callable[[str, bytes], None] | None = None,
) -> StageOutcome:
    """The run stage of the program built in workdir, with the run's limits."""
    placeholders = _placeholders(job, workdir)
    return runtime.launcher.run(
        [*_expand_all(language.run, placeholders), *args],
        workdir=workdir,
        env=stage_env(language, placeholders),
        limits=run_limits(job, runtime.output_limit_bytes),
        stdin=stdin,
        live_stdin=live_stdin,
        on_output=on_output,
    )


def write_program(workdir: Path, language: Language, source: bytes, files: Sequence[SourceFile]) -> None:
    """The main file and the program's other files beside it. Their names were checked upstream; place()
    refuses all the same, before writing anything, a name that could leave the work dir, and never
    writes through a link."""
    place(program_files(language, source, files), workdir)


def program_files(language: Language, source: bytes, files: Sequence[SourceFile]) -> list[Artifact]:
    return [
        Artifact(language.file_name, PLAIN, source),
        *(Artifact(file.name, PLAIN, file.content.encode("utf-8")) for file in files),
    ]


@contextmanager
def _live_output(job: ExecutionJob, runtime: Runtime) -> Iterator[LiveOutput | None]:
    if runtime.events is None:
        yield None
        return
    output = LiveOutput(runtime.events, job.execution_id, job.attempt, job.encoding)
    try:
        yield output
    finally:
        output.close()


@contextmanager
def _live_input(job: ExecutionJob, runtime: Runtime) -> Iterator[LiveInput | None]:
    """An interactive run's stdin as the client sends it; an executor without an input stream runs
    the program with its stdin closed after the run's own stdin."""
    if not job.interactive or runtime.inputs is None:
        yield None
        return
    typed = LiveInput(runtime.inputs, job.execution_id)
    try:
        yield typed
    finally:
        typed.close()


def run_limits(job: ExecutionJob, output_limit_bytes: int) -> Limits:
    return Limits(
        wall_time_ms=job.time_limit_ms,
        cpu_time_ms=job.time_limit_ms,
        memory_mb=job.memory_limit_mb,
        output_limit_bytes=output_limit_bytes,
    )


def compile_limits(job: ExecutionJob, output_limit_bytes: int) -> Limits:
    return Limits(
        wall_time_ms=COMPILE_WALL_TIME_FACTOR * job.compile_time_limit_ms,
        cpu_time_ms=job.compile_time_limit_ms,
        memory_mb=job.compile_memory_limit_mb,
        max_processes=COMPILE_MAX_PROCESSES,
        output_limit_bytes=output_limit_bytes,
    )


def heap_mb(memory_limit_mb: int) -> int:
    return max(MIN_HEAP_MB, int(memory_limit_mb * HEAP_SHARE))


def _placeholders(job: ExecutionJob, workdir: Path) -> dict[str, str]:
    return {"{workdir}": str(workdir), "{heap_mb}": str(heap_mb(job.memory_limit_mb))}


def _expand_all(argv: tuple[str, ...], placeholders: dict[str, str]) -> list[str]:
    return [expand(arg, placeholders) for arg in argv]
