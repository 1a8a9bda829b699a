"""Warm runtimes: an interpreter started in a sandbox before its program is known, waiting to read it.

The main file is first a FIFO the executor holds open: the interpreter, started with the language's
exact run argv and env, initialises, opens it and blocks reading it. The path is then unlinked, so the
job writes its files into a work dir like any other; at release the main file's bytes go into the FIFO
and the executor's end closes. The program runs from the real file's path (its __file__, tracebacks
and stat see the real file); a job that needs anything else gets a plain sandbox.
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

from common.languages import LANGUAGES

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


@dataclass(frozen=True)
class WarmStart:
    """The run an interpreter starts ahead for: exactly this argv and env, reading main_file from its work dir."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    main_file: str

    def serves(self, argv: Sequence[str], env: Mapping[str, str]) -> bool:
        return tuple(argv) == self.argv and dict(env) == dict(self.env)


@dataclass(frozen=True)
class LastRun:
    """What a launcher ran last, from which the next execution's warm start is predicted."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    workdir: Path

    def warm_start(self, workdir: Path) -> WarmStart | None:
        """The same language's bare run (no program arguments), its env moved to workdir; None when its
        language does not start warm. A wrong guess only costs a miss: a run must match it exactly."""
        language = next(
            (lang for lang in LANGUAGES if lang.warm_start and self.argv[: len(lang.run)] == lang.run), None
        )
        if language is None:
            return None
        moved = {name: value.replace(str(self.workdir), str(workdir)) for name, value in self.env.items()}
        return WarmStart(language.run, moved, language.file_name)


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
                opened = bool(select.select([self._opens], [], [], min(left, _ALIVE_CHECK_S))[0])
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


def set_rlimits(pid: int, uid: int, limits: Mapping[int, int]) -> None:
    """Sets the process's rlimits (soft and hard, as dash's ulimit does): only lowered, never raised.

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
