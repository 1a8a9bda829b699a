"""Warm javac (common.languages.WarmCompiler, executor/sandbox/warm.py) against the cold javac command, through
the sandboxed launcher with the compile aids bound (real processes): what a compile leaves (class files),
says (stdout, stderr) and how it ends must be the same. `make test` builds the aids first (`packages`)."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.job import DEFAULT_COMPILE_MEMORY_LIMIT_MB, SourceFile
from common.languages import Language, by_name, matches
from executor.jobs import stage_env, write_program
from executor.launcher import LimitExceeded, Limits, StageOutcome
from executor.sandbox import aid_trees
from executor.sandbox.confined import SandboxLauncher
from executor.sandbox.detect import detect
from executor.sandbox.prespawn import Sandbox
from executor.settings import ExecutorConfig, compile_aids_dir
from tests.sandbox.test_red_team import processes_of

LIMITS = Limits(wall_time_ms=60_000, cpu_time_ms=30_000, memory_mb=DEFAULT_COMPILE_MEMORY_LIMIT_MB)
JAVA_ERROR = 'public class Main {\n    public static void main(String[] args) {\n        int x = "s";\n    }\n}\n'
# Nested, anonymous and lambda classes, a record, and classes of packages in folders.
PACKAGES_MAIN = """import com.example.text.Shout;
import java.util.function.Supplier;

public class Main {
    record Pair(int a, int b) {}
    static class Inner { String hi() { return "inner"; } }

    public static void main(String[] args) {
        Runnable anonymous = new Runnable() { public void run() { System.out.println(Shout.loud("hi")); } };
        Supplier<String> lambda = () -> new Inner().hi() + new Pair(1, 2);
        anonymous.run();
        System.out.println(lambda.get() + util.Helper.twice(21));
    }
}
"""
PACKAGES_FILES = (
    SourceFile(
        "com/example/text/Shout.java",
        "package com.example.text;\n\npublic class Shout {\n"
        '    public static String loud(String s) { return s.toUpperCase() + "!"; }\n}\n',
    ),
    SourceFile(
        "util/Helper.java",
        "package util;\n\npublic class Helper {\n    public static int twice(int x) { return 2 * x; }\n}\n",
    ),
)
# Raw types and an unchecked call: warnings -Xlint prints to stderr, with the compile still succeeding.
LINT_WARNINGS = (
    "import java.util.*;\n\npublic class Main {\n    public static void main(String[] args) {\n"
    "        List list = new ArrayList();\n        list.add(1);\n        System.out.println(list);\n    }\n}\n"
)

# Seconds of javac's CPU time: thousands of methods.
LONG_COMPILE = (
    "public class Main {\n"
    + "".join(
        f"    static long f{i}(long x) {{ return x > 100 ? x - {i} : f{max(i - 1, 0)}(x + {i}); }}\n"
        for i in range(6000)
    )
    + "    public static void main(String[] args) { System.out.println(f5999(1)); }\n}\n"
)


def java() -> Language:
    found = by_name("java")
    assert found is not None and found.warm_compiler is not None
    return found


@pytest.fixture(scope="module")
def launcher() -> Iterator[SandboxLauncher]:
    # Not under pytest's tmp_path: that is 0700 root, which the slot uids could not traverse.
    root = Path(f"/tmp/lce-warm-javac-{uuid.uuid4().hex[:8]}")
    trees = aid_trees(compile_aids_dir())
    assert any(tree.inside == "/opt/lce/aids/java" for tree in trees), "compile aids not built: run make packages"
    launcher = detect(ExecutorConfig.from_env().sandbox_mode, root, trees, warm_runtimes=True)
    yield launcher
    launcher.close()
    shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Compiled:
    outcome: StageOutcome
    classes: dict[str, bytes]  # the compile's artefacts, by path in the work dir

    @property
    def observable(self) -> tuple[object, ...]:
        outcome = self.outcome
        return (outcome.exit_code, outcome.signal, outcome.limit_exceeded, outcome.stdout, outcome.stderr, self.classes)


class Compiles:
    """Java compiles, each in a fresh execution whose first sandbox is prepared warm or plain as asked."""

    def __init__(self, launcher: SandboxLauncher) -> None:
        self.launcher = launcher

    def prepare_next(self, warm: bool) -> None:
        """A warm javac is for an execution after one that compiled Java first; the workspace's end prepares
        the next execution (the preparer reads the switch then)."""
        self.launcher.warm_runtimes = warm
        with self.launcher.workspace() as workdir:
            if warm:
                self.compile_in(workdir, java().template_code)

    def compile(
        self,
        source: str,
        files: tuple[SourceFile, ...] = (),
        *,
        warm: bool,
        extra: tuple[str, ...] = (),
        limits: Limits = LIMITS,
        fits_warm: bool = True,
        warmed_up: bool = False,
    ) -> Compiled:
        """The compile command, with extra words after the ones the warm compiler stands for; warmed_up: once
        the warm javac's warm-up is over (else it comes as soon as the JVM waits for it, as a job can)."""
        self.prepare_next(warm)
        with self.launcher.workspace() as workdir:
            sandbox = self.launcher._executions[workdir].sandbox
            assert sandbox is not None and sandbox.warm == warm
            if warmed_up:
                _await_idle(sandbox)
            # The warm-up compiled in the sandbox's /tmp, and its FIFO is gone: the work dir is the job's.
            assert list(workdir.iterdir()) == []
            takes = (lambda argv, env: sandbox.takes(argv, env, limits) == fits_warm) if warm else None
            return self.compile_in(workdir, source, files, extra, limits, takes)

    def compile_in(
        self,
        workdir: Path,
        source: str,
        files: tuple[SourceFile, ...] = (),
        extra: tuple[str, ...] = (),
        limits: Limits = LIMITS,
        takes: object = None,
    ) -> Compiled:
        language = java()
        write_program(workdir, language, source.encode(), files)
        command = language.compile_command(file.name for file in files)
        stands_for = language.warm_compiler.stands_for if language.warm_compiler else 0
        argv = [*command[:stands_for], *extra, *command[stands_for:]]
        env = stage_env(language, {"{workdir}": str(workdir)})
        if callable(takes):
            assert takes(argv, env)
        outcome = self.launcher.run(argv, workdir=workdir, env=env, limits=limits)
        assert processes_of(workdir.stat().st_uid) == [], "a process of the compile survived it"
        classes = {
            str(path.relative_to(workdir)): path.read_bytes()
            for path in sorted(workdir.rglob("*"))
            if path.is_file() and matches(str(path.relative_to(workdir)), language.artifacts)
        }
        return Compiled(outcome, classes)

    def both(self, source: str, files: tuple[SourceFile, ...] = (), **kwargs: object) -> Compiled:
        """A cold compile's result, once a warm one was seen to give the same."""
        cold = self.compile(source, files, warm=False, **kwargs)  # type: ignore[arg-type]
        warm = self.compile(source, files, warm=True, **kwargs)  # type: ignore[arg-type]
        assert warm.observable == cold.observable
        return cold


