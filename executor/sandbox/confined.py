"""The sandboxed launcher: every compile and run in bwrap, in a cgroup of its own, as a slot uid.

One run is one chain of execs, no extra process: a root `sh` joins the run's cgroup and sets
the rlimits (the worker has gRPC threads, so none of this may happen in a preexec_fn), then
execs bwrap (through setpriv in the user-namespace mode). run_captured reads the output and
kills through the cgroup; a watchdog thread kills the cgroup when its CPU time passes the limit.
After the run the cgroup is swept until empty and removed, so nothing of the run survives it.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import shlex
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from executor.launcher import LimitExceeded, Limits, StageOutcome
from executor.process import Captured, run_captured
from executor.sandbox import workspace
from executor.sandbox.bwrap import sandbox_argv
from executor.sandbox.cgroups import CgroupTree, RunCgroup
from executor.sandbox.slots import Slot, SlotPool

WORKSPACE_BYTES = 128 * 1024 * 1024
# bwrap's monitor and the pid-1 reaper of the run's pid namespace count against pids.max too.
_WRAPPER_PROCESSES = 2
# A JVM whose heap (-Xmx, set below the cgroup limit) is full throws instead of being OOM-killed;
# that is still the run's memory limit, so it is reported as one.
_RUNTIME_OOM_MARKERS = (b"java.lang.OutOfMemoryError",)
_SH = "/bin/sh"
_CGROUP_PREFIX = "lce"
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class _Usage:
    cpu_time_ms: int
    memory_kb: int
    oom_kills: int


class SandboxLauncher:
    def __init__(
        self,
        mode: str,
        work_root: Path,
        *,
        cgroups: CgroupTree,
        slots: SlotPool,
        workspace_bytes: int = WORKSPACE_BYTES,
    ) -> None:
        self.mode = mode
        self.work_root = work_root
        self.cgroups = cgroups
        self.slots = slots
        self.workspace_bytes = workspace_bytes
        self._slot_of: dict[Path, Slot] = {}
        _become_subreaper()

    def sweep_leftovers(self) -> None:
        """Removes the cgroups and work dirs of slots no executor holds (one was killed mid-run).

        A leftover is also replaced when its slot is next used; this sweep keeps them from
        lingering until then.
        """
        leftovers = {name: _uid_in(name, f"{_CGROUP_PREFIX}-") for name in self.cgroups.names()}
        dirs = {path.name: _uid_in(path.name, workspace.DIRECTORY_PREFIX) for path in _entries(self.work_root)}
        for uid in {uid for uid in [*leftovers.values(), *dirs.values()] if uid and self.slots.owns(uid)}:
            slot = self.slots.try_acquire(uid)
            if slot is None:
                continue  # a live run
            try:
                for name in (name for name, owner in leftovers.items() if owner == uid):
                    self.cgroups.destroy(name)
                workspace.remove(self.work_root / workspace.directory_name(uid))
            finally:
                self.slots.release(slot)

    @contextmanager
    def workspace(self) -> Iterator[Path]:
        """A fresh tmpfs work dir; the slot (uid) taken here serves the execution's compile and run."""
        slot = self.slots.acquire()
        try:
            path = workspace.create(self.work_root, slot.uid, self.workspace_bytes)
            self._slot_of[path] = slot
            try:
                yield path
            finally:
                del self._slot_of[path]
                workspace.remove(path)
        finally:
            self.slots.release(slot)

    def run(self, argv: Sequence[str], *, workdir: Path, env: Mapping[str, str], limits: Limits) -> StageOutcome:
        slot = self._slot_of.get(workdir)
        if slot is None:
            raise ValueError(f"{workdir} is not an open workspace of this launcher")
        group = self.cgroups.create(
            f"{_CGROUP_PREFIX}-{slot.uid}",
            memory_bytes=limits.memory_mb * 1024 * 1024,
            max_processes=limits.max_processes + _WRAPPER_PROCESSES,
        )
        info_read, info_write = os.pipe()
        try:
            watchdog = _CpuWatchdog(group, limits.cpu_time_ms)
            watchdog.start()
            try:
                captured = run_captured(
                    [
                        *_enter(group, limits),
                        *sandbox_argv(self.mode, argv, workdir=workdir, env=env, uid=slot.uid, info_fd=info_write),
                    ],
                    cwd=workdir,
                    env={},
                    wall_timeout_s=limits.wall_time_ms / 1000,
                    output_limit_bytes=limits.output_limit_bytes,
                    kill=group.kill,
                    pass_fds=(info_write,),
                )
            finally:
                watchdog.stop()
                os.close(info_write)
                try:
                    group.empty()
                except BaseException:
                    os.close(info_read)  # its init may still live: waiting for it could hang
                    raise
                _reap_sandbox_init(info_read)
            usage = _Usage(
                cpu_time_ms=group.cpu_time_ns() // 1_000_000,
                memory_kb=group.memory_peak_bytes() // 1024,
                oom_kills=group.oom_kills(),
            )
        finally:
            group.remove()
        exit_code, signo = _exit_status(captured)
        return StageOutcome(
            exit_code=exit_code,
            signal=signo,
            wall_time_ms=captured.wall_time_ms,
            cpu_time_ms=usage.cpu_time_ms,
            memory_kb=usage.memory_kb,
            stdout=captured.stdout,
            stderr=captured.stderr,
            stdout_truncated=captured.stdout_truncated,
            stderr_truncated=captured.stderr_truncated,
            limit_exceeded=_limit_exceeded(captured, usage, watchdog.fired, limits, signo),
        )


