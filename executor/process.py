"""Spawning a program and capturing its output, and the unconfined development launcher built on it.

`start` and `capture` (together: `run_captured`) are the one place in the executor that starts
a child process: every launcher (this module's UnconfinedLauncher, the sandbox's bwrap launcher)
goes through them, so output caps, the wall clock, killing and reaping are implemented once.
They are two steps so that a sandbox can be started before its job arrives and released later.

The worker process holds gRPC channels, whose threads make `preexec_fn` unsafe (it can
deadlock between fork and exec), so nothing runs in the child before exec: limits are applied
by a program in front of the command (`prlimit` here, a shell inside `bwrap` in the sandbox).
"""

from __future__ import annotations

import logging
import math
import os
import resource
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from executor.launcher import LimitExceeded, Limits, LiveStdin, StageOutcome

log = logging.getLogger(__name__)

_READ_CHUNK = 64 * 1024
# Told each chunk of output as it is read ("stdout" or "stderr", the bytes kept of it).
OutputListener = Callable[[str, bytes], None]
PRLIMIT = "/usr/bin/prlimit"


@dataclass(frozen=True)
class Captured:
    """What one child did: how it ended, what it cost (from wait4), what it wrote."""

    returncode: int | None  # None when a signal ended it
    signal: int | None
    wall_time_ms: int
    cpu_time_ms: int  # user + system time of the child and the descendants it reaped
    maxrss_kb: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool  # killed at the wall timeout
    output_exceeded: bool  # killed because a stream passed output_limit_bytes


class _Streams:
    """Both output pipes, read as they fill, each kept up to the cap."""

    def __init__(
        self, stdout: IO[bytes], stderr: IO[bytes], limit: int, on_output: OutputListener | None = None
    ) -> None:
        self.limit = limit
        self.on_output = on_output
        self.names = {stdout.fileno(): "stdout", stderr.fileno(): "stderr"}
        self.data = {"stdout": bytearray(), "stderr": bytearray()}
        self.over_cap = {"stdout": False, "stderr": False}  # more was read than kept

    def read(self, fd: int) -> bool:
        """Reads what is there; False at end of stream."""
        chunk = os.read(fd, _READ_CHUNK)
        if not chunk:
            return False
        name = self.names[fd]
        kept = self.data[name]
        room = self.limit - len(kept)
        kept += chunk[:room]
        if self.on_output is not None and room > 0:
            self.on_output(name, chunk[:room])
        if len(chunk) > room:
            self.over_cap[name] = True
        return True

    @property
    def exceeded(self) -> bool:
        return any(self.over_cap.values())

    def truncated(self, name: str) -> bool:
        """Whether the stream was cut: it passed the cap, or it was full when the other one stopped the run.

        Reading stops at that stop, so what else was pending in a full stream is never seen (both
        flooded at once): a full stream counts as cut.
        """
        return self.over_cap[name] or (self.exceeded and len(self.data[name]) >= self.limit)


def run_captured(
    argv: Sequence[str],
    *,
    cwd: Path | str,
    env: Mapping[str, str],
    wall_timeout_s: float,
    output_limit_bytes: int,
    kill: Callable[[], None] | None = None,
    pass_fds: Collection[int] = (),
    stdin: bytes = b"",
    live_stdin: LiveStdin | None = None,
    on_output: OutputListener | None = None,
) -> Captured:
    """Runs argv with `stdin` fed to it, capturing at most output_limit_bytes per stream (see capture)."""
    child = start(argv, cwd=cwd, env=env, pass_fds=pass_fds, command_pipe=True)
    return capture(
        child,
        wall_timeout_s=wall_timeout_s,
        output_limit_bytes=output_limit_bytes,
        kill=kill,
        stdin=stdin,
        live_stdin=live_stdin,
        on_output=on_output,
    )


def start(
    argv: Sequence[str],
    *,
    cwd: Path | str,
    env: Mapping[str, str],
    pass_fds: Collection[int] = (),
    command_pipe: bool = False,
) -> subprocess.Popen[bytes]:
    """Starts argv in a new session with its output piped, for `capture`.

    Its stdin is closed, or with command_pipe a pipe that `capture` writes into: the command a sandbox
    started ahead of its job waits for (executor/sandbox/prespawn.py), then the program's stdin.
    """
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.PIPE if command_pipe else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
        pass_fds=tuple(pass_fds),
    )


