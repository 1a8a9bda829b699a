"""Chaos: real services as processes, really killed and restarted, on a PostgreSQL and a Redis of each
test's own (issue 4, "Nothing lost, nothing stuck").

Every test holds the same promise to account: each run answered 202 reaches a terminal state
(0 lost), none is left QUEUED or RUNNING (0 stuck), and each prints its own token (0 wrong). Each
records a row of the chaos table (fault, runs, in flight, lost, stuck, wrong, outage, time to
recover) before it asserts, so a failing run still shows its numbers: printed with -s, repeated
in the terminal summary and written to chaos-table.json under the pytest base temp dir.

Recovery time runs from the end of the fault (the store or service is back; for a killed
executor, the kill itself) to the moment the last run was seen terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from tests.chaos.conftest import ChaosRow, Deploy, Deployment
from tests.chaos.runs import TERMINAL, Ledger, Tally

pytestmark = pytest.mark.chaos

# The bound for a run whose executor died, with the default lease (LCE_LEASE_S, 10 s):
# 60 s at most, sweeps and the rest of the queue included.
EXECUTOR_LOSS_BOUND_S = 60.0
# The reconciler sweeps every second by default (LCE_RECONCILE_INTERVAL_S) and re-queues what Redis lost.
REQUEUE_BOUND_S = 45.0
# A store or peer back after an outage: executors keep retrying their reports, then the queue drains.
OUTAGE_RECOVERY_BOUND_S = 45.0
# 500 hello-world runs on 2 executors on a 2-core machine: measured 36 to 72 s from the first request
# (quiet machine to one loaded by other test runs).
BURST_BOUND_S = 120.0
# "A quick 503, never a hang": every request during an outage is answered within this.
QUICK_ANSWER_S = 5.0
OUTAGE_S = 6.0
SLEEP_S = 3.0

Record = Callable[[ChaosRow], None]


# --- accounting ----------------------------------------------------------------------------


def record(
    chaos_table: Record,
    fault: str,
    tally: Tally,
    *,
    in_flight: int,
    back_at: float,
    outage_s: float = 0.0,
    answers: str = "",
) -> float | None:
    """Adds the test's row to the chaos table and returns the time to recover (None: runs never all finished)."""
    last = tally.last_terminal_at
    recover_s = None
    if tally.lost == 0 and tally.stuck == 0 and last is not None:
        recover_s = round(max(0.0, last - back_at), 2)
    chaos_table(
        ChaosRow(
            fault=fault,
            runs_total=tally.total,
            runs_in_flight=in_flight,
            lost=tally.lost,
            stuck=tally.stuck,
            wrong=tally.wrong,
            outage_s=round(outage_s, 2),
            recover_s=recover_s,
            outage_answers=answers,
        )
    )
    return recover_s


def assert_all_runs_correct(ledger: Ledger, tally: Tally) -> None:
    assert (tally.lost, tally.stuck, tally.wrong) == (0, 0, 0), tally.problems(ledger)


def assert_no_crash(lce: Deployment, *, killed: tuple[str, ...] = ()) -> None:
    crashed = [name for name in lce.crashed() if name not in killed]
    assert not crashed, f"services died during the fault instead of riding it out: {crashed}"


# --- outage probes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    what: str
    status: int | None  # None: no HTTP answer at all (timeout or connection error)
    retry_after: str | None
    seconds: float
    # The status of an execution answered with 200: a terminal one is final, and the gateway keeps it.
    execution_status: str | None = None

    @property
    def quick_503(self) -> bool:
        return self.status == 503 and bool(self.retry_after) and self.seconds < QUICK_ANSWER_S

    @property
    def quick_final_answer(self) -> bool:
        """A terminal execution answered from the gateway's memory, which needs no backend."""
        return self.status == 200 and self.execution_status in TERMINAL and self.seconds < QUICK_ANSWER_S


def probe(api: httpx.Client, method: str, path: str, body: object = None) -> Probe:
    started = time.monotonic()
    try:
        # A little over the bound, so that a hang is measured as one rather than cut short.
        answer = api.request(method, path, json=body, timeout=QUICK_ANSWER_S + 1)
    except httpx.HTTPError:
        return Probe(f"{method} {path}", None, None, time.monotonic() - started)
    seconds = time.monotonic() - started
    execution_status = answer.json().get("status") if answer.status_code == 200 and "/executions/" in path else None
    return Probe(f"{method} {path}", answer.status_code, answer.headers.get("retry-after"), seconds, execution_status)


