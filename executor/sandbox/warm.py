"""Warm runtimes: an interpreter started in a sandbox before its program is known, waiting to read it.

The main file is first a FIFO the executor holds open: the interpreter, started with the language's
exact run argv and env, initialises, opens it and blocks reading it. The path is then unlinked, so the
job writes its files into a work dir like any other; at release the main file's bytes go into the FIFO
and the executor's end closes. The program runs from the real file's path (its __file__, tracebacks
and stat see the real file); a job that needs anything else gets a plain sandbox.

A compiler started ahead (common.languages.WarmCompiler) is the same with another FIFO: it opens the
FIFO once started, warms up outside the work dir until something comes into it, and at release reads
the rest of the compile command from it. The CPU time its warm-up takes after the release is the job's.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import resource
import select
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pyseccomp

from common.languages import LANGUAGES, WarmCompiler

# The largest source a session accepts (session_service): it always fits the pipe, so feeding never blocks.
SOURCE_CAPACITY = 1024 * 1024
_POLL_S = 0.0005
# While no open comes, how often the wait looks whether the sandbox still lives.
_ALIVE_CHECK_S = 0.05
_IN_OPEN = 0x20
_libc = ctypes.CDLL(None, use_errno=True)
_SETRESUID = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, "setresuid")
_SETRESGID = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, "setresgid")
_UNCHANGED = -1


# The FIFO a warm compiler reads the rest of its command from (gone before the job writes its files).
COMPILER_FIFO = ".lce-compiler-arguments"


@dataclass(frozen=True)
class WarmStart:
    """The stage a process starts ahead for, with exactly this env. An interpreter: exactly argv, reading
    main_file (the FIFO) from its work dir. A compiler: a command whose first words are argv; `compiler`
    starts ahead and reads the command's other words from main_file."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    main_file: str
    compiler: WarmCompiler | None = None

    @property
    def command(self) -> tuple[str, ...]:
        """What starts ahead."""
        return self.argv if self.compiler is None else (*self.compiler.command, self.main_file)

    def serves(self, argv: Sequence[str], env: Mapping[str, str]) -> bool:
        if dict(env) != dict(self.env):
            return False
        if self.compiler is None:
            return tuple(argv) == self.argv
        return tuple(argv[: len(self.argv)]) == self.argv and _compiler_arguments(self.compiler, argv) is not None

    def fed(self, argv: Sequence[str], workdir: Path, capacity: int) -> bytes | None:
        """What goes into the FIFO at release: the main file the job wrote, or the compile command's other
        words; None when they are not what a cold start would take in the same way, or do not fit."""
        if self.compiler is None:
            return main_source(workdir / self.main_file, capacity)
        fed = _compiler_arguments(self.compiler, argv)
        return fed if fed is not None and len(fed) <= capacity else None


def _compiler_arguments(compiler: WarmCompiler, argv: Sequence[str]) -> bytes | None:
    """The compile command's words past the ones the warm compiler stands for, NUL-separated in UTF-8 (as
    the JVM decodes its argv under LANG=C.UTF-8); None for a word the cold command's launcher would take
    (-J...), an empty one, or one that is not UTF-8."""
    words = argv[compiler.stands_for :]
    if any(not word or word.startswith(compiler.launcher_prefix) for word in words):
        return None
    try:
        return b"\0".join(word.encode() for word in words)
    except UnicodeEncodeError:
        return None


