"""The sandboxed launcher: every compile and run in bwrap, in a cgroup of its own, as a slot uid.

An execution holds a slot (its uid) and a tmpfs work dir; each of its stages runs in a sandbox
of its own (prespawn.py) that serves that one command. The next execution's slot, work dir and
first sandbox are prepared ahead on a thread (prepared.py), so the common one-stage execution
(an interpreted language, a cached compile) finds its sandbox waiting; a compile spawns its run's
sandbox as it starts, so that one waits too. After every stage the cgroup is swept until empty
and removed, so nothing of the run survives it.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import signal
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from executor.launcher import LimitExceeded, Limits, LiveStdin, StageOutcome
from executor.process import OutputListener
from executor.sandbox import workspace
from executor.sandbox.bwrap import ReadOnlyTree
from executor.sandbox.cgroups import CgroupTree
from executor.sandbox.prepared import Prepared, Preparer
from executor.sandbox.prespawn import Ran, Sandbox, slot_of_cgroup
from executor.sandbox.slots import Slot, SlotPool
from executor.sandbox.warm import LastRun, WarmStart

WORKSPACE_BYTES = 128 * 1024 * 1024
# A warm first stage's cgroup number, apart from the stages' own: the plain first stage that takes its
# place on a miss is spawned beside it.
_WARM_STAGE = 99
# A JVM whose heap (-Xmx, set below the cgroup limit) is full throws instead of being OOM-killed;
# that is still the run's memory limit, so it is reported as one.
_RUNTIME_OOM_MARKERS = (b"java.lang.OutOfMemoryError",)
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)
log = logging.getLogger(__name__)


class SandboxFailed(RuntimeError):
    """The sandbox ended without telling how its program ended, and no limit had stopped it."""


@dataclass
class _Execution:
    slot: Slot
    sandbox: Sandbox | None  # prepared for its next stage, until that stage takes it
    stages: int  # sandboxes spawned for it so far (numbers their cgroups)
    ran: bool = False  # a stage of it was released: the next one is not its first


class SandboxLauncher:
    def __init__(
        self,
        mode: str,
        work_root: Path,
        *,
        cgroups: CgroupTree,
        slots: SlotPool,
        workspace_bytes: int = WORKSPACE_BYTES,
        read_only_trees: Sequence[ReadOnlyTree] = (),
        warm_runtimes: bool = True,
    ) -> None:
        self.mode = mode
        self.read_only_trees = tuple(read_only_trees)
        self.work_root = work_root
        self.cgroups = cgroups
        self.slots = slots
        self.workspace_bytes = workspace_bytes
        self._executions: dict[Path, _Execution] = {}
        self._preparer: Preparer | None = None
        # The next execution's interpreter is started ahead for the language of the last run (warm.py).
        self.warm_runtimes = warm_runtimes
        self._last_run: LastRun | None = None
        _become_subreaper()

    def prepare_ahead(self) -> None:
        """From now on keeps the next execution prepared (once this mode is known to work)."""
        if self._preparer is None:
            self._preparer = Preparer(self._prepare, self._discard)
            self._preparer.request()
            # The prepared work dir is a mount: unmount it when the executor exits normally (a crash
            # leaves it to the next start's sweep_leftovers).
            atexit.register(self.close)

    def close(self) -> None:
        """Discards the prepared execution; the launcher still works, preparing on the job's path."""
        preparer, self._preparer = self._preparer, None
        if preparer is not None:
            preparer.close()

    def sweep_leftovers(self) -> None:
        """Removes the cgroups and work dirs of slots no executor holds (one was killed mid-run).

        A leftover is also replaced when its slot is next used; this sweep keeps them from
        lingering until then.
        """
        leftovers = {name: slot_of_cgroup(name) for name in self.cgroups.names()}
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
        prepared = self._preparer.take() if self._preparer is not None else None
        if prepared is None:
            prepared = self._prepare(with_sandbox=False)
        spawned = 0 if prepared.sandbox is None else 1
        self._executions[prepared.workdir] = _Execution(prepared.slot, prepared.sandbox, spawned)
        try:
            yield prepared.workdir
        finally:
            execution = self._executions.pop(prepared.workdir)
            self._discard(Prepared(execution.slot, prepared.workdir, execution.sandbox))
            if self._preparer is not None:
                self._preparer.request()

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
        another_stage_follows: bool = False,
    ) -> StageOutcome:
        execution = self._executions.get(workdir)
        if execution is None:
            raise ValueError(f"{workdir} is not an open workspace of this launcher")
        sandbox, execution.sandbox = execution.sandbox, None
        if sandbox is not None and not sandbox.waiting():
            log.warning("the prepared sandbox died while it waited; spawning another")
            sandbox.discard()
            sandbox = None
        if sandbox is not None and not sandbox.takes(argv, env, limits):
            sandbox = self._instead_of_warm(sandbox, execution.slot.uid, workdir)
        if sandbox is None:
            sandbox = self._spawn(execution, workdir)
        if self.warm_runtimes and not execution.ran:
            # The prepared sandbox serves an execution's first stage: a compile, or a run.
            self._last_run = LastRun(tuple(argv), dict(env), workdir)
        execution.ran = True
        if another_stage_follows:
            self._spawn_ahead(execution, workdir, sandbox)
        return _outcome(sandbox.run(argv, env, limits, stdin, live_stdin, on_output), limits)

    def _instead_of_warm(self, warm: Sandbox, uid: int, workdir: Path) -> Sandbox:
        """A plain first stage for a stage the warm interpreter or compiler is not waiting for. Spawned first (the warm
        sandbox's cgroup is numbered apart), it builds its namespaces while the warm one is torn down."""
        try:
            return self._sandbox(uid, workdir)
        finally:
            warm.discard()

    def _spawn_ahead(self, execution: _Execution, workdir: Path, current: Sandbox) -> None:
        """Spawned now, the next stage's sandbox builds its namespaces and mounts while the current
        stage runs (a compile takes tens of ms), and the next stage finds it waiting, as the first
        stage did. Unused (the compile failed), it is discarded with the workspace. Only a head
        start: when it cannot be spawned, the next stage spawns its own."""
        try:
            execution.sandbox = self._spawn(execution, workdir)
        except Exception:
            log.warning("could not set up the next stage's sandbox ahead; it will on its turn", exc_info=True)
        except BaseException:
            current.discard()  # interrupted (a job timeout): the current stage will not run
            raise

    def _spawn(self, execution: _Execution, workdir: Path) -> Sandbox:
        execution.stages += 1
        return self._sandbox(execution.slot.uid, workdir, stage=execution.stages - 1)

    def _sandbox(self, uid: int, workdir: Path, stage: int = 0, warm: WarmStart | None = None) -> Sandbox:
        return Sandbox(
            self.mode,
            self.cgroups,
            uid=uid,
            workdir=workdir,
            stage=stage,
            read_only_trees=self.read_only_trees,
            warm=warm,
        )

    def _first_sandbox(self, uid: int, workdir: Path) -> Sandbox:
        """Warm for the last run's language when it has a warm start; plain when not, or when that fails."""
        last = self._last_run
        warm = last.warm_start(workdir) if last is not None and self.warm_runtimes else None
        if warm is not None and self._startable(warm):
            try:
                return self._sandbox(uid, workdir, stage=_WARM_STAGE, warm=warm)
            except Exception:
                log.warning("could not start the interpreter ahead; preparing a plain sandbox", exc_info=True)
        return self._sandbox(uid, workdir)

    def _startable(self, warm: WarmStart) -> bool:
        """A warm compiler runs from its compile aids' tree: without that bound, it would only fail to start."""
        return warm.compiler is None or warm.compiler.aids in {tree.inside for tree in self.read_only_trees}

    def _prepare(self, with_sandbox: bool = True) -> Prepared:
        """A slot and its fresh work dir, with the first stage's sandbox waiting in it."""
        slot = self.slots.acquire()
        try:
            workdir = workspace.create(self.work_root, slot.uid, self.workspace_bytes)
            try:
                sandbox = self._first_sandbox(slot.uid, workdir) if with_sandbox else None
            except BaseException:
                workspace.remove(workdir)
                raise
        except BaseException:
            self.slots.release(slot)
            raise
        return Prepared(slot, workdir, sandbox)

    def _discard(self, prepared: Prepared) -> None:
        try:
            try:
                if prepared.sandbox is not None:
                    prepared.sandbox.discard()
            finally:
                workspace.remove(prepared.workdir)
        finally:
            self.slots.release(prepared.slot)


