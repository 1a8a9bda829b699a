"""Warm runtimes (executor/sandbox/warm.py) against cold starts, through the sandboxed launcher (real processes):
each probe program runs both ways, and what it can observe, and how it ends, must be the same."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.languages import LANGUAGES, Language, by_name, stage_env
from executor.jobs import write_program
from executor.launcher import LimitExceeded, Limits, StageOutcome
from executor.sandbox.confined import SandboxLauncher
from executor.sandbox.detect import detect
from executor.settings import ExecutorConfig
from tests.sandbox.test_red_team import processes_of

LIMITS = Limits(wall_time_ms=10_000, cpu_time_ms=5000, memory_mb=256)
WARM = [language for language in LANGUAGES if language.warm_start]

# Per language: what it is, where it is, what it was given, what it sees around it, as JSON.
IDENTITY = {
    "python": (
        "import json, os, resource, sys\n"
        "limits = [resource.getrlimit(r) for r in (resource.RLIMIT_CPU, resource.RLIMIT_FSIZE, resource.RLIMIT_CORE)]\n"
        "print(json.dumps([sys.argv, __name__, __file__, os.getcwd(), sorted(os.listdir('.')),\n"
        "                  dict(os.environ), sys.stdin.read(), limits, sorted(os.listdir('/proc/self/fd'))]))\n"
    ),
    "javascript": (
        "const fs = require('fs');\n"
        "console.log(JSON.stringify([process.argv, require.main === module, __filename, process.cwd(),\n"
        "  fs.readdirSync('.').sort(), process.env, fs.readFileSync(0, 'utf8')]));\n"
    ),
    "php": (
        "<?php\n"
        "echo json_encode([$argv, __FILE__, getcwd(), scandir('.'), getenv(), stream_get_contents(STDIN),\n"
        "  get_included_files(), $_SERVER['SCRIPT_FILENAME']], JSON_UNESCAPED_SLASHES), \"\\n\";\n"
    ),
}
# Each line of stdin as it comes, answered at once.
ECHO_LINES = {
    "python": "import sys\nfor line in sys.stdin:\n    print('got', line.strip(), flush=True)\n",
    "javascript": (
        "require('readline').createInterface({ input: process.stdin })"
        ".on('line', (line) => console.log('got ' + line));\n"
    ),
    "php": "<?php\nwhile (($line = fgets(STDIN)) !== false) {\n  echo 'got ', trim($line), \"\\n\";\n}\n",
}
TRACEBACK = {
    "python": "def fail():\n    raise ValueError('boom')\n\n\nfail()\n",
    "javascript": "function fail() {\n  throw new Error('boom');\n}\nfail();\n",
    "php": "<?php\nfunction fail() {\n  throw new Exception('boom');\n}\nfail();\n",
}
EXIT_3 = {"python": "import sys\nsys.exit(3)\n", "javascript": "process.exit(3);\n", "php": "<?php\nexit(3);\n"}
# The program kills itself with the signal; the sleep gives it time to arrive.
KILL_SELF = {
    "python": "import os, signal, time\nos.kill(os.getpid(), signal.{})\ntime.sleep(5)\n",
    "javascript": "process.kill(process.pid, '{}');\nsetTimeout(() => {{}}, 5000);\n",
    "php": "<?php\nposix_kill(getmypid(), {});\nsleep(5);\n",
}
PHP_SIGNALS = {"SIGTERM": "15", "SIGSEGV": "11"}
# Busy for the given ms of the monotonic clock (at most that much CPU time), then "done".
BUSY = {
    "python": "import time\nend = time.monotonic() + {ms} / 1000\nwhile time.monotonic() < end: pass\nprint('done')\n",
    "javascript": "const end = Date.now() + {ms};\nwhile (Date.now() < end) {{}}\nconsole.log('done');\n",
    "php": '<?php\n$end = hrtime(true) + {ms} * 1000000;\nwhile (hrtime(true) < $end) {{}}\necho "done\\n";\n',
}
SPIN = {"python": "while True:\n    pass\n", "javascript": "for (;;) {}\n", "php": "<?php\nwhile (true) {}\n"}
SLEEP = {
    "python": "import time\ntime.sleep({s})\nprint('done')\n",
    "javascript": "setTimeout(() => console.log('done'), {s} * 1000);\n",
    "php": '<?php\nusleep({s} * 1000000);\necho "done\\n";\n',
}
HOG = {
    "python": "chunks = []\nwhile True:\n    chunks.append(b'x' * (1 << 20))\n",
    "javascript": "const chunks = [];\nfor (;;) chunks.push(Buffer.alloc(1 << 20, 1));\n",
    "php": "<?php\nini_set('memory_limit', '-1');\n$chunks = [];\nwhile (true) $chunks[] = str_repeat('x', 1 << 20);\n",
}


@pytest.fixture(scope="module")
def launcher() -> Iterator[SandboxLauncher]:
    # Not under pytest's tmp_path: that is 0700 root, which the slot uids could not traverse.
    root = Path(f"/tmp/lce-warm-{uuid.uuid4().hex[:8]}")
    launcher = detect(ExecutorConfig.from_env().sandbox_mode, root, warm_runtimes=True)
    yield launcher
    launcher.close()
    shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Program:
    source: str
    args: tuple[str, ...] = ()
    stdin: bytes = b""
    limits: Limits = LIMITS
    fits_warm: bool = True  # a warm sandbox runs it; else it gives way to a plain one
    typed: tuple[bytes, ...] = ()  # stdin typed after stdin, a chunk at a time (an interactive run)


class Typed:
    """Stdin as a client types it (the LiveStdin protocol): chunks some time apart, then end of file."""

    def __init__(self, chunks: tuple[bytes, ...]) -> None:
        self.wakeup_fd, self._wakeup_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lock = threading.Lock()
        self._data, self._eof = b"", False
        self._typist = threading.Thread(target=self._type, args=(chunks,), daemon=True)
        self._typist.start()

    def take(self) -> tuple[bytes, bool]:
        with self._lock:
            with suppress(BlockingIOError):
                os.read(self.wakeup_fd, 4096)
            data, self._data = self._data, b""
            return data, self._eof

    def close(self) -> None:
        self._typist.join()
        os.close(self.wakeup_fd)
        os.close(self._wakeup_write)

    def _type(self, chunks: tuple[bytes, ...]) -> None:
        for chunk in (*chunks, None):
            time.sleep(0.05)
            with self._lock:
                if chunk is None:
                    self._eof = True
                else:
                    self._data += chunk
                os.write(self._wakeup_write, b"\1")


class Runs:
    """One language's runs, each in a fresh execution whose sandbox is prepared warm or plain as asked."""

    def __init__(self, launcher: SandboxLauncher, language: Language) -> None:
        self.launcher = launcher
        self.language = language

    def run(self, program: Program, *, warm: bool) -> StageOutcome:
        self.prepare_next(warm)
        return self.run_prepared(program, warm=warm)

    def run_prepared(self, program: Program, *, warm: bool) -> StageOutcome:
        with self.launcher.workspace() as workdir:
            sandbox = self.launcher._executions[workdir].sandbox
            assert sandbox is not None and sandbox.warm == warm
            takes = (lambda argv, env: sandbox.takes(argv, env, program.limits)) if warm else None
            outcome = self.run_in(workdir, program, takes)
        # The work dir's path names the slot, which differs from run to run.
        return _replace(outcome, str(workdir), "{workdir}")

    def both(self, program: Program) -> StageOutcome:
        """The outcome of a cold run, once a warm run was seen to end the same way."""
        cold = self.run(program, warm=False)
        warm = self.run(program, warm=True)
        assert _observable(warm) == _observable(cold)
        return cold

    def prepare_next(self, warm: bool) -> None:
        """A warm start is for the last run's language: one runs first, and its workspace's end prepares
        the next execution (the preparer reads the switch then)."""
        self.launcher.warm_runtimes = warm
        with self.launcher.workspace() as workdir:
            if warm:
                self.run_in(workdir, Program(self.language.template_code))

    def run_in(
        self, workdir: Path, program: Program, takes: Callable[[list[str], dict[str, str]], bool] | None = None
    ) -> StageOutcome:
        """Runs program in workdir; `takes` tells whether the waiting warm sandbox will run it, as the
        program says it should."""
        uid = workdir.stat().st_uid
        write_program(workdir, self.language, program.source.encode(), ())
        argv = [*self.language.run, *program.args]
        env = stage_env(self.language, {"{workdir}": str(workdir), "{heap_mb}": "0"})
        if takes is not None:
            assert takes(argv, env) == program.fits_warm
        typed = Typed(program.typed) if program.typed else None
        try:
            outcome = self.launcher.run(
                argv, workdir=workdir, env=env, limits=program.limits, stdin=program.stdin, live_stdin=typed
            )
        finally:
            if typed is not None:
                typed.close()
        assert processes_of(uid) == [], "a process of the run survived it"
        return outcome