def probe_outage(api: httpx.Client, requests: list[tuple[str, str, object]], duration_s: float) -> list[Probe]:
    """Sends the requests round after round for `duration_s`, keeping every answer."""
    probes: list[Probe] = []
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        probes += [probe(api, method, path, body) for method, path, body in requests]
        time.sleep(0.25)
    return probes


def judge_outage(
    lce: Deployment,
    ledger: Ledger,
    chaos_table: Record,
    fault: str,
    probes: list[Probe],
    *,
    in_flight: int,
    fault_at: float,
    back_at: float,
) -> None:
    """After a dependency's outage: every run finishes correctly, the table gets its row, the
    requests during the outage were answered quickly, and nothing crashed."""
    tally = ledger.wait_all_terminal(OUTAGE_RECOVERY_BOUND_S)
    record(
        chaos_table,
        fault,
        tally,
        in_flight=in_flight,
        back_at=back_at,
        outage_s=back_at - fault_at,
        answers=describe(probes),
    )
    assert_quick_503s(probes)
    assert_all_runs_correct(ledger, tally)
    assert_no_crash(lce)


def describe(probes: list[Probe]) -> str:
    quick = sum(1 for p in probes if p.quick_503)
    final = sum(1 for p in probes if p.quick_final_answer)
    slowest = max((p.seconds for p in probes), default=0.0)
    return f"{quick}/{len(probes)} quick 503+Retry-After, {final} final results, slowest {slowest:.2f} s"


def assert_quick_503s(probes: list[Probe]) -> None:
    """Every request answered at once: a 503 to retry, or the final result of a run that was over."""
    assert probes, "no request was made during the outage"
    bad = [p for p in probes if not (p.quick_503 or p.quick_final_answer)]
    assert not bad, f"{len(bad)} of {len(probes)} requests during the outage were not a quick 503: {bad[:5]}"


# --- the faults ----------------------------------------------------------------------------


def test_sigkill_executor_mid_run(deploy: Deploy, chaos_table: Record) -> None:
    lce = deploy(executors=2)
    ledger = Ledger(lce.api)
    sessions = ledger.new_sessions(2)
    for index in range(6):
        ledger.submit(sessions[index % 2], sleep_s=SLEEP_S)
    # An executor runs one job at a time: two RUNNING with two executors means executor-1 holds one.
    ledger.wait_until(lambda led: led.count("RUNNING") >= 2, 60, "both executors running a program")
    in_flight = len(ledger.pending())

    victim = lce.service("executor-1")
    assert victim.process is not None
    victim.process.kill()
    victim.process.wait(10)
    killed_at = time.monotonic()

    tally = ledger.wait_all_terminal(EXECUTOR_LOSS_BOUND_S)
    recover_s = record(chaos_table, "SIGKILL executor mid-run", tally, in_flight=in_flight, back_at=killed_at)
    assert_all_runs_correct(ledger, tally)
    assert recover_s is not None and recover_s <= EXECUTOR_LOSS_BOUND_S
    assert_no_crash(lce, killed=("executor-1",))
    # The run executor-1 died with was taken up again: its lifecycle log shows a retry or a second start.
    retaken = [run_id for run_id in ledger.runs if _taken_up_again(ledger.events(run_id))]
    assert retaken, "no run shows a second attempt, yet executor-1 was killed while running one"
    # What an orchestrator does next: a replacement starts cleanly beside what the dead one left behind
    # (its sandbox work dir). It gets an id of its own, as a new container would: RQ refuses a worker
    # named like one whose registration has not expired yet (worker_ttl, 420 s).
    replacement = lce.replace(victim, LCE_EXECUTOR_ID="executor-1-replacement")
    assert replacement.process is not None and replacement.process.poll() is None


def _taken_up_again(events: list[dict[str, object]]) -> bool:
    types = [event["type"] for event in events]
    return "RETRIED" in types or types.count("RUNNING") >= 2


def test_redis_restarted_empty_while_runs_queued(deploy: Deploy, chaos_table: Record) -> None:
    lce = deploy(executors=1)
    ledger = Ledger(lce.api)
    busy, *sessions = ledger.new_sessions(5)
    # One long run keeps the only executor busy, so the next twenty wait in the queue.
    blocker = ledger.submit(busy, sleep_s=2 * SLEEP_S)
    ledger.wait_until(lambda led: led.runs[blocker.execution_id].status == "RUNNING", 60, "the blocker running")
    for index in range(20):
        ledger.submit(sessions[index % len(sessions)])
    ledger.refresh()
    in_flight = len(ledger.pending())
    assert ledger.count("QUEUED") >= 15, f"the runs were meant to be queued at the fault: {ledger.statuses()}"

    # The private redis-server keeps nothing on disk: stopped and started on its port, it comes back empty.
    fault_at = time.monotonic()
    lce.redis.stop()
    lce.redis.start()
    back_at = time.monotonic()

    tally = ledger.wait_all_terminal(REQUEUE_BOUND_S)
    record(
        chaos_table, "Redis restarted empty", tally, in_flight=in_flight, back_at=back_at, outage_s=back_at - fault_at
    )
    assert_all_runs_correct(ledger, tally)
    assert_no_crash(lce)