def _uid_in(name: str, prefix: str) -> int | None:
    rest = name.removeprefix(prefix)
    return int(rest) if rest != name and rest.isdigit() else None


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except FileNotFoundError:
        return []


def _become_subreaper() -> None:
    """Makes the sandboxes' init processes this process's to reap.

    bwrap's monitor exits as soon as the sandbox's init reports the program's exit status, often
    before that init is reaped; the orphan goes to the nearest subreaper, else to the host's
    pid 1, which in a container may never reap it, and zombies pile up against the slot uid.
    """
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _reap_sandbox_init(info_read: int) -> None:
    """Reaps the sandbox's init (named by bwrap's info fd) once the cgroup is empty."""
    with os.fdopen(info_read, "rb") as info:
        report = info.read()
    if not report:
        return  # bwrap failed before it started the sandbox
    pid = json.loads(report)["child-pid"]
    with suppress(ChildProcessError):  # someone else's orphan after all (no subreaper)
        os.waitpid(pid, 0)


def _enter(group: RunCgroup, limits: Limits) -> list[str]:
    """The exec helper: join the cgroup, set the rlimits, exec the rest of argv."""
    # RLIMIT_CPU is per process and counts whole seconds: a backstop behind the cgroup watchdog.
    cpu_s = math.ceil(limits.cpu_time_ms / 1000) + 1
    # dash's ulimit -f counts 512-byte blocks.
    file_blocks = math.ceil(limits.max_file_bytes / 512)
    steps = [f"echo 0 > {shlex.quote(str(path))}" for path in group.join_files]
    steps += ["ulimit -c 0", f"ulimit -t {cpu_s}", f"ulimit -f {file_blocks}", 'exec "$@"']
    return [_SH, "-c", " && ".join(steps), "sh"]


def _exit_status(captured: Captured) -> tuple[int | None, int | None]:
    """The program's exit code or signal.

    bwrap passes on a program's death by signal N as exit code 128 + N, like a shell; the
    signal itself is seen only when the cgroup kill hit bwrap too.
    """
    code = captured.returncode
    if code is not None and code > 128 and code - 128 in signal.valid_signals():
        return None, code - 128
    return code, captured.signal


def _limit_exceeded(
    captured: Captured, usage: _Usage, cpu_killed: bool, limits: Limits, signo: int | None
) -> LimitExceeded | None:
    if captured.output_exceeded:
        return LimitExceeded.OUTPUT
    failed = signo is not None or captured.returncode != 0
    if usage.oom_kills > 0 or (failed and any(m in captured.stderr for m in _RUNTIME_OOM_MARKERS)):
        return LimitExceeded.MEMORY
    if cpu_killed or signo == signal.SIGXCPU or usage.cpu_time_ms > limits.cpu_time_ms:
        return LimitExceeded.CPU_TIME
    if captured.timed_out:
        return LimitExceeded.WALL_TIME
    return None


class _CpuWatchdog(threading.Thread):
    """Kills the run when the CPU time of all its processes and threads passes the limit.

    RLIMIT_CPU cannot do this: it is per process (children escape it) and counts whole seconds.
    Polls more often as the budget runs out: n busy cores spend it n times faster.
    """

    _MIN_PAUSE_S = 0.005
    _MAX_PAUSE_S = 0.1

    def __init__(self, group: RunCgroup, limit_ms: int) -> None:
        super().__init__(name="lce-cpu-watchdog", daemon=True)
        self.group = group
        self.limit_ns = limit_ms * 1_000_000
        self.fired = False
        self._done = threading.Event()
        self._cores = os.cpu_count() or 1

    def run(self) -> None:
        pause = self._MIN_PAUSE_S
        while not self._done.wait(pause):
            used = self.group.cpu_time_ns()
            if used >= self.limit_ns:
                self.fired = True
                self.group.kill()
                return
            left_s = (self.limit_ns - used) / 1e9 / self._cores
            pause = min(max(left_s / 2, self._MIN_PAUSE_S), self._MAX_PAUSE_S)

    def stop(self) -> None:
        self._done.set()
        self.join()