def _replace(outcome: StageOutcome, old: str, new: str) -> StageOutcome:
    stdout, stderr = (stream.replace(old.encode(), new.encode()) for stream in (outcome.stdout, outcome.stderr))
    return StageOutcome(**{**vars(outcome), "stdout": stdout, "stderr": stderr})


def _observable(outcome: StageOutcome) -> tuple[object, ...]:
    return (outcome.exit_code, outcome.signal, outcome.limit_exceeded, outcome.stdout, outcome.stderr)


@pytest.fixture(params=WARM, ids=[language.name for language in WARM])
def runs(request: pytest.FixtureRequest, launcher: SandboxLauncher) -> Runs:
    return Runs(launcher, request.param)


def test_the_languages_that_start_warm() -> None:
    assert [language.name for language in WARM] == ["python"]


def test_identity_environment_and_empty_stdin_are_the_same(runs: Runs) -> None:
    outcome = runs.both(Program(IDENTITY[runs.language.name]))
    assert outcome.exit_code == 0, outcome.stderr
    assert b"main." in outcome.stdout


def test_arguments_and_given_stdin_are_the_same(runs: Runs) -> None:
    # A run with arguments is not the warm start's own run: the warm sandbox gives way to a plain one.
    program = Program(IDENTITY[runs.language.name], ("a b", "-x", ""), b"given\nlines\n", fits_warm=False)
    outcome = runs.both(program)
    assert outcome.exit_code == 0, outcome.stderr
    assert b"a b" in outcome.stdout and b"given" in outcome.stdout