def _await_idle(sandbox: Sandbox) -> None:
    """Returns once the sandbox's processes have used under 5 ms of CPU in 200 ms (the warm-up is over)."""
    deadline = time.monotonic() + 30
    used = sandbox._group.cpu_time_ns()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        used, before = sandbox._group.cpu_time_ns(), used
        if used - before < 5_000_000:
            return
    raise AssertionError("the warm javac kept busy for 30 s")


@pytest.fixture
def compiles(launcher: SandboxLauncher) -> Compiles:
    return Compiles(launcher)


@pytest.mark.parametrize("warmed_up", [False, True])
def test_hello_world_compiles_to_the_same_class(compiles: Compiles, warmed_up: bool) -> None:
    compiled = compiles.both(java().template_code, warmed_up=warmed_up)
    assert (compiled.outcome.exit_code, compiled.outcome.stdout, compiled.outcome.stderr) == (0, b"", b"")
    assert list(compiled.classes) == ["Main.class"]


def test_a_compile_error_says_the_same_and_exits_the_same(compiles: Compiles) -> None:
    compiled = compiles.both(JAVA_ERROR)
    assert compiled.outcome.exit_code == 1
    assert b"Main.java:3: error: incompatible types" in compiled.outcome.stderr
    assert compiled.classes == {}


