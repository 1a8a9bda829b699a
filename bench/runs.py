"""Runs through the public API: end-to-end latency, throughput of a burst, and where one run's time goes.

End to end is what an IDE user waits for: POST /code-sessions/{id}/run sent -> a terminal status
seen, three ways: GET /executions/{id} polled (every 2 ms like the original system's measurement, or
every 100 ms like a realistic client), one POST .../run?wait=N, and GET /executions/{id}/stream read
to its result event.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from bench.stats import latency_summary, percentile

TERMINAL = {"COMPLETED", "FAILED", "TIMEOUT"}
POLL_S = 0.002
# The burst's watcher sweeps every session's list; a slower sweep keeps the watching from loading
# the gateway as hard as the work it watches, and 20 ms is under 1 % of a burst's span.
BURST_SWEEP_S = 0.02
HELLO = "Hello World\n"
# The documented abuse rule: 10 runs per session per sliding minute. Against a deployment that is
# not ours the bench stays under it by moving to a fresh session; on its own stack the rule is lifted.
RATE_LIMITED_RUNS_PER_SESSION = 10

PYTHON_HELLO = 'print("Hello World")\n'
C_HELLO = '#include <stdio.h>\n\nint main(void) {\n    printf("Hello World\\n");\n    return 0;\n}\n'
JAVA_HELLO = (
    'public class Main {\n    public static void main(String[] args) {\n        System.out.println("Hello World");\n'
    "    }\n}\n"
)


# How each language's line comment starts: a never-seen source ends with a unique one.
LINE_COMMENTS = {"python": "#", "ruby": "#", **dict.fromkeys(("javascript", "php", "c", "cpp", "go", "java"), "//")}


def unseen(language: str, source: str) -> str:
    """`source` with a unique comment at its end: no cache keyed by the source text (a compile cache, a warm
    runtime's) has seen it, so every run does all the work a new program costs."""
    return f"{source}{LINE_COMMENTS[language]} bench {uuid.uuid4().hex}\n"


@dataclass(frozen=True)
class Workload:
    name: str
    language: str
    source: Callable[[], str]  # called before every run: a constant, or a fresh never-seen source
    time_limit_ms: int = 5000
    seen_by: str = "poll"  # how the client learns the result: "poll", "wait" or "stream"
    poll_s: float = POLL_S  # "poll": the least time between two requests


@dataclass
class Sessions:
    """Hands out a session holding the wanted source, rotating before the rate limit would bite."""

    client: httpx.Client
    language_ids: dict[str, str]
    runs_per_session: int | None
    _current: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # language -> (id, source, runs)

    def for_run(self, language: str, source: str) -> str:
        current = self._current.get(language)
        if current is None or (self.runs_per_session is not None and current[2] >= self.runs_per_session):
            current = (create_session(self.client, self.language_ids[language]), "", 0)
        session_id, saved, runs = current
        if saved != source:
            expect(self.client.patch(f"/code-sessions/{session_id}", json={"source_code": source}), 200)
        self._current[language] = (session_id, source, runs + 1)
        return session_id


def expect(answer: httpx.Response, status: int) -> dict[str, Any]:
    if answer.status_code != status:
        raise RuntimeError(f"{answer.request.method} {answer.request.url}: {answer.status_code} {answer.text}")
    body: dict[str, Any] = answer.json()
    return body


def language_ids(client: httpx.Client) -> dict[str, str]:
    listing = expect(client.get("/languages"), 200)["languages"]
    return {language["name"]: language["id"] for language in listing}


def create_session(client: httpx.Client, language_id: str) -> str:
    session_id: str = expect(client.post("/code-sessions", json={"language_id": language_id}), 201)["session_id"]
    return session_id


@dataclass(frozen=True)
class Timed:
    """One run as the client saw it, with wall-clock marks comparable to the server's timestamps."""

    latency_ms: float
    posted_at: float  # time.time() just before the POST
    accepted_at: float  # 202 received
    seen_at: float  # terminal status received
    polls: int
    body: dict[str, Any]

    @property
    def correct(self) -> bool:
        return self.body.get("status") == "COMPLETED" and self.body.get("stdout") == HELLO


def timed_run(
    client: httpx.Client, session_id: str, time_limit_ms: int, seen_by: str = "poll", poll_s: float = POLL_S
) -> Timed:
    posted_at = time.time()
    started = time.perf_counter()
    limits = {"time_limit_ms": time_limit_ms}
    if seen_by == "wait":
        body = expect(client.post(f"/code-sessions/{session_id}/run", params={"wait": 30}, json=limits), 200)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return Timed(elapsed_ms, posted_at, time.time(), time.time(), 0, body)
    accepted = expect(client.post(f"/code-sessions/{session_id}/run", json=limits), 202)
    accepted_at = time.time()
    if seen_by == "stream":
        body = _streamed_result(client, accepted["execution_id"])
        elapsed_ms = (time.perf_counter() - started) * 1000
        return Timed(elapsed_ms, posted_at, accepted_at, time.time(), 0, body)
    polls = 0
    sent = started
    while True:
        # At most one request per poll_s, the POST included: a client polling every 100 ms asks first at 100 ms.
        time.sleep(max(0.0, sent + poll_s - time.perf_counter()))
        sent = time.perf_counter()
        polls += 1
        body = expect(client.get(f"/executions/{accepted['execution_id']}"), 200)
        if body["status"] in TERMINAL:
            elapsed_ms = (time.perf_counter() - started) * 1000
            return Timed(elapsed_ms, posted_at, accepted_at, time.time(), polls, body)


def _streamed_result(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    """The data of the stream's result event."""
    with client.stream("GET", f"/executions/{execution_id}/stream") as response:
        result = False
        for line in response.iter_lines():
            if line == "event: result":
                result = True
            elif result and line.startswith("data: "):
                body: dict[str, Any] = json.loads(line.removeprefix("data: "))
                return body
    raise RuntimeError(f"the stream of {execution_id} ended without a result")


def end_to_end(sessions: Sessions, workload: Workload, count: int) -> tuple[dict[str, float], list[Timed]]:
    """`count` sequential runs of one workload: latency percentiles, and every run for the caller's checks."""
    done = []
    for _ in range(count):
        session_id = sessions.for_run(workload.language, workload.source())
        done.append(timed_run(sessions.client, session_id, workload.time_limit_ms, workload.seen_by, workload.poll_s))
    summary = latency_summary([run.latency_ms for run in done])
    summary["incorrect"] = sum(not run.correct for run in done)
    return summary, done


# --- throughput -----------------------------------------------------------------------------


async def burst(base_url: str, python_id: str, runs: int, per_session: int) -> dict[str, float]:
    """`runs` Python hello worlds submitted at once; completions/s until the last is seen terminal.

    Each POST asks to wait for its run (?wait=30), the push path: the answer comes as the run ends,
    so the watching costs no polling. A run still going when its wait ends is watched through the
    execution lists of the sessions that still have runs pending.
    """
    limits = httpx.Limits(max_connections=runs, max_keepalive_connections=runs)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        session_ids = await _burst_sessions(client, python_id, -(-runs // per_session))
        targets = [session_ids[i // per_session] for i in range(runs)]
        started = time.perf_counter()
        answers = await asyncio.gather(
            *(client.post(f"/code-sessions/{s}/run", params={"wait": 30}, json={}) for s in targets)
        )
        answered = time.perf_counter()
        execution_ids = [_waited_run(answer) for answer in answers]
        pending: dict[str, set[str]] = {}
        for session_id, execution_id, answer in zip(targets, execution_ids, answers, strict=True):
            if answer.status_code == 202:  # still going when its wait ended
                pending.setdefault(session_id, set()).add(execution_id)
        await watch(client, pending, per_session)
        finished = time.perf_counter()
        bodies = await asyncio.gather(*(get(client, f"/executions/{e}") for e in execution_ids))
    details = [expect(answer, 200) for answer in bodies]
    incorrect = sum(not (d["status"] == "COMPLETED" and d["stdout"] == HELLO) for d in details)
    created = [_parse_ts(d["created_at"]) for d in details]
    ended = [_parse_ts(d["finished_at"]) for d in details if d.get("finished_at")]
    server_span = max(ended) - min(created) if ended else float("nan")
    return {
        "runs": runs,
        "completions_per_s": runs / (finished - started),
        "server_completions_per_s": runs / server_span if server_span > 0 else float("nan"),
        "answered_s": answered - started,
        "total_s": finished - started,
        "incorrect": incorrect,
    }


def _waited_run(answer: httpx.Response) -> str:
    """The execution id of a POST .../run?wait: 200 with the finished run, or 202 when the wait ended first."""
    execution_id: str = expect(answer, 200 if answer.status_code == 200 else 202)["execution_id"]
    return execution_id


async def _burst_sessions(client: httpx.AsyncClient, python_id: str, count: int) -> list[str]:
    async def one() -> str:
        answer = await client.post("/code-sessions", json={"language_id": python_id, "source_code": PYTHON_HELLO})
        session_id: str = expect(answer, 201)["session_id"]
        return session_id

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def watch(client: httpx.AsyncClient, pending: dict[str, set[str]], per_session: int) -> None:
    """Until every run is terminal: each sweep reads the list of each session that still has runs pending."""
    deadline = time.perf_counter() + 120
    while pending:
        if time.perf_counter() > deadline:
            left = sum(len(runs) for runs in pending.values())
            raise RuntimeError(f"{left} runs not terminal after 120 s")
        sessions = list(pending)
        pages = await asyncio.gather(
            *(get(client, f"/code-sessions/{s}/executions", params={"limit": per_session}) for s in sessions)
        )
        for session_id, page in zip(sessions, pages, strict=True):
            ended = {row["execution_id"] for row in expect(page, 200)["executions"] if row["status"] in TERMINAL}
            pending[session_id] -= ended
            if not pending[session_id]:
                del pending[session_id]
        if pending:
            await asyncio.sleep(BURST_SWEEP_S)


async def get(client: httpx.AsyncClient, path: str, **kwargs: Any) -> httpx.Response:
    """A GET, retried when the server closed a pooled keep-alive connection just as we reused it
    (uvicorn drops idle ones after 5 s; a burst's pool has many). GETs are safe to repeat."""
    for _ in range(2):
        try:
            return await client.get(path, **kwargs)
        except (httpx.RemoteProtocolError, httpx.ConnectError, httpx.ReadError):
            continue
    return await client.get(path, **kwargs)


def _parse_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- profile of one Python run --------------------------------------------------------------


def profile(runs: list[Timed]) -> dict[str, dict[str, float]]:
    """Where the time of a Python run goes, from the client's marks and the server's timestamps.

    Server timestamps have millisecond resolution and come from the same clock (one machine),
    so each stage's median is good to about a millisecond.
    """
    stages: dict[str, list[float]] = {name: [] for name in PROFILE_STAGES}
    for run in runs:
        body = run.body
        created, started, finished = (_parse_ts(body[k]) for k in ("created_at", "started_at", "finished_at"))
        program_ms = sum(stage["wall_time_ms"] for stage in body.get("stages") or [])
        execute_ms = (finished - started) * 1000
        values = {
            "post_to_created": (created - run.posted_at) * 1000,
            "created_to_accepted": (run.accepted_at - created) * 1000,
            "created_to_started": (started - created) * 1000,
            "started_to_finished": execute_ms,
            "program_in_sandbox": float(program_ms),
            "executor_overhead": execute_ms - program_ms,
            "finished_to_seen": (run.seen_at - finished) * 1000,
            "client_total": run.latency_ms,
            "polls": float(run.polls),
        }
        for name, value in values.items():
            stages[name].append(value)
    return {name: {"p50": percentile(v, 50), "min": min(v), "max": max(v)} for name, v in stages.items() if v}


PROFILE_STAGES = {
    "post_to_created": "client POST sent -> row created_at (gateway, session check, abuse rules)",
    "created_to_accepted": "created_at -> 202 received (row + event insert, RQ enqueue, reply)",
    "created_to_started": "created_at -> started_at (queue wait, worker pickup, ReportStarted)",
    "started_to_finished": "started_at -> finished_at (workspace, sandbox, program, ReportResult)",
    "program_in_sandbox": "  of which: stage wall time as the launcher measured it",
    "executor_overhead": "  of which: the rest (workspace, cgroup, report, bookkeeping)",
    "finished_to_seen": "finished_at -> terminal status seen (poll interval + GET)",
    "client_total": "client POST sent -> terminal status seen",
    "polls": "GET /executions/{id} calls per run",
}