def test_given_stdin_without_arguments_is_the_same(runs: Runs) -> None:
    outcome = runs.both(Program(IDENTITY[runs.language.name], stdin=b"given\n" * 10_000))
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout.count(b"given") == 10_000


def test_typed_stdin_is_the_same(runs: Runs) -> None:
    program = Program(ECHO_LINES[runs.language.name], stdin=b"given\n", typed=(b"typed 1\n", b"typed 2\n"))
    outcome = runs.both(program)
    assert (outcome.exit_code, outcome.stdout) == (0, b"got given\ngot typed 1\ngot typed 2\n"), outcome.stderr


def test_an_uncaught_exception_shows_only_the_users_file(runs: Runs) -> None:
    outcome = runs.both(Program(TRACEBACK[runs.language.name]))
    assert outcome.exit_code != 0
    assert b"boom" in outcome.stderr + outcome.stdout
    assert b"{workdir}/main." in outcome.stderr + outcome.stdout


@pytest.mark.parametrize("exit_3", [False, True])
def test_exit_codes_are_the_same(runs: Runs, exit_3: bool) -> None:
    source = EXIT_3[runs.language.name] if exit_3 else BUSY[runs.language.name].format(ms=0)
    outcome = runs.both(Program(source))
    assert (outcome.exit_code, outcome.signal) == ((3, None) if exit_3 else (0, None))


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGSEGV"])
def test_deaths_by_signal_are_the_same(runs: Runs, signal_name: str) -> None:
    name = runs.language.name
    outcome = runs.both(Program(KILL_SELF[name].format(PHP_SIGNALS[signal_name] if name == "php" else signal_name)))
    assert (outcome.exit_code, outcome.signal) == (None, getattr(signal, signal_name))