def capture(
    child: subprocess.Popen[bytes],
    *,
    wall_timeout_s: float,
    output_limit_bytes: int,
    kill: Callable[[], None] | None = None,
    command: bytes = b"",
    stdin: bytes = b"",
    live_stdin: LiveStdin | None = None,
    on_output: OutputListener | None = None,
    release: Callable[[], None] | None = None,
) -> Captured:
    """Releases a started child, captures at most output_limit_bytes per stream and reaps it.

    A child started with a command pipe gets `command` there, then `stdin` as fast as it reads it,
    then what `live_stdin` brings as it comes, if given, then end of file; the wall clock starts at
    this call, and `release` (a warm interpreter's program going in) is called first. The program is
    killed when a stream passes the cap or the wall timeout expires. `kill` must kill everything the
    child started; by default it SIGKILLs the child's process group (the child leads a new session).
    It is called again once the child has exited, before the child is reaped, so background processes
    left in the group die with it. Processes that left the group (setsid) are beyond killpg: only a
    launcher with a better `kill` (a cgroup) catches those.
    """
    started = time.monotonic()
    kill_all = kill or _process_group_killer(child.pid)
    assert child.stdout is not None and child.stderr is not None
    streams = _Streams(child.stdout, child.stderr, output_limit_bytes, on_output)
    timed_out = False
    exited_at: float | None = None
    try:
        if release is not None:
            release()
        # The command, then stdin, written as the child reads them: the wall clock covers both.
        feed = _Feed(child.stdin, command + stdin, live_stdin)
        timed_out, exited_at = _pump(child, streams, feed, started + wall_timeout_s, kill_all)
    finally:
        # Also on an exception (an RQ job timeout arrives as one): nothing may outlive the call.
        kill_all()
        status, usage = _reap(child)
    ended = exited_at if exited_at is not None else time.monotonic()
    # Rounded up: a program that ran for 0.4 ms did run, and reporting 0 ms would say it did not.
    wall_time_ms = math.ceil((ended - started) * 1000)
    return Captured(
        returncode=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        wall_time_ms=wall_time_ms,
        cpu_time_ms=round((usage.ru_utime + usage.ru_stime) * 1000),
        maxrss_kb=usage.ru_maxrss,
        stdout=bytes(streams.data["stdout"]),
        stderr=bytes(streams.data["stderr"]),
        stdout_truncated=streams.truncated("stdout"),
        stderr_truncated=streams.truncated("stderr"),
        timed_out=timed_out,
        output_exceeded=streams.exceeded,
    )


def discard(child: subprocess.Popen[bytes], kill: Callable[[], None]) -> None:
    """Kills and reaps a started child that will never be released."""
    kill()
    _reap(child)


class _Feed:
    """The program's stdin, written as the program reads it (never blocking the pump), then closed:
    once `data` is written, or, with a live source, once the source's end of file is written too."""

    def __init__(self, pipe: IO[bytes] | None, data: bytes, live: LiveStdin | None = None) -> None:
        self.pipe = pipe
        self.left = memoryview(data)
        self.live = live  # None once its end of file came
        self.fd = -1
        if pipe is not None:
            self.fd = pipe.fileno()
            os.set_blocking(self.fd, False)
            if not data and live is None:
                self.close()

    @property
    def pending(self) -> bool:
        return self.pipe is not None and not self.pipe.closed

    @property
    def writable(self) -> bool:
        """Something is waiting to be written into an open pipe."""
        return self.pending and bool(self.left)

    def write(self) -> None:
        assert self.pipe is not None
        try:
            written = os.write(self.fd, self.left[:_READ_CHUNK])
        except BlockingIOError:
            return
        except BrokenPipeError:  # the program closed its stdin, or ended (before its release, even)
            self.close()
            return
        self.left = self.left[written:]
        if not self.left and self.live is None:
            self.close()

    def receive(self) -> None:
        """Takes what the live source has; dropped when the program closed its stdin already."""
        assert self.live is not None
        data, eof = self.live.take()
        if data and self.pending:
            self.left = memoryview(bytes(self.left) + data)
        if eof:
            self.live = None
            if not self.left:
                self.close()

    def close(self) -> None:
        if self.pipe is not None:
            with suppress(BrokenPipeError):
                self.pipe.close()


def _reap(child: subprocess.Popen[bytes]) -> tuple[int, resource.struct_rusage]:
    """Closes the child's pipes and waits for it (already killed); returns its wait status and usage."""
    for pipe in (child.stdin, child.stdout, child.stderr):
        if pipe is not None:
            with suppress(BrokenPipeError):
                pipe.close()
    _, status, usage = os.wait4(child.pid, 0)
    # Popen did not reap the child itself; tell it so that it never waits on a reused pid.
    child.returncode = os.waitstatus_to_exitcode(status)
    return status, usage


