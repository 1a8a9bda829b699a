"""The bare work, for ratios: the same programs run directly as subprocesses, and through the
executor's own sandbox launcher (workspace() + run(), no services, no queue), interleaved.

"Same program" means the language table's file name, commands and environment: what an
execution of that language's hello world runs, minus the engine around it.
"""

from __future__ import annotations

import resource
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common.job import ExecutionJob
from common.languages import Language, by_name
from executor import jobs
from executor.launcher import Launcher, Limits
from executor.sandbox import select_launcher
from executor.settings import ExecutorConfig

RUN_TIME_MS = 5000


@dataclass(frozen=True)
class Program:
    language: Language
    source: str
    expected_stdout: str = "Hello World\n"


@dataclass
class Timing:
    """Milliseconds per repeat, split into compile and run (compile is 0 for interpreted languages)."""

    compile_ms: list[float]
    run_ms: list[float]

    @property
    def total_ms(self) -> list[float]:
        return [c + r for c, r in zip(self.compile_ms, self.run_ms, strict=True)]


def program(name: str) -> Program:
    language = by_name(name)
    if language is None:
        raise ValueError(f"no language {name!r} in the table")
    return Program(language, language.template_code)


def sandbox_launcher(work_root: Path) -> Launcher:
    """The launcher an executor on this machine would pick (LCE_SANDBOX, default auto); never unconfined."""
    # From the environment like an executor's, so settings added to the executor later apply here too.
    config = ExecutorConfig.from_env().model_copy(update={"work_root": work_root, "allow_unconfined": False})
    return select_launcher(config)


def _expand(argv: Sequence[str], placeholders: dict[str, str]) -> list[str]:
    expanded = []
    for arg in argv:
        for placeholder, value in placeholders.items():
            arg = arg.replace(placeholder, value)
        expanded.append(arg)
    return expanded


def _placeholders(prog: Program, workdir: Path) -> dict[str, str]:
    return {"{workdir}": str(workdir), "{heap_mb}": str(jobs.heap_mb(prog.language.default_memory_mb))}


def bare_once(prog: Program) -> tuple[float, float]:
    """(compile ms, run ms) of the program run directly, in a fresh temp dir with the stage environment."""
    with tempfile.TemporaryDirectory(prefix="lce-bench-bare-") as tmp:
        workdir = Path(tmp)
        (workdir / prog.language.file_name).write_text(prog.source)
        placeholders = _placeholders(prog, workdir)
        env = jobs.stage_env(prog.language, placeholders)
        compile_ms = 0.0
        if prog.language.compile:
            compile_ms, _ = _subprocess(_expand(prog.language.compile_command(()), placeholders), workdir, env)
        run_ms, stdout = _subprocess(_expand(prog.language.run, placeholders), workdir, env)
    if stdout != prog.expected_stdout:
        raise RuntimeError(f"bare {prog.language.name} printed {stdout!r}")
    return compile_ms, run_ms


def bare_cpu_s(prog: Program, repeats: int, compile_each_run: bool) -> list[float]:
    """CPU-seconds (the children's rusage) of each of `repeats` direct runs in one work dir; a compiled
    language's compile counts in each when `compile_each_run`, else it is done once beforehand, as a
    compile cache hit leaves it. Run by a caller with no other children ending meanwhile."""
    spent = []
    with tempfile.TemporaryDirectory(prefix="lce-bench-bare-") as tmp:
        workdir = Path(tmp)
        (workdir / prog.language.file_name).write_text(prog.source)
        placeholders = _placeholders(prog, workdir)
        env = jobs.stage_env(prog.language, placeholders)
        compile_argv = _expand(prog.language.compile_command(()), placeholders) if prog.language.compile else None
        if compile_argv and not compile_each_run:
            _subprocess(compile_argv, workdir, env)
        for _ in range(repeats):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            if compile_argv and compile_each_run:
                _subprocess(compile_argv, workdir, env)
            _, stdout = _subprocess(_expand(prog.language.run, placeholders), workdir, env)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if stdout != prog.expected_stdout:
                raise RuntimeError(f"bare {prog.language.name} printed {stdout!r}")
            spent.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return spent


def _subprocess(argv: list[str], workdir: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, check=True, timeout=60)
    return (time.perf_counter() - started) * 1000, done.stdout


def sandboxed_once(launcher: Launcher, prog: Program) -> tuple[float, float]:
    """(compile ms, run ms) through the launcher; the workspace's set-up and removal count in the run part,
    since an execution pays them too."""
    job = ExecutionJob(
        execution_id="bench",
        language=prog.language.name,
        source_code=prog.source,
        time_limit_ms=RUN_TIME_MS,
        memory_limit_mb=prog.language.default_memory_mb,
    )
    run_limits = jobs.run_limits(job, Limits.output_limit_bytes)
    compile_limits = jobs.compile_limits(job, Limits.output_limit_bytes)
    started = time.perf_counter()
    compile_ms = 0.0
    with launcher.workspace() as workdir:
        (workdir / prog.language.file_name).write_text(prog.source)
        placeholders = _placeholders(prog, workdir)
        env = jobs.stage_env(prog.language, placeholders)
        if prog.language.compile:
            compile_started = time.perf_counter()
            compiled = launcher.run(
                _expand(prog.language.compile_command(()), placeholders),
                workdir=workdir,
                env=env,
                limits=compile_limits,
            )
            compile_ms = (time.perf_counter() - compile_started) * 1000
            if compiled.exit_code != 0:
                raise RuntimeError(f"sandboxed {prog.language.name} compile failed: {compiled.stderr!r}")
        outcome = launcher.run(_expand(prog.language.run, placeholders), workdir=workdir, env=env, limits=run_limits)
    total_ms = (time.perf_counter() - started) * 1000
    if outcome.stdout.decode() != prog.expected_stdout:
        raise RuntimeError(f"sandboxed {prog.language.name} printed {outcome.stdout!r} {outcome.stderr!r}")
    return compile_ms, total_ms - compile_ms


def interleaved(
    launcher: Launcher | None, prog: Program, repeats: int, warmup: int = 1
) -> tuple[Timing, Timing | None]:
    """Bare and sandboxed runs alternated (and their order flipped each repeat) so drift hits both alike."""
    for _ in range(warmup):  # page cache, JIT-less first starts: not what a busy engine sees
        bare_once(prog)
        if launcher is not None:
            sandboxed_once(launcher, prog)
    bare = Timing([], [])
    sandboxed = Timing([], []) if launcher is not None else None
    for repeat in range(repeats):
        steps = [(bare, lambda: bare_once(prog))]
        if launcher is not None and sandboxed is not None:
            steps.append((sandboxed, lambda: sandboxed_once(launcher, prog)))
        if repeat % 2:
            steps.reverse()
        for timing, step in steps:
            compile_ms, run_ms = step()
            timing.compile_ms.append(compile_ms)
            timing.run_ms.append(run_ms)
    return bare, sandboxed