def _outcome(ran: Ran, limits: Limits) -> StageOutcome:
    captured, usage = ran.captured, ran.usage
    exit_code, signo = _ending(ran)
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
        limit_exceeded=_limit_exceeded(ran, limits, exit_code, signo),
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

    bwrap's monitor reaps the init it started, but the kill of a run's cgroup can take the
    monitor first; the orphan goes to the nearest subreaper, else to the host's pid 1, which in
    a container may never reap it, and zombies pile up against the slot uid.
    """
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _ending(ran: Ran) -> tuple[int | None, int | None]:
    """The program's exit code, or the signal that ended it: its wait status, as the sandbox's init saw it.

    An exit(N) is exit code N whatever N is. bwrap's own exit never stands for the program's: like
    a shell, it turns a death by signal N into exit code 128 + N.
    """
    status = ran.program_status
    if status is None:
        if ran.killed_at_a_limit:
            return None, signal.SIGKILL  # the limit's kill took the init before it could tell
        captured = ran.captured
        raise SandboxFailed(
            f"the sandbox ended without the program's status (bwrap: exit {captured.returncode}, "
            f"signal {captured.signal}): {captured.stderr[-1000:].decode(errors='replace')}"
        )
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return os.WEXITSTATUS(status), None


def _limit_exceeded(ran: Ran, limits: Limits, exit_code: int | None, signo: int | None) -> LimitExceeded | None:
    """The limit that stopped the program, from what the executor and the kernel saw: its timers and
    output cap, the cgroup's OOM kills and CPU time. A SIGXCPU alone is no limit of ours: a program
    may raise it, or lower its own RLIMIT_CPU; ours (a backstop a second past the limit) only
    strikes once the cgroup's CPU time is over the limit, which says so itself."""
    captured, usage = ran.captured, ran.usage
    if captured.output_exceeded:
        return LimitExceeded.OUTPUT
    failed = signo is not None or exit_code != 0
    if usage.oom_kills > 0 or (failed and any(m in captured.stderr for m in _RUNTIME_OOM_MARKERS)):
        return LimitExceeded.MEMORY
    if ran.cpu_killed or usage.cpu_time_ms > limits.cpu_time_ms:
        return LimitExceeded.CPU_TIME
    if captured.timed_out:
        return LimitExceeded.WALL_TIME
    return None