@dataclass(frozen=True)
class LastRun:
    """What a launcher ran last, from which the next execution's warm start is predicted."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    workdir: Path

    def warm_start(self, workdir: Path) -> WarmStart | None:
        """The same language's bare run (no program arguments), or its compiler waiting for the compile's
        arguments, its env moved to workdir; None when that does not start warm. A wrong guess only costs a
        miss: a stage must match it exactly."""
        moved = {name: value.replace(str(self.workdir), str(workdir)) for name, value in self.env.items()}
        for language in LANGUAGES:
            if language.warm_start and self.argv[: len(language.run)] == language.run:
                return WarmStart(language.run, moved, language.file_name)
            compiler = language.warm_compiler
            if (
                compiler
                and language.compile
                and self.argv[: compiler.stands_for] == language.compile[: compiler.stands_for]
            ):
                return WarmStart(language.compile[: compiler.stands_for], moved, COMPILER_FIFO, compiler)
        return None


class MainFifo:
    """The main file's path made a FIFO (owned by the slot uid) that the executor holds open, so the
    interpreter's open() returns at once and its read waits for the program."""

    def __init__(self, path: Path, uid: int) -> None:
        self.path = path
        os.mkfifo(path, 0o600)
        created = path.lstat()
        self._identity = (created.st_dev, created.st_ino)
        self._fd = self._opens = -1
        try:
            os.chown(path, uid, uid)
            self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, SOURCE_CAPACITY)  # root may pass pipe-max-size
            self.capacity = fcntl.fcntl(self._fd, fcntl.F_GETPIPE_SZ)
            self._opens = _watch_opens(path)  # after the executor's own open
            self._poll = select.poll()  # not select(): an executor may hold more than 1024 fds
            self._poll.register(self._opens, select.POLLIN)
        except BaseException:
            self.close()
            raise

    def await_reader(self, candidates: Callable[[], list[int]], alive: Callable[[], bool], timeout_s: float) -> int:
        """The pid among candidates that opened the FIFO, once one has; then the path is unlinked.

        It sleeps until the open (inotify): looking through the processes' fds all along would cost the
        executor more CPU than the rest of the run. The open is told before the opener's fd exists, so
        the first looks after it may still miss it."""
        deadline = time.monotonic() + timeout_s
        opened = False
        while (reader := self._reader(candidates())) is None:
            left = deadline - time.monotonic()
            if not alive():
                raise RuntimeError("the warm interpreter ended before it opened its main file")
            if left <= 0:
                raise TimeoutError(f"the warm interpreter did not open its main file within {timeout_s} s")
            if opened:
                time.sleep(_POLL_S)
            else:
                opened = bool(self._poll.poll(min(left, _ALIVE_CHECK_S) * 1000))
        self._unlink()
        return reader

    def feed(self, source: bytes) -> None:
        """The program for the interpreter, then end of file."""
        if len(source) > self.capacity:
            raise ValueError(f"a main file of {len(source)} bytes does not fit the FIFO ({self.capacity})")
        try:
            view = memoryview(source)
            while view:
                view = view[os.write(self._fd, view) :]
        finally:
            self.close()

    def close(self) -> None:
        """Closes the executor's end, and removes the path while it is still this FIFO."""
        self._unlink()
        for fd in (self._fd, self._opens):
            if fd >= 0:
                os.close(fd)
        self._fd = self._opens = -1

    def _unlink(self) -> None:
        with suppress(FileNotFoundError):
            found = self.path.lstat()
            if (found.st_dev, found.st_ino) == self._identity:
                self.path.unlink()

    def _reader(self, pids: list[int]) -> int | None:
        return next((pid for pid in pids if self._held_by(pid)), None)

    def _held_by(self, pid: int) -> bool:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except (FileNotFoundError, ProcessLookupError):
            return False
        for fd in fds:
            with suppress(FileNotFoundError, ProcessLookupError):
                found = os.stat(f"/proc/{pid}/fd/{fd}")
                if (found.st_dev, found.st_ino) == self._identity:
                    return True
        return False


def _watch_opens(path: Path) -> int:
    """An inotify fd that turns readable once path is opened."""
    fd = _libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    if _libc.inotify_add_watch(fd, os.fsencode(path), _IN_OPEN) < 0:
        error = ctypes.get_errno()
        os.close(fd)
        raise OSError(error, f"inotify_add_watch {path}")
    return fd


def main_source(path: Path, capacity: int) -> bytes | None:
    """The main file the job wrote, when it is a regular file (not a link) that fits the FIFO; else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as main:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode) or found.st_size > capacity:
            return None
        return main.read(capacity + 1)


def cpu_seconds_used(pid: int) -> int:
    """The whole seconds of CPU time the process has used so far (its threads' included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])  # utime, stime: fields 14 and 15
    return (user_ticks + system_ticks) // os.sysconf("SC_CLK_TCK")


def set_rlimits(pid: int, uid: int, limits: Mapping[int, int]) -> None:
    """Sets the process's rlimits (soft and hard, as dash's ulimit does) to the cold run's values.

    prlimit(2) on another process takes CAP_SYS_RESOURCE, which an executor in a container may lack,
    or the target's real uid and gid: this thread takes the slot's for the call, keeping root as its
    effective uid (and so every capability)."""
    with _real_ids_of(uid):
        for which, value in limits.items():
            resource.prlimit(pid, which, (value, value))


@contextmanager
def _real_ids_of(uid: int) -> Iterator[None]:
    """This thread's real uid and gid set to uid. The raw syscalls change the calling thread only
    (glibc's wrappers change every thread of the process)."""
    real_uid, real_gid = os.getuid(), os.getgid()
    _set_real_id(_SETRESGID, uid)
    try:
        _set_real_id(_SETRESUID, uid)
        try:
            yield
        finally:
            _set_real_id(_SETRESUID, real_uid)
    finally:
        _set_real_id(_SETRESGID, real_gid)


def _set_real_id(call: int, value: int) -> None:
    if _libc.syscall(call, value, _UNCHANGED, _UNCHANGED) != 0:
        raise OSError(ctypes.get_errno(), "setresuid/setresgid")
