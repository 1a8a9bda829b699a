"""run_captured and the UnconfinedLauncher against real child processes."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from executor.launcher import LimitExceeded, Limits
from executor.process import UnconfinedLauncher, run_captured

ENV = {"PATH": "/usr/bin:/bin"}
CAP = 64 * 1024


def sh(script: str, tmp_path: Path, *, timeout_s: float = 10, cap: int = CAP):
    return run_captured(["sh", "-c", script], cwd=tmp_path, env=ENV, wall_timeout_s=timeout_s, output_limit_bytes=cap)


def alive(pid: int) -> bool:
    """True while pid is a live (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_gone(pid: int, within_s: float = 2.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.01)
    return False


def test_exit_code_and_output(tmp_path: Path) -> None:
    captured = sh("echo out; echo err >&2; exit 3", tmp_path)
    assert (captured.returncode, captured.signal) == (3, None)
    assert (captured.stdout, captured.stderr) == (b"out\n", b"err\n")
    assert not (captured.timed_out or captured.output_exceeded)
    assert not (captured.stdout_truncated or captured.stderr_truncated)


def test_death_by_signal(tmp_path: Path) -> None:
    captured = sh("kill -SEGV $$", tmp_path)
    assert captured.returncode is None
    assert captured.signal == signal.SIGSEGV


def test_stdin_is_closed(tmp_path: Path) -> None:
    started = time.monotonic()
    captured = sh("cat; echo done", tmp_path)
    assert captured.stdout == b"done\n"
    assert time.monotonic() - started < 2


def fed(script: str, tmp_path: Path, stdin: bytes, *, timeout_s: float = 10, cap: int = 4 * 1024 * 1024):
    return run_captured(
        ["sh", "-c", script], cwd=tmp_path, env=ENV, wall_timeout_s=timeout_s, output_limit_bytes=cap, stdin=stdin
    )


def test_stdin_is_fed_then_closed(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: far more than a pipe holds
    captured = fed("cat; echo done >&2", tmp_path, data)
    assert (captured.returncode, captured.stdout, captured.stderr) == (0, data, b"done\n")


def test_a_program_that_never_reads_its_stdin_is_not_waited_for(tmp_path: Path) -> None:
    started = time.monotonic()
    captured = fed("echo ignored", tmp_path, b"x" * (4 * 1024 * 1024))
    assert (captured.returncode, captured.stdout, captured.timed_out) == (0, b"ignored\n", False)
    assert time.monotonic() - started < 5


def test_a_program_that_stops_reading_still_times_out(tmp_path: Path) -> None:
    captured = fed("head -c 10 >/dev/null; sleep 30", tmp_path, b"x" * (4 * 1024 * 1024), timeout_s=0.5)
    assert captured.timed_out and captured.signal == signal.SIGKILL


class TypedInput:
    """Live stdin as a client would type it: `send` from another thread, then `close`."""

    def __init__(self) -> None:
        self.wakeup_fd, self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._pending: list[bytes] = []
        self._eof = False

    def send(self, data: bytes) -> None:
        self._pending.append(data)
        os.write(self._wake, b"1")

    def close(self) -> None:
        self._eof = True
        os.write(self._wake, b"1")

    def take(self) -> tuple[bytes, bool]:
        while True:
            try:
                os.read(self.wakeup_fd, 64)
            except BlockingIOError:
                break
        data, self._pending = b"".join(self._pending), []
        return data, self._eof


def typed(script: str, tmp_path: Path, live: TypedInput, *, stdin: bytes = b"", timeout_s: float = 10):
    return run_captured(
        ["sh", "-c", script],
        cwd=tmp_path,
        env=ENV,
        wall_timeout_s=timeout_s,
        output_limit_bytes=CAP,
        stdin=stdin,
        live_stdin=live,
    )


def test_live_stdin_reaches_the_program_as_it_is_typed_then_closes(tmp_path: Path) -> None:
    live = TypedInput()
    seen: list[bytes] = []

    def type_after_each_prompt() -> None:
        for answer in (b"7\n", b"42\n"):
            time.sleep(0.2)
            seen.append(answer)
            live.send(answer)
        time.sleep(0.2)
        live.close()

    threading.Thread(target=type_after_each_prompt, daemon=True).start()
    started = time.monotonic()
    captured = typed("read a; echo got $a; read b; echo got $b; cat; echo eof", tmp_path, live, stdin=b"first\n")
    assert captured.stdout == b"got first\ngot 7\n42\neof\n"
    assert captured.returncode == 0 and not captured.timed_out
    assert 0.6 <= time.monotonic() - started < 5  # it waited for the typing, and ended at the end of file


def test_live_stdin_left_open_waits_out_the_time_limit(tmp_path: Path) -> None:
    captured = typed("cat", tmp_path, TypedInput(), timeout_s=0.5)
    assert captured.timed_out and captured.signal == signal.SIGKILL


def test_live_stdin_after_the_program_closed_its_stdin_is_dropped(tmp_path: Path) -> None:
    live = TypedInput()
    threading.Timer(0.2, live.send, (b"too late\n",)).start()
    threading.Timer(0.4, live.close).start()
    captured = typed("exec 0<&-; sleep 0.6; echo done", tmp_path, live)
    assert (captured.returncode, captured.stdout) == (0, b"done\n")


def test_cwd_and_env_are_exactly_the_given_ones(tmp_path: Path) -> None:
    captured = run_captured(
        ["env"], cwd=tmp_path, env={**ENV, "ONLY": "this"}, wall_timeout_s=5, output_limit_bytes=CAP
    )
    assert sorted(captured.stdout.decode().splitlines()) == ["ONLY=this", "PATH=/usr/bin:/bin"]
    assert sh("pwd", tmp_path).stdout.decode().strip() == str(tmp_path)


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_flood_is_capped_and_killed_fast(tmp_path: Path, stream: str) -> None:
    target = "sys.stdout" if stream == "stdout" else "sys.stderr"
    program = f"import sys\n{target}.buffer.write(b'FIRST');{target}.buffer.write(b'x' * 100_000_000)"
    started = time.monotonic()
    captured = run_captured(
        ["python3", "-c", program], cwd=tmp_path, env=ENV, wall_timeout_s=30, output_limit_bytes=CAP
    )
    assert time.monotonic() - started < 2
    kept = getattr(captured, stream)
    assert len(kept) == CAP
    assert kept.startswith(b"FIRSTxxx")
    assert getattr(captured, f"{stream}_truncated")
    assert captured.output_exceeded
    assert captured.signal == signal.SIGKILL
    assert not captured.timed_out


def test_output_exactly_at_the_cap_is_not_truncated(tmp_path: Path) -> None:
    captured = sh(f"head -c {CAP} /dev/zero", tmp_path)
    assert len(captured.stdout) == CAP
    assert not captured.stdout_truncated
    assert captured.returncode == 0


def python_flood(steps: str) -> list[str]:
    return ["python3", "-c", f"import os\nchunk = b'x' * {CAP}\n{steps}"]


def test_both_streams_flooded_at_once_are_both_cut(tmp_path: Path) -> None:
    # Whether the second stream's next chunk was read before the first one stopped the run is a race
    # (the read that left it exactly full lost it about one time in five): hence the repetitions.
    for _ in range(20):
        captured = run_captured(
            python_flood("while True:\n    os.write(1, chunk)\n    os.write(2, chunk)\n"),
            cwd=tmp_path,
            env=ENV,
            wall_timeout_s=10,
            output_limit_bytes=CAP,
        )
        assert captured.output_exceeded
        assert (len(captured.stdout), len(captured.stderr)) == (CAP, CAP)
        assert captured.stdout_truncated and captured.stderr_truncated


def test_a_full_stream_counts_as_cut_when_the_other_one_stops_the_run(tmp_path: Path) -> None:
    captured = run_captured(
        python_flood("os.write(2, chunk)\nwhile True:\n    os.write(1, chunk)\n"),
        cwd=tmp_path,
        env=ENV,
        wall_timeout_s=10,
        output_limit_bytes=CAP,
    )
    assert captured.output_exceeded
    assert captured.stderr == b"x" * CAP
    assert captured.stderr_truncated  # what the program had yet to write there is lost with it


def test_wall_timeout_kills_the_program(tmp_path: Path) -> None:
    started = time.monotonic()
    captured = sh("sleep 30", tmp_path, timeout_s=0.3)
    elapsed = time.monotonic() - started
    assert captured.timed_out
    assert captured.signal == signal.SIGKILL
    assert 0.3 <= elapsed < 1.5
    assert 300 <= captured.wall_time_ms < 1500


def test_background_children_in_the_group_die_with_the_program(tmp_path: Path) -> None:
    """The program exits at once, leaving a child that holds stdout: killed, and the call returns at once."""
    started = time.monotonic()
    captured = sh("sleep 30 & echo $!", tmp_path)
    assert time.monotonic() - started < 2
    assert captured.returncode == 0 and not captured.timed_out
    assert wait_gone(int(captured.stdout))


def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    captured = sh(f"sleep 30 & echo $! > {pid_file}; sleep 30", tmp_path, timeout_s=0.3)
    assert captured.timed_out
    assert wait_gone(int(pid_file.read_text()))


def test_setsid_child_escapes_the_process_group_kill(tmp_path: Path) -> None:
    """What the unconfined mode cannot do: a child in its own session survives killpg.

    The sandbox's cgroup kill catches it. The call itself still returns by the deadline although
    the escapee holds the output pipes.
    """
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    # The child writes its pid once it has its own session; the program waits for that, then exits.
    script = f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 30' & until [ -s {pid_file} ]; do sleep 0.01; done"
    captured = sh(script, tmp_path, timeout_s=0.5)
    escaped = int(pid_file.read_text())
    try:
        assert time.monotonic() - started < 2
        assert captured.returncode == 0
        assert not captured.timed_out  # the program itself ended in time
        assert alive(escaped)
        assert os.getsid(escaped) == escaped
    finally:
        os.kill(escaped, signal.SIGKILL)


def test_cpu_time_comes_from_rusage(tmp_path: Path) -> None:
    program = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    captured = run_captured(
        ["python3", "-c", program], cwd=tmp_path, env=ENV, wall_timeout_s=10, output_limit_bytes=CAP
    )
    assert captured.returncode == 0
    assert captured.cpu_time_ms >= 250
    assert captured.maxrss_kb > 0


def test_custom_kill_is_used_and_called_before_reaping(tmp_path: Path) -> None:
    calls: list[int] = []
    pid_file = tmp_path / "pid"

    def kill() -> None:
        calls.append(1)
        os.killpg(int(pid_file.read_text()), signal.SIGKILL)

    captured = run_captured(
        ["sh", "-c", f"echo $$ > {pid_file}; sleep 30"],
        cwd=tmp_path,
        env=ENV,
        wall_timeout_s=0.3,
        output_limit_bytes=CAP,
        kill=kill,
    )
    assert captured.timed_out and captured.signal == signal.SIGKILL
    assert len(calls) >= 1


def test_no_file_descriptor_leaks(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        sh("echo hi", tmp_path)
    sh("sleep 5", tmp_path, timeout_s=0.05)
    assert len(os.listdir("/proc/self/fd")) == before


def test_missing_program_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_captured(["/nonexistent/program"], cwd=tmp_path, env=ENV, wall_timeout_s=1, output_limit_bytes=CAP)


# --- UnconfinedLauncher ---


def limits(**overrides: int) -> Limits:
    return Limits(**{"wall_time_ms": 5000, "cpu_time_ms": 5000, "memory_mb": 256, **overrides})


def test_workspace_is_private_and_removed(tmp_path: Path) -> None:
    launcher = UnconfinedLauncher(tmp_path / "runs")
    with launcher.workspace() as first, launcher.workspace() as second:
        assert first != second
        assert first.parent == tmp_path / "runs"
        assert first.stat().st_mode & 0o777 == 0o700
        (first / "file").write_text("x")
    assert not first.exists() and not second.exists()
    assert launcher.mode == "none"


def test_launcher_runs_in_the_workdir_with_exactly_the_env(tmp_path: Path) -> None:
    launcher = UnconfinedLauncher(tmp_path)
    with launcher.workspace() as workdir:
        outcome = launcher.run(["sh", "-c", "pwd; env"], workdir=workdir, env=ENV, limits=limits())
    lines = outcome.stdout.decode().splitlines()
    assert lines[0] == str(workdir)
    assert sorted(lines[1:]) == ["PATH=/usr/bin:/bin", "PWD=" + str(workdir)]  # PWD is sh's own
    assert (outcome.exit_code, outcome.signal, outcome.limit_exceeded) == (0, None, None)


def test_launcher_cpu_limit(tmp_path: Path) -> None:
    launcher = UnconfinedLauncher(tmp_path)
    with launcher.workspace() as workdir:
        outcome = launcher.run(
            ["python3", "-c", "while True: pass"],
            workdir=workdir,
            env=ENV,
            limits=limits(cpu_time_ms=1000, wall_time_ms=10_000),
        )
    assert outcome.limit_exceeded == LimitExceeded.CPU_TIME
    assert outcome.signal in (signal.SIGXCPU, signal.SIGKILL)
    assert outcome.wall_time_ms < 9000  # under the 10 s wall limit: the CPU limit tripped first


def test_launcher_wall_limit(tmp_path: Path) -> None:
    launcher = UnconfinedLauncher(tmp_path)
    with launcher.workspace() as workdir:
        outcome = launcher.run(["sleep", "30"], workdir=workdir, env=ENV, limits=limits(wall_time_ms=300))
    assert outcome.limit_exceeded == LimitExceeded.WALL_TIME
    assert outcome.wall_time_ms < 1500


def test_launcher_output_limit(tmp_path: Path) -> None:
    launcher = UnconfinedLauncher(tmp_path)
    with launcher.workspace() as workdir:
        outcome = launcher.run(["sh", "-c", "yes"], workdir=workdir, env=ENV, limits=limits(output_limit_bytes=CAP))
    assert outcome.limit_exceeded == LimitExceeded.OUTPUT
    assert outcome.stdout_truncated and len(outcome.stdout) == CAP
    assert outcome.stdout.startswith(b"y\ny\n")


def test_launcher_file_size_limit(tmp_path: Path) -> None:
    launcher = UnconfinedLauncher(tmp_path)
    with launcher.workspace() as workdir:
        outcome = launcher.run(
            ["sh", "-c", "head -c 2000000 /dev/zero > big"],
            workdir=workdir,
            env=ENV,
            limits=limits(max_file_bytes=1_000_000),
        )
        assert (workdir / "big").stat().st_size <= 1_000_000
    assert outcome.exit_code != 0 or outcome.signal == signal.SIGXFSZ
