"""The ledger of a chaos test: every run the gateway accepted (202), what it must print, and what became of it.

Each run prints a token of its own, so a result delivered to the wrong execution, a stale
snapshot or a run executed from the wrong source shows up as wrong output, not as a pass.
Statuses are read a session at a time (`GET /code-sessions/{id}/executions`), so a sweep over
hundreds of runs costs one request per session; the full result is fetched once per run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

TERMINAL = frozenset({"COMPLETED", "FAILED", "TIMEOUT"})
# The README's rate limit is 10 runs per minute per session; staying under it keeps 429s out of the picture.
MAX_RUNS_PER_SESSION = 10
# Long enough for a sleeping program plus sandbox start-up on a loaded 2-core machine.
SLEEPER_TIME_LIMIT_MS = 20_000
SWEEP_PAUSE_S = 0.2


def hello(token: str) -> str:
    return f'print("{token}")\n'


def sleeper(token: str, sleep_s: float) -> str:
    return f'import time\ntime.sleep({sleep_s})\nprint("{token}")\n'


@dataclass
class Run:
    execution_id: str
    session_id: str
    expected_stdout: str
    status: str = "QUEUED"
    terminal_at: float | None = None  # time.monotonic() when first seen terminal
    result: dict[str, Any] | None = None  # the terminal GET /executions/{id}
    missing: bool = False  # the execution was not found (404): lost

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def correct(self) -> bool:
        return (
            self.result is not None
            and self.result["status"] == "COMPLETED"
            and self.result["stdout"] == self.expected_stdout
        )


@dataclass(frozen=True)
class Tally:
    total: int
    lost: int  # accepted, then gone: the execution is not found any more
    stuck: int  # still QUEUED or RUNNING at the bound
    wrong: int  # terminal, but not COMPLETED with this run's own output
    last_terminal_at: float | None

    def problems(self, ledger: Ledger) -> str:
        """A readable account of every run that is not fine, for assertion messages."""
        bad = [run for run in ledger.runs.values() if not run.correct]
        counts = f"lost={self.lost} stuck={self.stuck} wrong={self.wrong}"
        lines = [f"{len(bad)} of {self.total} runs not correct ({counts})"]
        for run in bad[:10]:
            detail = run.result or {"status": run.status, "missing": run.missing}
            lines.append(f"  {run.execution_id}: expected {run.expected_stdout!r}, got {_short(detail)}")
        return "\n".join(lines)


def _short(result: dict[str, Any]) -> str:
    keys = ("status", "reason", "stdout", "stderr", "exit_code", "missing")
    return repr({key: result[key] for key in keys if key in result})


@dataclass
class Ledger:
    api: httpx.Client
    runs: dict[str, Run] = field(default_factory=dict)
    _per_session: dict[str, int] = field(default_factory=dict)
    _python_id: str | None = None

    # --- sessions and submissions --------------------------------------------------------

    def python_id(self) -> str:
        if self._python_id is None:
            listing = self.api.get("/languages")
            assert listing.status_code == 200, listing.text
            self._python_id = next(lang["id"] for lang in listing.json()["languages"] if lang["name"] == "python")
        return self._python_id

    def new_sessions(self, count: int) -> list[str]:
        sessions = []
        for _ in range(count):
            created = self.api.post("/code-sessions", json={"language_id": self.python_id()})
            assert created.status_code == 201, created.text
            sessions.append(created.json()["session_id"])
        return sessions

    def submit(self, session_id: str, *, sleep_s: float = 0.0, accept_within_s: float = 0.0) -> Run:
        """Saves a program printing a fresh token in the session and runs it; the 202 goes in the ledger.

        `accept_within_s` > 0 lets a 503 (a documented "retry shortly") be retried for that long,
        for submissions right after a fault; anything else than 202 fails the test.
        """
        used = self._per_session.get(session_id, 0)
        assert used < MAX_RUNS_PER_SESSION, "the test itself would hit the per-session rate limit"
        token = f"run-{uuid.uuid4().hex}"
        source = sleeper(token, sleep_s) if sleep_s else hello(token)
        limits = {"time_limit_ms": SLEEPER_TIME_LIMIT_MS} if sleep_s else None
        deadline = time.monotonic() + accept_within_s
        while True:
            accepted = self._save_and_run(session_id, source, limits)
            if accepted.status_code != 503 or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        assert accepted.status_code == 202, f"{accepted.status_code} {accepted.text}"
        body = accepted.json()
        assert body["status"] == "QUEUED", body
        self._per_session[session_id] = used + 1
        run = Run(body["execution_id"], session_id, expected_stdout=f"{token}\n")
        self.runs[run.execution_id] = run
        return run

    def _save_and_run(self, session_id: str, source: str, limits: dict[str, int] | None) -> httpx.Response:
        # Each run snapshots the session's source when accepted, so saving a new program before each
        # run gives every run its own expected output (and proves later autosaves change nothing).
        saved = self.api.patch(f"/code-sessions/{session_id}", json={"source_code": source})
        if saved.status_code != 200:
            return saved
        return self.api.post(f"/code-sessions/{session_id}/run", json=limits)

    # --- observing -----------------------------------------------------------------------

    def pending(self) -> list[Run]:
        return [run for run in self.runs.values() if not run.terminal]

    def count(self, status: str) -> int:
        return sum(1 for run in self.runs.values() if run.status == status)

    def refresh(self) -> None:
        """One sweep over the sessions with unfinished runs; a backend that is down is simply asked again later."""
        for session_id in sorted({run.session_id for run in self.pending()}):
            try:
                listing = self.api.get(f"/code-sessions/{session_id}/executions", params={"limit": 100})
            except httpx.HTTPError:
                continue
            if listing.status_code != 200:
                continue
            for summary in listing.json()["executions"]:
                run = self.runs.get(summary["execution_id"])
                if run is not None and not run.terminal:
                    self._observe(run, summary["status"])

    def _observe(self, run: Run, status: str) -> None:
        if status not in TERMINAL:
            run.status = status
            return
        detail = self.api.get(f"/executions/{run.execution_id}")
        if detail.status_code == 200 and detail.json()["status"] in TERMINAL:
            run.result = detail.json()
            run.status = run.result["status"]
            run.terminal_at = time.monotonic()

    def wait_until(self, condition: Callable[[Ledger], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.refresh()
            if condition(self):
                return
            time.sleep(SWEEP_PAUSE_S)
        raise AssertionError(f"not reached within {timeout_s:.0f} s: {what}; statuses {self.statuses()}")

    def wait_all_terminal(self, timeout_s: float) -> Tally:
        """Sweeps until every run is terminal or the bound passes, then settles the account."""
        deadline = time.monotonic() + timeout_s
        while self.pending() and time.monotonic() < deadline:
            self.refresh()
            if self.pending():
                time.sleep(SWEEP_PAUSE_S)
        return self.tally()

    def tally(self) -> Tally:
        for run in self.pending():
            # The one authoritative look at a run that never finished: gone (lost) or not (stuck).
            answer = self.api.get(f"/executions/{run.execution_id}")
            run.missing = answer.status_code == 404
            if answer.status_code == 200:
                run.status = answer.json()["status"]
        finished = [run.terminal_at for run in self.runs.values() if run.terminal_at is not None]
        return Tally(
            total=len(self.runs),
            lost=sum(1 for run in self.runs.values() if run.missing),
            stuck=sum(1 for run in self.runs.values() if not run.terminal and not run.missing),
            wrong=sum(1 for run in self.runs.values() if run.terminal and not run.correct),
            last_terminal_at=max(finished) if finished else None,
        )

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run in self.runs.values():
            counts[run.status] = counts.get(run.status, 0) + 1
        return counts

    def events(self, execution_id: str) -> list[dict[str, Any]]:
        """The run's lifecycle log (GET /executions/{id}/events), oldest first."""
        answer = self.api.get(f"/executions/{execution_id}/events")
        assert answer.status_code == 200, f"{answer.status_code} {answer.text}"
        body = answer.json()
        assert body["execution_id"] == execution_id, body
        return list(body["events"])
