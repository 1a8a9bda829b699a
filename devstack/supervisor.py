"""Keeps `make run` up: a process of the stack that dies is logged and started again after a backoff,
alone (its peers reconnect), until the stack is stopped. The test suites use Stack unsupervised: they
kill services on purpose and expect them to stay dead."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from devstack import Service, Stack
from devstack.ports import bind_problem, service_claims

log = logging.getLogger("devstack")


@dataclass(frozen=True)
class BackoffPolicy:
    first_s: float = 0.5
    max_s: float = 30.0
    # A process up this long had recovered: its next death starts again from first_s.
    reset_after_s: float = 60.0


@dataclass
class Backoff:
    """The waits before restarting one process: first_s, doubling up to max_s."""

    policy: BackoffPolicy = field(default_factory=BackoffPolicy)
    _next_s: float | None = None

    def next_delay(self, uptime_s: float) -> float:
        """The wait before the next start of a process that died after `uptime_s` up."""
        if self._next_s is None or uptime_s >= self.policy.reset_after_s:
            self._next_s = self.policy.first_s
        delay = self._next_s
        self._next_s = min(delay * 2, self.policy.max_s)
        return delay


def describe_exit(returncode: int) -> str:
    """`Popen.returncode` in words: "exited with code 1", "was killed by SIGKILL"."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


def has_exited(process: subprocess.Popen[bytes]) -> bool:
    """Whether `process` has exited, leaving it unreaped (a zombie) when it had not been reaped yet."""
    if process.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped by someone else meanwhile
        process.poll()
        return True


@dataclass
class _Watched:
    service: Service
    backoff: Backoff
    restarts: int = 0
    restart_at: float | None = None  # set while the process is dead


class Supervisor:
    """Watches the processes of a started Stack and restarts the ones that die."""

    def __init__(
        self, stack: Stack, policy: BackoffPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stack = stack
        self._clock = clock  # the clock of Service.started_at
        self._watched = [_Watched(service, Backoff(policy or BackoffPolicy())) for service in stack.services]

    def run(self, stop: threading.Event, tick_s: float = 0.2) -> None:
        """Supervises until `stop` is set (by SIGINT or SIGTERM); stopping the stack is the caller's."""
        while not stop.wait(tick_s):
            self.tick()

    def tick(self) -> None:
        now = self._clock()
        for watched in self._watched:
            process = watched.service.process
            if watched.restart_at is None:
                if process is not None and has_exited(process):
                    self._died(watched, process, now)
            elif now >= watched.restart_at:
                self._restart(watched, now)

    def _died(self, watched: _Watched, process: subprocess.Popen[bytes], now: float) -> None:
        if process.returncode is None:
            # What the dead process left in its group (the gateway's uvicorn workers) would hold its
            # port. Its zombie still holds the group's id, so this reaches no other process.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        returncode = process.wait()
        uptime_s = now - watched.service.started_at
        delay = watched.backoff.next_delay(uptime_s)
        watched.restart_at = now + delay
        log.warning(
            "%s %s after %.1f s up; restarting it in %s s",
            watched.service.name,
            describe_exit(returncode),
            uptime_s,
            f"{delay:g}",
        )

    def _restart(self, watched: _Watched, now: float) -> None:
        # A port freed by the death may have been taken meanwhile (by an outgoing connection, when
        # it lies in the ephemeral range): say so instead of starting a process that cannot listen.
        taken = [problem for claim in service_claims(watched.service) if (problem := bind_problem(claim))]
        if taken:
            delay = watched.backoff.next_delay(0.0)
            watched.restart_at = now + delay
            log.warning("%s not restarted: %s; next attempt in %s s", watched.service.name, taken[0], f"{delay:g}")
            return
        self.stack.spawn(watched.service)
        watched.restarts += 1
        watched.restart_at = None
        assert watched.service.process is not None
        log.info(
            "restarted %s (pid %d, restart %d)", watched.service.name, watched.service.process.pid, watched.restarts
        )
