"""The `lce` command as the project's setup installs it (.venv/bin/lce), against the real stack: runs
in several languages with input, arguments, limits and test folders; exit statuses; the session and
status commands; an interactive run and the spinner in a pseudo-terminal (the `pty` module)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack import Stack
from lce_client import Client, RunOptions
from lce_client.programs import EXIT_ERROR, EXIT_FAILED, EXIT_TESTS_FAILED, EXIT_TIMEOUT
from tests.conftest import free_port
from tests.integration.test_interactive import GUESS_THE_NUMBER, Player

pytestmark = pytest.mark.integration

LCE = Path(sys.executable).parent / "lce"
HELLO = "import sys\nprint('hello', sys.argv[1:])\nprint('to stderr', file=sys.stderr)\nsys.exit(3)\n"
ADD = "a, b = map(int, input().split())\nprint(a + b)\n"
SPINNER_FRAME = re.compile(rb"\r([|/\\-]) queued \(")
Lce = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def env(stack: Stack) -> dict[str, str]:
    clean = {name: value for name, value in os.environ.items() if name not in ("LCE_URL", "LCE_API_KEY")}
    return {**clean, "LCE_URL": stack.config.gateway_url}


@pytest.fixture
def lce(env: dict[str, str], tmp_path: Path) -> Lce:
    """Runs `lce ARGS` in tmp_path; stdin from `given`."""

    def command(*args: str, given: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LCE), *args], input=given, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
        )

    return command


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_setup_installs_one_command() -> None:
    assert LCE.is_file() and os.access(LCE, os.X_OK)
    shown = subprocess.run([str(LCE), "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0
    assert all(command in shown.stdout for command in ("run", "languages", "session", "status"))


def test_run_shows_stdout_and_stderr_apart_and_exits_as_the_program(lce: Lce, tmp_path: Path) -> None:
    write(tmp_path, "hello.py", HELLO)
    done = lce("run", "hello.py", "--arg", "a", "--arg", "b c")
    assert (done.returncode, done.stdout, done.stderr) == (3, "hello ['a', 'b c']\n", "to stderr\n")


@pytest.mark.parametrize(
    ("name", "source", "expected"),
    [
        ("hi.c", '#include <stdio.h>\nint main(void) { printf("c says hi\\n"); return 0; }\n', "c says hi\n"),
        ("hi.js", "console.log('js says hi');\n", "js says hi\n"),
        ("hi.rb", "puts 'ruby says hi'\nexit 7\n", "ruby says hi\n"),
    ],
)
def test_the_language_comes_from_the_extension(lce: Lce, tmp_path: Path, name: str, source: str, expected: str) -> None:
    write(tmp_path, name, source)
    done = lce("run", name)
    assert done.stdout == expected, done.stderr
    assert done.returncode == (7 if name.endswith(".rb") else 0)


def test_lang_names_the_language_when_the_extension_does_not(lce: Lce, tmp_path: Path) -> None:
    write(tmp_path, "script", "print(6 * 7)\n")
    refused = lce("run", "script")
    assert refused.returncode == EXIT_ERROR and "--lang" in refused.stderr
    assert lce("run", "script", "--lang", "python").stdout == "42\n"
    unknown = lce("run", "script", "--lang", "cobol")
    assert unknown.returncode == EXIT_ERROR and "python" in unknown.stderr


def test_stdin_from_a_file_and_from_ours(lce: Lce, tmp_path: Path) -> None:
    write(tmp_path, "add.py", ADD)
    write(tmp_path, "numbers.txt", "40 2\n")
    assert lce("run", "add.py", "--stdin", "numbers.txt").stdout == "42\n"
    assert lce("run", "add.py", "--stdin", "-", given="5 6\n").stdout == "11\n"
    missing = lce("run", "add.py", "--stdin", "absent.txt")
    assert missing.returncode == EXIT_ERROR and "absent.txt" in missing.stderr


def test_a_program_of_several_files(lce: Lce, tmp_path: Path) -> None:
    write(tmp_path, "main.py", "from helper import greet\nfrom lib.numbers import twice\nprint(greet(), twice(21))\n")
    write(tmp_path, "helper.py", "def greet():\n    return 'files say'\n")
    write(tmp_path, "lib/numbers.py", "def twice(n):\n    return 2 * n\n")
    done = lce("run", "main.py", "helper.py", "lib/numbers.py")
    assert (done.returncode, done.stdout) == (0, "files say 42\n"), done.stderr


def test_limits_and_the_statuses_without_an_exit_code(lce: Lce, tmp_path: Path) -> None:
    write(tmp_path, "loop.py", "while True:\n    pass\n")
    timed_out = lce("run", "loop.py", "--time-limit", "300")
    assert timed_out.returncode == EXIT_TIMEOUT
    assert "TIMEOUT: time_limit_exceeded" in timed_out.stderr and "may never end" in timed_out.stderr
    write(tmp_path, "hog.py", "x = bytearray(200 * 1024 * 1024)\nprint(len(x))\n")
    hogged = lce("run", "hog.py", "--memory-limit", "64")
    assert (hogged.returncode, hogged.stdout) == (EXIT_FAILED, "")
    assert "memory_limit_exceeded" in hogged.stderr
    write(tmp_path, "crash.c", "int main(void) { volatile int *p = 0; return *p; }\n")
    assert lce("run", "crash.c").returncode == 128 + 11  # SIGSEGV, as a shell says it
    write(tmp_path, "broken.c", "int main(void) { syntax error }\n")
    broken = lce("run", "broken.c")
    assert broken.returncode == EXIT_FAILED and "error" in broken.stderr and "compile_error" in broken.stderr
    refused = lce("run", "loop.py", "--time-limit", "5")
    assert refused.returncode == EXIT_ERROR and "400" in refused.stderr and "time_limit_ms" in refused.stderr


def test_a_test_folder_that_passes_and_one_that_fails(lce: Lce, tmp_path: Path) -> None:
    write(tmp_path, "add.py", ADD)
    for name, given, expected in (("1", "2 3\n", "5\n"), ("2", "10 20\n", "30\n"), ("10", "0 0\n", "0\n")):
        write(tmp_path, f"good/{name}.in", given)
        write(tmp_path, f"good/{name}.out", expected)
    passed = lce("run", "add.py", "--tests", "good")
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout.splitlines() == ["1: passed", "2: passed", "10: passed", "3/3 passed"]
    write(tmp_path, "bad/a.in", "1 1\n")
    write(tmp_path, "bad/a.out", "3\n")
    write(tmp_path, "bad/b.in", "1 2\n")
    write(tmp_path, "bad/b.out", "3\n")
    failed = lce("run", "add.py", "--tests", "bad")
    assert failed.returncode == EXIT_TESTS_FAILED
    assert failed.stdout.splitlines() == ["a: FAILED: wrong output", "b: passed", "1/2 passed"]
    write(tmp_path, "lonely/1.in", "1 1\n")
    lonely = lce("run", "add.py", "--tests", "lonely")
    assert lonely.returncode == EXIT_ERROR and "1.out is missing" in lonely.stderr


def test_json_prints_the_finished_execution(lce: Lce, tmp_path: Path) -> None:
    write(tmp_path, "hello.py", HELLO)
    done = lce("run", "hello.py", "--json", "--arg", "x")
    execution = json.loads(done.stdout)
    assert (execution["status"], execution["exit_code"], execution["reason"]) == ("FAILED", 3, "runtime_error")
    assert (execution["stdout"], execution["stderr"]) == ("hello ['x']\n", "to stderr\n")
    assert done.returncode == 3 and done.stderr == ""


def test_languages(lce: Lce) -> None:
    listed = lce("languages")
    assert listed.returncode == 0
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names == ["c", "cpp", "go", "java", "javascript", "php", "python", "ruby"]
    as_json = json.loads(lce("languages", "--json").stdout)
    assert {language["name"] for language in as_json} == set(names) and all(lang["id"] for lang in as_json)


def test_session_commands(lce: Lce, tmp_path: Path) -> None:
    write(tmp_path, "main.py", "print('first')\n")
    created = json.loads(lce("session", "create", "main.py").stdout)
    assert created["status"] == "ACTIVE"
    session_id = created["session_id"]
    shown = json.loads(lce("session", "get", session_id).stdout)
    assert (shown["language_name"], shown["source_code"], shown["files"]) == ("python", "print('first')\n", [])
    write(tmp_path, "main.py", "from helper import word\nprint(word)\n")
    write(tmp_path, "helper.py", "word = 'second'\n")
    assert json.loads(lce("session", "update", session_id, "main.py", "helper.py").stdout)["status"] == "ACTIVE"
    shown = json.loads(lce("session", "get", session_id).stdout)
    assert shown["files"] == [{"name": "helper.py", "content": "word = 'second'\n"}]
    template = json.loads(lce("session", "create", "--lang", "go").stdout)
    assert "fmt.Println" in json.loads(lce("session", "get", template["session_id"]).stdout)["source_code"]
    assert json.loads(lce("session", "executions", session_id).stdout) == []
    assert json.loads(lce("session", "close", session_id).stdout)["status"] == "INACTIVE"
    refused = lce("session", "update", session_id, "main.py")
    assert refused.returncode == EXIT_ERROR and "409" in refused.stderr
    unknown = lce("session", "get", "00000000-0000-4000-8000-000000000000")
    assert unknown.returncode == EXIT_ERROR and "404" in unknown.stderr


def test_status_and_watch(lce: Lce, stack: Stack) -> None:
    with Client(stack.config.gateway_url) as client:
        python = next(language.id for language in client.languages() if language.name == "python")
        session = client.create_session(python, "import time\ntime.sleep(1)\nprint('slept')\nraise SystemExit(5)\n")
        execution_id = client.run(session.session_id).execution_id
    watched = lce("status", execution_id, "--watch")
    assert watched.returncode == 5
    assert [line.split()[0] for line in watched.stderr.splitlines()][-2:] == ["RUNNING", "FAILED"]
    assert json.loads(watched.stdout)["stdout"] == "slept\n"
    shown = lce("status", execution_id)
    assert shown.returncode == 0 and json.loads(shown.stdout)["exit_code"] == 5


def test_the_target_from_flags_or_the_environment(lce: Lce, stack: Stack, tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    unreachable = lce("--url", nowhere, "languages")
    assert unreachable.returncode == EXIT_ERROR and f"cannot reach the LCE gateway at {nowhere}" in unreachable.stderr
    # The flag wins over LCE_URL, before or after the command.
    assert lce("languages", "--url", stack.config.gateway_url).returncode == 0
    env = {**os.environ, "LCE_URL": nowhere}
    flagged = subprocess.run(
        [str(LCE), "--url", stack.config.gateway_url, "languages"], capture_output=True, env=env, timeout=60
    )
    assert flagged.returncode == 0


class Terminal:
    """A command in a pseudo-terminal: stdin, stdout and stderr are its terminal, as in a shell."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd)
        os.close(slave)
        self.seen = b""

    def chunks(self, timeout_s: float) -> Iterator[bytes]:
        """What the command writes, as it comes, until it closes the terminal."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every end of the terminal's other side is closed
                return
            if not data:
                return
            self.seen += data
            yield data
        raise AssertionError(f"still running after {timeout_s} s: {self.seen!r}")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self) -> int:
        for _ in self.chunks(60):
            pass
        os.close(self.master)
        return self.process.wait(timeout=30)


def screen_lines(text: str) -> list[str]:
    """Lines as a terminal leaves them: carriage returns gone, what a line was cleared of (ESC [K) gone."""
    return [re.sub(r".*\x1b\[K", "", line.replace("\r", "")) for line in text.split("\n")]


def test_an_interactive_run_in_a_terminal(env: dict[str, str], tmp_path: Path) -> None:
    write(tmp_path, "guess.py", GUESS_THE_NUMBER)
    terminal = Terminal([str(LCE), "run", "guess.py", "--interactive", "--arg", "37"], env, tmp_path)
    player, pending = Player(), ""
    for data in terminal.chunks(60):
        pending += data.decode(errors="replace")
        *lines, pending = pending.split("\n")
        for line in screen_lines("\n".join(lines)) if lines else []:
            for guess in player.answers(line + "\n"):
                terminal.type(guess)  # what a person types, echoed by the terminal
    assert terminal.finish() == 0, terminal.seen
    screen = screen_lines(terminal.seen.decode())
    assert "correct in 3" in screen  # 50, 25, 37
    assert "25" in screen  # the terminal echoed what was typed


def test_an_interactive_run_ends_its_input_at_ctrl_d(env: dict[str, str], tmp_path: Path) -> None:
    write(tmp_path, "count.py", "import sys\nprint('lines:', len(sys.stdin.readlines()))\n")
    terminal = Terminal([str(LCE), "run", "count.py", "--interactive"], env, tmp_path)
    terminal.type("one\ntwo\n\x04")
    assert terminal.finish() == 0
    assert "lines: 2" in screen_lines(terminal.seen.decode())


def test_a_spinner_while_queued_on_a_terminal_only(stack: Stack, env: dict[str, str], tmp_path: Path) -> None:
    write(tmp_path, "quick.py", "print('ran')\n")
    with Client(stack.config.gateway_url) as client:
        python = next(language.id for language in client.languages() if language.name == "python")
        # Both executors busy for a while: the next run waits in the queue.
        sleepers = []
        for _ in range(2):
            session = client.create_session(python, "import time\ntime.sleep(3)\n")
            sleepers.append(client.run(session.session_id, RunOptions(time_limit_ms=10_000)).execution_id)
        deadline = time.monotonic() + 30
        while any(client.execution(e).status == "QUEUED" for e in sleepers) and time.monotonic() < deadline:
            time.sleep(0.05)
        piped = subprocess.Popen(
            [str(LCE), "run", "quick.py"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path
        )
        terminal = Terminal([str(LCE), "run", "quick.py"], env, tmp_path)
        assert terminal.finish() == 0
        out, err = piped.communicate(timeout=60)
        for execution_id in sleepers:
            client.wait(execution_id)
    frames = {match.group(1) for match in SPINNER_FRAME.finditer(terminal.seen)}
    assert len(frames) >= 3, terminal.seen  # it turned while the run was queued
    assert terminal.seen.rstrip().endswith(b"\x1b[Kran")  # its line cleared before the output
    assert (piped.returncode, out, err) == (0, b"ran\n", b"")  # into a pipe: no spinner at all
