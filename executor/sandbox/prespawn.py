"""One stage's sandbox: spawned before its command is known, released with it once, torn down after.

Spawning is most of a sandbox's cost (measured: a root shell joining the cgroup, which can take
8-16 ms when runs are apart, setpriv, bwrap building namespaces and mounts, then the shell
inside). A sandbox spawned ahead already sits in its cgroup with all of that done, its shell
waiting on stdin; releasing it costs only writing the job's limits into the cgroup and its
command (with rlimits and environment) into the pipe.

A sandbox serves exactly one command: its cgroup is emptied and removed after it, whatever
happened, and a sandbox that was never released is discarded the same way.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import shlex
import struct
import threading
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from executor.launcher import Limits, LiveStdin
from executor.process import Captured, OutputListener, capture, discard, start
from executor.sandbox.bwrap import ReadOnlyTree, command_script, file_size_limit, sandbox_argv
from executor.sandbox.cgroups import CgroupTree, RunCgroup
from executor.sandbox.init_binary import init_binary
from executor.sandbox.seccomp import filter_fd
from executor.sandbox.warm import MainFifo, WarmStart, cpu_seconds_used, set_rlimits

log = logging.getLogger(__name__)
CGROUP_PREFIX = "lce-"
# bwrap's monitor and the sandbox's init (pid 1 of the run's pid namespace) count against pids.max too.
_WRAPPER_PROCESSES = 2
_SH = "/bin/sh"
# What the init writes to its status pipe: one wait status, a C int in native byte order.
_WAIT_STATUS = struct.Struct("=i")
# How long a warm interpreter may take to initialise (a loaded machine) before its sandbox is given up.
WARM_UP_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Usage:
    cpu_time_ms: int
    memory_kb: int
    oom_kills: int


@dataclass(frozen=True)
class Ran:
    captured: Captured  # the program's output; how bwrap itself ended says nothing about the program
    usage: Usage  # from the cgroup: the program's processes, not bwrap's wait4
    cpu_killed: bool  # the CPU watchdog stopped it
    program_status: int | None  # its wait status, told by the init; None when a kill took the init first

    @property
    def killed_at_a_limit(self) -> bool:
        """The run was killed at a limit, a kill that may have taken the init before it told the status."""
        captured = self.captured
        return captured.timed_out or captured.output_exceeded or self.cpu_killed or self.usage.oom_kills > 0


@dataclass(frozen=True)
class _WarmInterpreter:
    start: WarmStart
    fifo: MainFifo
    pid: int  # on the host
    uid: int


class Sandbox:
    """A sandbox waiting for its command, in the work dir of the slot uid it runs as; or, started warm,
    its interpreter waiting for the program."""

    def __init__(
        self,
        mode: str,
        cgroups: CgroupTree,
        *,
        uid: int,
        workdir: Path,
        stage: int = 0,
        read_only_trees: Sequence[ReadOnlyTree] = (),
        warm: WarmStart | None = None,
    ) -> None:
        self.workdir = workdir
        self._group = cgroups.create(cgroup_name(uid, stage))
        self._used = False
        self._warm: _WarmInterpreter | None = None
        info_read, info_write = os.pipe()
        status_read, status_write = os.pipe()
        seccomp_fd = None
        try:
            seccomp_fd = filter_fd()
            argv = [
                *_join(self._group),
                *sandbox_argv(
                    mode,
                    workdir=workdir,
                    uid=uid,
                    info_fd=info_write,
                    seccomp_fd=seccomp_fd,
                    init=init_binary(),
                    status_fd=status_write,
                    read_only_trees=read_only_trees,
                ),
            ]
            passed = (info_write, seccomp_fd, status_write)
            self._child = start(argv, cwd=workdir, env={}, pass_fds=passed, command_pipe=True)
        except BaseException:
            os.close(info_read)
            os.close(status_read)
            self._group.remove()
            raise
        finally:
            os.close(info_write)
            os.close(status_write)
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        self._info_read = info_read
        self._status_read = status_read
        if warm is not None:
            self._warm_up(warm, uid)

    @property
    def warm(self) -> bool:
        return self._warm is not None

    def takes(self, command: Sequence[str], env: Mapping[str, str], limits: Limits) -> bool:
        """Whether it can run command: any for a plain sandbox; for a warm one only its own run, exactly,
        with a main file that fits its FIFO, under a memory limit its interpreter is not over already
        (cgroup v1 refuses to lower a limit below the usage; cold, that start is the program's to fail)."""
        warm = self._warm
        if warm is None:
            return True
        try:
            return (
                warm.start.serves(command, env)
                and self._group.memory_peak_bytes() < limits.memory_mb * 1024 * 1024
                and self._fed(warm, command) is not None
            )
        except OSError:
            log.warning("could not tell whether the warm sandbox fits the stage; a plain one takes it", exc_info=True)
            return False

    def waiting(self) -> bool:
        """False once its process has ended (it failed, or was killed while it waited)."""
        with suppress(ChildProcessError):
            # WNOWAIT: leave the child to be reaped by capture or discard.
            return os.waitid(os.P_PID, self._child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        return False

    def run(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        limits: Limits,
        stdin: bytes = b"",
        live_stdin: LiveStdin | None = None,
        on_output: OutputListener | None = None,
    ) -> Ran:
        """Releases the sandbox with command under limits, fed stdin; nothing of it is left when this returns."""
        warm = self._warm
        try:
            if warm is None:
                script = command_script(
                    command, env, cpu_seconds=_rlimit_cpu_s(limits.cpu_time_ms), file_bytes=limits.max_file_bytes
                )
            else:
                script, program = b"", self._fed(warm, command)  # its command went in at spawn
                if program is None or not warm.start.serves(command, env):
                    raise ValueError("a warm sandbox runs only the program it was started for (see takes)")
        except BaseException:
            self.discard()  # a command no script can carry: the sandbox is torn down unused
            raise
        self._use()
        try:
            self._group.limit(
                memory_bytes=limits.memory_mb * 1024 * 1024,
                max_processes=limits.max_processes + _WRAPPER_PROCESSES,
            )
            # A warm interpreter's start is not the program's: its CPU time counts from here.
            charged_from_ns = 0 if warm is None else self._group.cpu_time_ns()
            watchdog = _CpuWatchdog(self._group, limits.cpu_time_ms, charged_from_ns)
            watchdog.start()
            try:
                if warm is not None:
                    self._limit_interpreter(warm, limits)
                captured = capture(
                    self._child,
                    wall_timeout_s=limits.wall_time_ms / 1000,
                    output_limit_bytes=limits.output_limit_bytes,
                    kill=self._group.kill,
                    command=script,
                    stdin=stdin,
                    live_stdin=live_stdin,
                    on_output=on_output,
                    release=None if warm is None else lambda: warm.fifo.feed(program),
                )
            finally:
                watchdog.stop()
                program_status = self._empty()
            usage = Usage(
                cpu_time_ms=(self._group.cpu_time_ns() - charged_from_ns) // 1_000_000,
                memory_kb=self._group.memory_peak_bytes() // 1024,
                oom_kills=self._group.oom_kills(),
            )
        finally:
            self._remove()
        return Ran(captured, usage, watchdog.fired, program_status)

    def discard(self) -> None:
        """Tears down a sandbox that will never be released."""
        self._use()
        try:
            discard(self._child, self._group.kill)
            self._empty()
        finally:
            self._remove()

    def _remove(self) -> None:
        try:
            self._group.remove()
        finally:
            if self._warm is not None:
                self._warm.fifo.close()  # if its program never went in

    def _warm_up(self, start: WarmStart, uid: int) -> None:
        """Starts the interpreter at once and waits until it has opened its main file, then unlinks that."""
        try:
            fifo = MainFifo(self.workdir / start.main_file, uid)
        except BaseException:
            self.discard()
            raise
        try:
            assert self._child.stdin is not None
            self._child.stdin.write(command_script(start.command, start.env, cpu_seconds=None, file_bytes=None))
            self._child.stdin.flush()
            pid = fifo.await_reader(self._group.pids, self.waiting, WARM_UP_TIMEOUT_S)
        except BaseException:
            fifo.close()
            self.discard()
            raise
        self._warm = _WarmInterpreter(start, fifo, pid, uid)

    def _fed(self, warm: _WarmInterpreter, command: Sequence[str]) -> bytes | None:
        return warm.start.fed(command, self.workdir, warm.fifo.capacity)

    def _limit_interpreter(self, warm: _WarmInterpreter, limits: Limits) -> None:
        """The job's rlimits on the interpreter, as the command script would set them (the program sees
        the same); the CPU backstop moved on by the whole seconds its start took (a JVM's warm-up), so it
        still strikes past the watchdog; a failure leaves nothing running."""
        try:
            rlimits = {
                resource.RLIMIT_CPU: _rlimit_cpu_s(limits.cpu_time_ms) + cpu_seconds_used(warm.pid),
                resource.RLIMIT_FSIZE: file_size_limit(limits.max_file_bytes),
            }
            set_rlimits(warm.pid, warm.uid, rlimits)
        except BaseException:
            discard(self._child, self._group.kill)
            raise

    def _use(self) -> None:
        if self._used:
            raise RuntimeError("a sandbox serves one command only")
        self._used = True

    def _empty(self) -> int | None:
        """Kills until the cgroup is empty, reaps the sandbox's init (named by bwrap's info fd) and
        returns the program's wait status the init told, if it told one."""
        try:
            self._group.empty()
        except BaseException:
            # Its init may still live: reading from it or waiting for it could hang.
            os.close(self._info_read)
            os.close(self._status_read)
            raise
        # Every holder of a write end (bwrap, the init) is gone: both reads end.
        with os.fdopen(self._status_read, "rb") as status_pipe, os.fdopen(self._info_read, "rb") as info:
            told, report = status_pipe.read(), info.read()
        if report:  # else bwrap failed before it started the sandbox
            with suppress(ChildProcessError):  # bwrap reaped it, or someone else's orphan after all (no subreaper)
                os.waitpid(json.loads(report)["child-pid"], 0)
        if not told:
            return None
        if len(told) != _WAIT_STATUS.size:
            raise RuntimeError(f"the sandbox's init told {len(told)} bytes instead of a wait status")
        return _WAIT_STATUS.unpack(told)[0]


def _rlimit_cpu_s(cpu_time_ms: int) -> int:
    """RLIMIT_CPU is per process and counts whole seconds: a backstop a second behind the cgroup watchdog."""
    return math.ceil(cpu_time_ms / 1000) + 1


def cgroup_name(uid: int, stage: int) -> str:
    """The cgroup of one stage of the slot's execution: a stage running and the next one waiting
    beside it (a compile and its run) never share a cgroup."""
    return f"{CGROUP_PREFIX}{uid}-{stage}"


def slot_of_cgroup(name: str) -> int | None:
    """The slot uid a cgroup named by cgroup_name belongs to (or by earlier releases: lce-<uid>);
    None for any other name."""
    if not name.startswith(CGROUP_PREFIX):
        return None
    uid, dash, stage = name.removeprefix(CGROUP_PREFIX).partition("-")
    named_by_us = uid.isdigit() and (stage.isdigit() if dash else True)
    return int(uid) if named_by_us else None


def _join(group: RunCgroup) -> list[str]:
    """The exec helper in front of bwrap: join the cgroup, then exec the rest of argv.

    A root shell writing "0" moves only itself (single-threaded): the worker has gRPC threads,
    so this may not happen in a preexec_fn.
    """
    joins = " && ".join(f"echo 0 > {shlex.quote(str(path))}" for path in group.join_files)
    return [_SH, "-c", f'{joins} && exec "$@"', "sh"]


class _CpuWatchdog(threading.Thread):
    """Kills the run when the CPU time of all its processes and threads passes the limit.

    RLIMIT_CPU cannot do this: it is per process (children escape it) and counts whole seconds.
    Polls more often as the budget runs out: n busy cores spend it n times faster.
    """

    _MIN_PAUSE_S = 0.005
    _MAX_PAUSE_S = 0.1

    def __init__(self, group: RunCgroup, limit_ms: int, charged_from_ns: int = 0) -> None:
        super().__init__(name="lce-cpu-watchdog", daemon=True)
        self.group = group
        self.limit_ns = limit_ms * 1_000_000
        self.charged_from_ns = charged_from_ns
        self.fired = False
        self._done = threading.Event()
        self._cores = os.cpu_count() or 1

    def run(self) -> None:
        pause = self._MIN_PAUSE_S
        while not self._done.wait(pause):
            used = self.group.cpu_time_ns() - self.charged_from_ns
            if used >= self.limit_ns:
                self.fired = True
                self.group.kill()
                return
            left_s = (self.limit_ns - used) / 1e9 / self._cores
            pause = min(max(left_s / 2, self._MIN_PAUSE_S), self._MAX_PAUSE_S)

    def stop(self) -> None:
        self._done.set()
        self.join()