def test_classes_of_packages_in_folders_are_the_same(compiles: Compiles) -> None:
    compiled = compiles.both(PACKAGES_MAIN, PACKAGES_FILES)
    assert compiled.outcome.exit_code == 0, compiled.outcome.stderr
    assert {"Main.class", "Main$1.class", "Main$Inner.class", "Main$Pair.class"} <= set(compiled.classes)
    assert {"com/example/text/Shout.class", "util/Helper.class"} <= set(compiled.classes)


def test_javacs_own_options_and_warnings_are_the_same(compiles: Compiles) -> None:
    compiled = compiles.both(LINT_WARNINGS, extra=("-Xlint:all",))
    assert compiled.outcome.exit_code == 0
    assert b"warning: [rawtypes]" in compiled.outcome.stderr and b"warning: [unchecked]" in compiled.outcome.stderr
    version = compiles.both(java().template_code, extra=("-version",))
    assert version.outcome.stdout.startswith(b"javac ")


def test_the_compile_time_limit_is_not_charged_the_warm_up(compiles: Compiles) -> None:
    # Under what a cold javac's start alone takes; a warm javac's compile of hello world takes a tenth.
    limits = Limits(wall_time_ms=5000, cpu_time_ms=250, memory_mb=DEFAULT_COMPILE_MEMORY_LIMIT_MB)
    warm = compiles.compile(java().template_code, warm=True, limits=limits, warmed_up=True)
    assert (warm.outcome.exit_code, warm.outcome.limit_exceeded) == (0, None), warm.outcome
    assert warm.outcome.cpu_time_ms < 250
    cold = compiles.compile(java().template_code, warm=False, limits=limits)
    assert cold.outcome.limit_exceeded == LimitExceeded.CPU_TIME


def test_a_long_compile_is_stopped_at_the_cpu_limit_counted_from_release(compiles: Compiles) -> None:
    limits = Limits(wall_time_ms=10_000, cpu_time_ms=400, memory_mb=DEFAULT_COMPILE_MEMORY_LIMIT_MB)
    warm = compiles.compile(LONG_COMPILE, warm=True, limits=limits, warmed_up=True)
    assert warm.outcome.limit_exceeded == LimitExceeded.CPU_TIME, warm.outcome
    assert 400 <= warm.outcome.cpu_time_ms < 1000
    cold = compiles.compile(LONG_COMPILE, warm=False, limits=limits)
    assert cold.outcome.limit_exceeded == LimitExceeded.CPU_TIME, cold.outcome


def test_a_compile_with_launcher_flags_gets_a_plain_sandbox(compiles: Compiles) -> None:
    # -J words go to the cold javac's JVM, which the warm one started without.
    compiled = compiles.compile(java().template_code, warm=True, extra=("-J-Xlog:disable",), fits_warm=False)
    assert compiled.outcome.exit_code == 0, compiled.outcome.stderr
    assert list(compiled.classes) == ["Main.class"]


def test_a_run_after_a_java_compile_gets_a_plain_sandbox(compiles: Compiles, launcher: SandboxLauncher) -> None:
    python = by_name("python")
    assert python is not None
    compiles.prepare_next(warm=True)
    with launcher.workspace() as workdir:
        sandbox = launcher._executions[workdir].sandbox
        assert sandbox is not None and sandbox.warm
        write_program(workdir, python, b"print('plain')\n", ())
        env = stage_env(python, {"{workdir}": str(workdir)})
        assert not sandbox.takes(list(python.run), env, LIMITS)
        outcome = launcher.run(list(python.run), workdir=workdir, env=env, limits=LIMITS)
        assert sorted(path.name for path in workdir.iterdir()) == ["main.py"]
    assert (outcome.exit_code, outcome.stdout) == (0, b"plain\n"), outcome.stderr


def test_without_the_compile_aids_nothing_starts_ahead() -> None:
    root = Path(f"/tmp/lce-warm-javac-{uuid.uuid4().hex[:8]}")
    bare = detect(ExecutorConfig.from_env().sandbox_mode, root, warm_runtimes=True)
    try:
        compiles = Compiles(bare)
        compiles.prepare_next(warm=True)
        with bare.workspace() as workdir:
            sandbox = bare._executions[workdir].sandbox
            assert sandbox is not None and not sandbox.warm
            compiled = compiles.compile_in(workdir, java().template_code)
        assert (compiled.outcome.exit_code, list(compiled.classes)) == (0, ["Main.class"])
    finally:
        bare.close()
        shutil.rmtree(root, ignore_errors=True)
