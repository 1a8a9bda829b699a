"""CPU-seconds used by the processes of the bench's own stack, read from /proc.

A process's figure holds its own time and that of its descendants, the live ones and the reaped ones it
waited for: an executor's descendants are its sandboxes (their compiles and runs). The PostgreSQL
backends serving one database are found through pg_stat_activity. Used by the main bench (CPU per run of
a burst, by process) and by the capacity measure (bench/capacity.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessCpu:
    own_s: float  # the process itself
    descendants_s: float  # its live descendants, and the children it has waited for

    @property
    def total_s(self) -> float:
        return self.own_s + self.descendants_s


def by_process(pids: Mapping[str, int]) -> dict[str, ProcessCpu]:
    """CPU-seconds so far of each named process (a process gone meanwhile reads as 0)."""
    children = _children()
    used = {}
    for name, pid in pids.items():
        fields = _stat_fields(pid)
        own = sum(int(v) for v in fields[11:13]) / CLOCK_TICKS if fields else 0.0
        total = sum(_cpu_s(p) for p in _tree(pid, children))
        used[name] = ProcessCpu(own, total - own)
    return used


def postgres_backends(admin: psycopg.Connection, database: str) -> dict[int, float]:
    """CPU-seconds so far of each PostgreSQL backend connected to `database`, by pid."""
    rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)).fetchall()
    return {pid: _cpu_s(pid) for (pid,) in rows}


def backends_delta(earlier: Mapping[int, float], later: Mapping[int, float]) -> float:
    """CPU-seconds the backends used between two readings: a backend that came meanwhile counts from 0;
    one gone meanwhile took its last CPU with it."""
    return sum(cpu - earlier.get(pid, 0.0) for pid, cpu in later.items())


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _tree(pid: int, children: dict[int, list[int]]) -> Iterable[int]:
    yield pid
    for child in children.get(pid, []):
        yield from _tree(child, children)


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (state first), or [] for a process gone meanwhile."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return text.rsplit(")", 1)[1].split()


def _cpu_s(pid: int) -> float:
    """utime + stime + cutime + cstime: the process and the children it has waited for."""
    fields = _stat_fields(pid)
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS if fields else 0.0


@dataclass(frozen=True)
class Reading:
    processes: dict[str, ProcessCpu]  # by service name: "gateway", "executor-1", "redis", ...
    backends: dict[int, float]  # the PostgreSQL backends of the stack's database


def read(pids: Mapping[str, int], admin: psycopg.Connection, database: str) -> Reading:
    return Reading(by_process(pids), postgres_backends(admin, database))


def spent_ms_per_run(earlier: Reading, later: Reading, runs: int) -> dict[str, float]:
    """CPU-ms per run between two readings by process: a service with its workers (the gateway's), an
    executor's own, all the executors' sandboxes (their descendants) together, and PostgreSQL."""
    spent: dict[str, float] = {}
    for name, used in later.processes.items():
        before = earlier.processes[name]
        if name.startswith("executor"):
            spent[name] = used.own_s - before.own_s
            spent["sandboxes"] = spent.get("sandboxes", 0.0) + used.descendants_s - before.descendants_s
        else:
            spent[name] = used.total_s - before.total_s
    spent["postgres"] = backends_delta(earlier.backends, later.backends)
    spent["total"] = sum(spent.values())
    return {name: seconds * 1000 / runs for name, seconds in spent.items()}
