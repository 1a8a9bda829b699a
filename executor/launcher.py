"""The contract between the executor's job logic and whatever runs a program: limits in, outcome out.

`jobs` decides what to run (compile, then run) and turns outcomes into verdicts; a Launcher
decides how it is confined. The sandboxed launcher (executor/sandbox/) and the unconfined
development launcher (executor/process.py) both implement it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Limits:
    wall_time_ms: int
    cpu_time_ms: int
    memory_mb: int
    max_processes: int = 64
    max_file_bytes: int = 64 * 1024 * 1024
    output_limit_bytes: int = 1024 * 1024  # per stream


class LimitExceeded(StrEnum):
    WALL_TIME = "time_limit_exceeded:wall"
    CPU_TIME = "time_limit_exceeded:cpu"
    MEMORY = "memory_limit_exceeded"
    OUTPUT = "output_limit_exceeded"


@dataclass(frozen=True)
class StageOutcome:
    exit_code: int | None  # None when the program was killed by a signal
    signal: int | None  # the signal that ended it, if any
    wall_time_ms: int
    cpu_time_ms: int
    memory_kb: int  # peak
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    limit_exceeded: LimitExceeded | None


class LiveStdin(Protocol):
    """More stdin as the client sends it (executor/live_input.py), taken when wakeup_fd turns readable."""

    wakeup_fd: int

    def take(self) -> tuple[bytes, bool]:
        """What came since the last call, and whether stdin is closed after it."""
        ...


class Launcher(Protocol):
    mode: str  # names the confinement in every result: "none" for the unconfined development launcher

    def workspace(self) -> AbstractContextManager[Path]:
        """A fresh private work dir for one execution (shared by its compile and run), removed afterwards."""
        ...

    def run(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        env: Mapping[str, str],
        limits: Limits,
        stdin: bytes = b"",
        live_stdin: LiveStdin | None = None,
        on_output: Callable[[str, bytes], None] | None = None,
        another_stage_follows: bool = False,
    ) -> StageOutcome:
        """Runs argv in workdir fed `stdin`, then what live_stdin brings (an interactive run), then end of
        file, enforcing limits; no process of it outlives the call.
        on_output is told each chunk of output ("stdout" or "stderr", its bytes) as it is read.

        another_stage_follows (a compile, when its run comes next) lets the launcher set up the
        next stage while this one runs."""
        ...

    def close(self) -> None:
        """Releases what the launcher holds between jobs (a prepared sandbox, its mounted work dir)."""
        ...
