"""Per-run control groups: the kernel's memory, process-count and CPU accounting for one run.

One run gets one cgroup (one directory per v1 hierarchy: memory, pids, cpuacct; one directory on
v2). The sandbox's exec helper writes "0" (itself) into `join_files` before it execs bwrap, so
everything the run starts is counted, limited and killable as a set, setsid children included.
The cgroup is created, and joined, before the job arrives (prespawn.py); the job's limits are
written when it does.

Both versions are supported because the development machines mount v1 per controller while
stock Debian 12 boots v2 only. Per-run cgroups are created under the cgroup the executor itself
is in when that directory is visible (so the executor's own limits still bound its runs), else
under the hierarchy's root (a container that sees its own cgroup as the mount root).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

_MOUNTINFO = Path("/proc/self/mountinfo")
_OWN_CGROUP = Path("/proc/self/cgroup")
_V1_CONTROLLERS = ("memory", "pids", "cpuacct")
_V2_CONTROLLERS = ("memory", "pids")
_SWEEP_TIMEOUT_S = 5.0


class CgroupError(RuntimeError):
    """The cgroup tree is missing, not writable, or a run's cgroup could not be emptied."""


class RunCgroup(ABC):
    """The cgroup of one run: limits set before its program starts, metrics read after, everything killed at the end."""

    join_files: tuple[Path, ...]  # where a single-threaded process writes "0" to enter the cgroup

    @abstractmethod
    def limit(self, *, memory_bytes: int, max_processes: int) -> None:
        """Sets the run's limits, once, before its program starts (its sandbox may already wait in it)."""

    @abstractmethod
    def cpu_time_ns(self) -> int: ...

    @abstractmethod
    def pids(self) -> list[int]:
        """The host pids of the processes in the cgroup."""

    @abstractmethod
    def memory_peak_bytes(self) -> int: ...

    @abstractmethod
    def oom_kills(self) -> int: ...

    @abstractmethod
    def kill(self) -> None:
        """SIGKILLs every process in the cgroup, once; cheap enough to call repeatedly."""

    @abstractmethod
    def _populated(self) -> bool: ...

    @abstractmethod
    def _directories(self) -> tuple[Path, ...]: ...

    def empty(self) -> None:
        """Kills until no process is left, setsid children and forks in flight included."""
        self._until(lambda: not self._populated(), "empty")

    def remove(self) -> None:
        """Removes the (empty) cgroup; its final counters are gone afterwards."""
        self._until(self._rmdir, "be removed")

    def destroy(self) -> None:
        self.empty()
        self.remove()

    def _until(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + _SWEEP_TIMEOUT_S
        pause = 0.0002
        # A process can fork between reading the member list and the kill: sweep until none is left.
        while True:
            self.kill()
            if done():
                return
            if time.monotonic() > deadline:
                raise CgroupError(f"cgroup {self._directories()[0]} did not {what}")
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def _rmdir(self) -> bool:
        for directory in self._directories():
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno == errno.EBUSY:
                    return False  # a killed process the kernel has not released yet
                raise
        return True


class CgroupV1(RunCgroup):
    def __init__(self, dirs: dict[str, Path]) -> None:
        self.dirs = dirs
        # Moving the writing thread itself through "tasks" skips the global threadgroup lock that
        # a cgroup.procs write takes: 0.2 ms instead of 8-16 ms here. The joiner is single-threaded.
        self.join_files = tuple(directory / "tasks" for directory in dirs.values())

    def limit(self, *, memory_bytes: int, max_processes: int) -> None:
        # Both memory limits start unlimited: lowering the plain one first keeps it <= memsw as required.
        _write(self.dirs["memory"] / "memory.limit_in_bytes", memory_bytes)
        # Without memsw, pages over the limit go to swap instead of triggering the OOM killer.
        _write_if_present(self.dirs["memory"] / "memory.memsw.limit_in_bytes", memory_bytes)
        _write(self.dirs["pids"] / "pids.max", max_processes)

    def cpu_time_ns(self) -> int:
        return int(_read(self.dirs["cpuacct"] / "cpuacct.usage"))

    def memory_peak_bytes(self) -> int:
        return int(_read(self.dirs["memory"] / "memory.max_usage_in_bytes"))

    def oom_kills(self) -> int:
        # failcnt counts reclaim attempts at the limit, not kills; oom_kill counts kills only.
        return _keyed(self.dirs["memory"] / "memory.oom_control").get("oom_kill", 0)

    def pids(self) -> list[int]:
        return _pids(self.dirs["pids"] / "cgroup.procs")

    def kill(self) -> None:
        for pid in self.pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _populated(self) -> bool:
        return bool(self.pids())

    def _directories(self) -> tuple[Path, ...]:
        return tuple(self.dirs.values())


class CgroupV2(RunCgroup):
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.join_files = (directory / "cgroup.procs",)

    def limit(self, *, memory_bytes: int, max_processes: int) -> None:
        _write(self.directory / "memory.max", memory_bytes)
        _write_if_present(self.directory / "memory.swap.max", 0)
        _write(self.directory / "pids.max", max_processes)

    def cpu_time_ns(self) -> int:
        return _keyed(self.directory / "cpu.stat")["usage_usec"] * 1000

    def memory_peak_bytes(self) -> int:
        return int(_read(self.directory / "memory.peak"))

    def pids(self) -> list[int]:
        return _pids(self.directory / "cgroup.procs")

    def oom_kills(self) -> int:
        return _keyed(self.directory / "memory.events").get("oom_kill", 0)

    def kill(self) -> None:
        # cgroup.kill (kernel 5.14+) kills the whole subtree atomically, forks in flight included.
        with suppress(FileNotFoundError):
            (self.directory / "cgroup.kill").write_text("1")

    def _populated(self) -> bool:
        return _keyed(self.directory / "cgroup.events").get("populated", 0) == 1

    def _directories(self) -> tuple[Path, ...]:
        return (self.directory,)


class CgroupTree:
    """Where this executor creates run cgroups, and how (v1 or v2)."""

    def __init__(self, version: int, bases: dict[str, Path]) -> None:
        self.version = version
        self.bases = bases  # v1: controller -> directory; v2: {"unified": directory}

    @classmethod
    def discover(cls) -> CgroupTree:
        mounts = _cgroup_mounts()
        own = _own_cgroups()
        if all(controller in mounts for controller in _V1_CONTROLLERS):
            return cls(1, {c: _base(mounts[c], own.get(c, "/")) for c in _V1_CONTROLLERS})
        if "unified" in mounts:
            return cls(2, {"unified": _delegate_v2(_base(mounts["unified"], own.get("", "/")))})
        raise CgroupError("no usable cgroup hierarchy: need v1 memory, pids and cpuacct, or cgroup2")

    def create(self, name: str) -> RunCgroup:
        """A fresh cgroup, limits still open; a leftover of the same name (a crashed run) is destroyed first."""
        group = self._handle(name)
        if any(directory.exists() for directory in group._directories()):
            group.destroy()
        for directory in group._directories():
            directory.mkdir()
        if self.version == 1:
            # Reclaim at the limit must not move the run's pages to swap: it hits the OOM killer instead.
            _write(self.bases["memory"] / name / "memory.swappiness", 0)
        return group

    def names(self) -> set[str]:
        """The run cgroups that exist now, e.g. leftovers of an executor killed mid-run."""
        return {entry.name for base in self.bases.values() for entry in base.iterdir() if entry.is_dir()}

    def destroy(self, name: str) -> None:
        self._handle(name).destroy()

    def _handle(self, name: str) -> RunCgroup:
        if self.version == 1:
            return CgroupV1({c: self.bases[c] / name for c in _V1_CONTROLLERS})
        return CgroupV2(self.bases["unified"] / name)


def _cgroup_mounts() -> dict[str, Path]:
    """Mount point per v1 controller, and of cgroup2 under "unified"."""
    mounts: dict[str, Path] = {}
    for line in _MOUNTINFO.read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, _, options = tail.split(" ")[:3]
        mount_point = Path(fields.split(" ")[4])
        if fstype == "cgroup2":
            mounts.setdefault("unified", mount_point)
        elif fstype == "cgroup":
            for option in options.split(","):
                if option in _V1_CONTROLLERS:
                    mounts.setdefault(option, mount_point)
    return mounts


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and on v2 under ""."""
    own: dict[str, str] = {}
    for line in _OWN_CGROUP.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own[controller] = path
    return own


def _base(mount: Path, own_path: str) -> Path:
    candidate = mount / own_path.lstrip("/")
    return candidate if candidate.is_dir() else mount


def _delegate_v2(base: Path) -> Path:
    """Makes base able to hold run cgroups with memory and pids controllers.

    v2 lets a cgroup enable controllers for its children only when it holds no process itself,
    so the executor first moves itself into a leaf of its own. Processes outside the executor
    in the same cgroup make this fail: give the executor a delegated cgroup of its own
    (systemd Delegate=yes, or a container with a private cgroup namespace).
    """
    enabled = _read(base / "cgroup.subtree_control").split()
    if all(controller in enabled for controller in _V2_CONTROLLERS):
        return base
    available = _read(base / "cgroup.controllers").split()
    missing = [controller for controller in _V2_CONTROLLERS if controller not in available]
    if missing:
        raise CgroupError(f"cgroup2 at {base} lacks controllers {missing}")
    supervisor = base / f"lce-executor-{os.getpid()}"
    supervisor.mkdir(exist_ok=True)
    _write(supervisor / "cgroup.procs", os.getpid())
    try:
        _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in _V2_CONTROLLERS))
    except OSError as exc:
        raise CgroupError(f"cannot enable {_V2_CONTROLLERS} in {base}: other processes live there ({exc})") from exc
    return base


def _read(path: Path) -> str:
    return path.read_text().strip()


def _keyed(path: Path) -> dict[str, int]:
    """A flat-keyed file ("key value" per line), e.g. memory.events, cpu.stat, memory.oom_control."""
    pairs = (line.split() for line in path.read_text().splitlines())
    return {key: int(value) for key, value in pairs}


def _pids(path: Path) -> list[int]:
    try:
        return [int(pid) for pid in path.read_text().split()]
    except FileNotFoundError:
        return []


def _write(path: Path, value: int | str) -> None:
    path.write_text(str(value))


def _write_if_present(path: Path, value: int) -> None:
    if path.exists():
        _write(path, value)