def _pump(
    child: subprocess.Popen[bytes], streams: _Streams, feed: _Feed, deadline: float, kill_all: Callable[[], None]
) -> tuple[bool, float | None]:
    """Reads output (and feeds stdin) until the child has exited and both pipes are closed, the cap
    is passed or time is up.

    Returns (timed_out, when the child exited). A pidfd tells when the child exits even while
    a descendant keeps the pipes open.
    """
    pidfd = os.pidfd_open(child.pid)
    exited_at: float | None = None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(pidfd, selectors.EVENT_READ)
            for pipe in (child.stdout, child.stderr):
                assert pipe is not None
                selector.register(pipe.fileno(), selectors.EVENT_READ)
            live_fd = feed.live.wakeup_fd if feed.live is not None else -1
            if feed.live is not None:
                selector.register(live_fd, selectors.EVENT_READ)
            _watch_stdin(selector, feed)
            while len(selector.get_map()) > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return exited_at is None, exited_at
                for key, _ in selector.select(remaining):
                    if key.events == selectors.EVENT_WRITE:
                        if feed.writable:  # not closed by the child's exit earlier in this same batch
                            feed.write()
                    elif key.fd == live_fd:
                        if feed.live is not None:
                            feed.receive()
                        if feed.live is None:
                            selector.unregister(live_fd)
                    elif key.fd == pidfd:
                        exited_at = time.monotonic()
                        selector.unregister(pidfd)
                        if feed.live is not None:
                            selector.unregister(live_fd)
                            feed.live = None
                        feed.close()  # nobody left to read it
                        # What the child left running would hold the pipes open until the deadline.
                        kill_all()
                    elif not streams.read(key.fd):
                        selector.unregister(key.fd)
                    _watch_stdin(selector, feed)
                if streams.exceeded:
                    kill_all()
                    return False, exited_at
            return False, exited_at
    finally:
        os.close(pidfd)


def _watch_stdin(selector: selectors.BaseSelector, feed: _Feed) -> None:
    """The stdin pipe is watched while something waits to be written into it: an idle pipe is always
    writable, and watching it then would spin."""
    if feed.fd < 0:
        return
    watched = feed.fd in selector.get_map()
    if feed.writable and not watched:
        selector.register(feed.fd, selectors.EVENT_WRITE)
    elif watched and not feed.writable:
        selector.unregister(feed.fd)


def _process_group_killer(pgid: int) -> Callable[[], None]:
    def kill() -> None:
        # The group outlives its leader until the leader is reaped, so this never hits a reused id.
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    return kill


class UnconfinedLauncher:
    """Runs programs as plain children of the worker: the development override, NOT a sandbox.

    What it enforces: a fresh private work dir, a clean environment, the given stdin, the wall
    time and output caps (run_captured), and through `prlimit` the CPU time (RLIMIT_CPU, per
    process), the size of written files (RLIMIT_FSIZE) and no core dumps.

    What it does not: memory (an address-space limit breaks the JVM, go and node; only the
    sandbox's cgroup limits memory), the process count (RLIMIT_NPROC counts every process of
    the service's uid, so it would either be ignored, as for root, or fail the service's own
    forks), the network, the file system outside the work dir, and children that call setsid
    (they escape the process-group kill). Its memory figure is wait4's peak RSS, which on
    Linux also counts what the child inherited from the worker before exec: an upper bound.
    """

    mode = "none"

    def __init__(self, work_root: Path) -> None:
        self.work_root = work_root

    def close(self) -> None:
        """Nothing is held between jobs."""

    @contextmanager
    def workspace(self) -> Iterator[Path]:
        self.work_root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="run-", dir=self.work_root))  # mkdtemp creates it 0700
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def run(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        env: Mapping[str, str],
        limits: Limits,
        stdin: bytes = b"",
        live_stdin: LiveStdin | None = None,
        on_output: OutputListener | None = None,
        another_stage_follows: bool = False,  # nothing to set up ahead: a plain subprocess
    ) -> StageOutcome:
        captured = run_captured(
            [*_prlimit_prefix(limits), *argv],
            cwd=workdir,
            env=env,
            wall_timeout_s=limits.wall_time_ms / 1000,
            output_limit_bytes=limits.output_limit_bytes,
            stdin=stdin,
            live_stdin=live_stdin,
            on_output=on_output,
        )
        return StageOutcome(
            exit_code=captured.returncode,
            signal=captured.signal,
            wall_time_ms=captured.wall_time_ms,
            cpu_time_ms=captured.cpu_time_ms,
            memory_kb=captured.maxrss_kb,
            stdout=captured.stdout,
            stderr=captured.stderr,
            stdout_truncated=captured.stdout_truncated,
            stderr_truncated=captured.stderr_truncated,
            limit_exceeded=limit_exceeded(captured, limits),
        )


def _prlimit_prefix(limits: Limits) -> list[str]:
    # RLIMIT_CPU counts whole seconds: the soft limit sends SIGXCPU, the hard one a second later SIGKILL.
    cpu_s = max(1, math.ceil(limits.cpu_time_ms / 1000))
    return [
        PRLIMIT,
        f"--cpu={cpu_s}:{cpu_s + 1}",
        f"--fsize={limits.max_file_bytes}",
        "--core=0",
        "--",
    ]


def limit_exceeded(captured: Captured, limits: Limits) -> LimitExceeded | None:
    """Which limit stopped the program, if one did."""
    if captured.output_exceeded:
        return LimitExceeded.OUTPUT
    # SIGXCPU is the soft CPU limit (rusage may round the time just under it); SIGKILL past the
    # limit is the hard one, or the wall clock catching a program that was burning CPU all along.
    over_cpu = captured.cpu_time_ms >= limits.cpu_time_ms
    if captured.signal == signal.SIGXCPU or (captured.signal == signal.SIGKILL and over_cpu):
        return LimitExceeded.CPU_TIME
    if captured.timed_out:
        return LimitExceeded.WALL_TIME
    return None