def test_the_cpu_limit_is_not_charged_the_interpreters_start(runs: Runs) -> None:
    limits = Limits(wall_time_ms=5000, cpu_time_ms=200, memory_mb=256)
    outcome = runs.run(Program(BUSY[runs.language.name].format(ms=150), limits=limits), warm=True)
    assert (outcome.exit_code, outcome.limit_exceeded, outcome.stdout) == (0, None, b"done\n"), outcome
    assert outcome.cpu_time_ms < 200


def test_a_program_spinning_forever_is_stopped_at_the_cpu_limit(runs: Runs) -> None:
    program = Program(SPIN[runs.language.name], limits=Limits(wall_time_ms=5000, cpu_time_ms=200, memory_mb=256))
    outcome = runs.both(program)
    assert outcome.limit_exceeded == LimitExceeded.CPU_TIME
    warm = runs.run(program, warm=True)
    assert 200 <= warm.cpu_time_ms < 600


def test_the_memory_limit_is_enforced(runs: Runs) -> None:
    limits = Limits(wall_time_ms=10_000, cpu_time_ms=5000, memory_mb=96)
    outcome = runs.both(Program(HOG[runs.language.name], limits=limits))
    assert outcome.limit_exceeded == LimitExceeded.MEMORY


def test_a_memory_limit_under_the_interpreters_own_is_the_same(runs: Runs) -> None:
    # The warm interpreter is over it already (measured: 3.8 to 6.6 MB): it gives way to a plain start, which
    # meets the limit itself. A waiting plain sandbox holds 1.0 to 1.3 MB: cgroup v1 refuses (EBUSY) a limit
    # under a group's usage, which no run's limit is (the API's least is 32 MB).
    limits = Limits(wall_time_ms=10_000, cpu_time_ms=5000, memory_mb=2)
    runs.both(Program(IDENTITY[runs.language.name], limits=limits, fits_warm=False))


def test_the_wall_clock_starts_with_the_program(runs: Runs) -> None:
    limits = Limits(wall_time_ms=1000, cpu_time_ms=1000, memory_mb=256)
    runs.prepare_next(warm=True)
    time.sleep(1.2)  # the interpreter has waited longer than its program may take
    done = runs.run_prepared(Program(SLEEP[runs.language.name].format(s=0.7), limits=limits), warm=True)
    assert (done.exit_code, done.limit_exceeded, done.stdout) == (0, None, b"done\n"), done
    assert 700 <= done.wall_time_ms < 1000
    stopped = runs.both(Program(SLEEP[runs.language.name].format(s=30), limits=limits))
    assert stopped.limit_exceeded == LimitExceeded.WALL_TIME


def test_a_run_of_another_language_gets_a_plain_sandbox(launcher: SandboxLauncher) -> None:
    python, php = by_name("python"), by_name("php")
    assert python is not None and php is not None
    Runs(launcher, python).prepare_next(warm=True)
    with launcher.workspace() as workdir:
        sandbox = launcher._executions[workdir].sandbox
        assert sandbox is not None and sandbox.warm
        outcome = Runs(launcher, php).run_in(workdir, Program(IDENTITY["php"]))
        assert sorted(path.name for path in workdir.iterdir()) == ["main.php"]
    assert outcome.exit_code == 0, outcome.stderr
    assert b'"main.php"' in outcome.stdout and b"main.py" not in outcome.stdout