def test_postgres_restarted(deploy: Deploy, chaos_table: Record) -> None:
    lce = deploy(executors=2)
    ledger = Ledger(lce.api)
    sessions = ledger.new_sessions(3)
    probe_session = ledger.new_sessions(1)[0]
    known_run = ledger.submit(sessions[0])
    for index in range(2):
        ledger.submit(sessions[index], sleep_s=SLEEP_S)
    for index in range(4):
        ledger.submit(sessions[index % 3])
    ledger.wait_until(lambda led: led.count("RUNNING") >= 2, 60, "both executors running a program")
    in_flight = len(ledger.pending())

    fault_at = time.monotonic()
    lce.postgres.stop()
    # Down for longer than the sleepers have left: their results must wait in the executors.
    requests: list[tuple[str, str, object]] = [
        ("POST", "/code-sessions", {"language_id": ledger.python_id()}),
        ("GET", f"/code-sessions/{probe_session}", None),
        ("POST", f"/code-sessions/{probe_session}/run", None),
        ("GET", f"/executions/{known_run.execution_id}", None),
    ]
    probes = probe_outage(lce.api, requests, OUTAGE_S)
    lce.postgres.start()
    back_at = time.monotonic()

    # Accepted after the outage by the same processes: nothing was restarted but the database.
    for index in range(4):
        ledger.submit(sessions[index % 3], accept_within_s=10)
    judge_outage(
        lce,
        ledger,
        chaos_table,
        "PostgreSQL restarted",
        probes,
        in_flight=in_flight,
        fault_at=fault_at,
        back_at=back_at,
    )


def test_execution_service_restarted(deploy: Deploy, chaos_table: Record) -> None:
    lce = deploy(executors=2)
    ledger = Ledger(lce.api)
    sessions = ledger.new_sessions(3)
    known_run = ledger.submit(sessions[0])
    for index in range(2):
        ledger.submit(sessions[index], sleep_s=SLEEP_S)
    for index in range(4):
        ledger.submit(sessions[index % 3])
    ledger.wait_until(lambda led: led.count("RUNNING") >= 2, 60, "both executors running a program")
    in_flight = len(ledger.pending())

    service = lce.service("execution_service")
    fault_at = time.monotonic()
    lce.stack.stop_service(service)
    # Down for longer than the sleepers have left: their results must wait in the executors.
    requests: list[tuple[str, str, object]] = [
        ("POST", f"/code-sessions/{sessions[2]}/run", None),
        ("GET", f"/executions/{known_run.execution_id}", None),
    ]
    probes = probe_outage(lce.api, requests, OUTAGE_S)
    lce.start_service(service)
    back_at = time.monotonic()

    for index in range(3):
        ledger.submit(sessions[index], accept_within_s=10)
    judge_outage(
        lce,
        ledger,
        chaos_table,
        "execution_service restarted",
        probes,
        in_flight=in_flight,
        fault_at=fault_at,
        back_at=back_at,
    )


def test_burst_500_runs_100_sessions(deploy: Deploy, chaos_table: Record) -> None:
    lce = deploy(executors=2)
    ledger = Ledger(lce.api)
    sessions = ledger.new_sessions(100)
    started = time.monotonic()
    # Several clients at once, each keeping to its own sessions (a session's save-then-run pairs
    # must not interleave); 5 runs per session stays under the limit of 10 per minute.
    with ThreadPoolExecutor(max_workers=8) as clients:
        list(clients.map(lambda session_id: [ledger.submit(session_id) for _ in range(5)], sessions))
    submitted_s = time.monotonic() - started

    tally = ledger.wait_all_terminal(BURST_BOUND_S)
    total_s = record(chaos_table, "burst 500 runs / 100 sessions", tally, in_flight=len(ledger.runs), back_at=started)
    print(f"BURST 500 runs accepted in {submitted_s:.1f} s; all terminal {total_s} s after the first")
    assert tally.total == 500
    assert_all_runs_correct(ledger, tally)
    assert total_s is not None and total_s <= BURST_BOUND_S
    assert_no_crash(lce)
