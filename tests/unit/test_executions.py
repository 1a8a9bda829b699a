"""The rules of executions: limits, list bounds, the failure streak, monotonic transitions, attempts and their
retries, leases, idempotency keys, the schema."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import text

from common import job
from common.config import DEFAULT_COMPILE_TIME_LIMIT_MS
from common.db import make_engine
from common.errors import InvalidArgument, NotFound
from common.job import Encoding, Lane, Suite
from common.outcome import Reason, RunOutcome, Stage, Status
from execution_service.api_keys import ApiKey
from execution_service.attempts import RetryPolicy, is_infrastructure_failure
from execution_service.executions import (
    Executions,
    check_idempotency_key,
    check_limits,
    failure_cooldown_remaining_s,
    idempotency_key_expired,
    resolve_lane,
    resolve_limits,
    resolve_list_limit,
)
from execution_service.job_queue import JobQueue
from execution_service.migrations import HISTORY
from execution_service.models import Execution, FinishedRun
from execution_service.rate_limit import SlidingWindowLimiter
from execution_service.repository import Repository
from execution_service.session_client import SessionClient, SessionSnapshot

NOW = datetime(2026, 1, 21, 10, 0, 0, tzinfo=UTC)


def snapshot(default_time_limit_ms: int = 5000, default_memory_mb: int = 256) -> SessionSnapshot:
    return SessionSnapshot(
        id=str(uuid.uuid4()),
        active=True,
        language="python",
        source_code="print(1)\n",
        files=(),
        default_time_limit_ms=default_time_limit_ms,
        default_memory_mb=default_memory_mb,
    )


class TestLimits:
    @pytest.mark.parametrize("value", [100, 5000, 60000])
    def test_time_limit_in_range(self, value: int) -> None:
        check_limits(value, None)

    @pytest.mark.parametrize("value", [99, 60001, 0, -1])
    def test_time_limit_out_of_range_names_field_and_range(self, value: int) -> None:
        with pytest.raises(InvalidArgument, match=r"time_limit_ms must be between 100 and 60000"):
            check_limits(value, None)

    @pytest.mark.parametrize("value", [32, 256, 2048])
    def test_memory_limit_in_range(self, value: int) -> None:
        check_limits(None, value)

    @pytest.mark.parametrize("value", [31, 2049, 0])
    def test_memory_limit_out_of_range_names_field_and_range(self, value: int) -> None:
        with pytest.raises(InvalidArgument, match=r"memory_limit_mb must be between 32 and 2048"):
            check_limits(None, value)

    def test_absent_limits_take_the_languages_defaults(self) -> None:
        limits = resolve_limits(None, None, snapshot(default_time_limit_ms=3000, default_memory_mb=512))
        assert (limits.time_limit_ms, limits.memory_limit_mb) == (3000, 512)

    def test_requested_limits_win_over_defaults(self) -> None:
        limits = resolve_limits(100, 2048, snapshot())
        assert (limits.time_limit_ms, limits.memory_limit_mb) == (100, 2048)


class TestListLimit:
    def test_default_is_ten(self) -> None:
        assert resolve_list_limit(None) == 10

    @pytest.mark.parametrize("value", [1, 100])
    def test_bounds_accepted(self, value: int) -> None:
        assert resolve_list_limit(value) == value

    @pytest.mark.parametrize("value", [0, 101, -5])
    def test_out_of_range_refused(self, value: int) -> None:
        with pytest.raises(InvalidArgument, match=r"limit must be between 1 and 100"):
            resolve_list_limit(value)


def finished(*statuses: Status, newest_at: datetime = NOW) -> list[FinishedRun]:
    """Runs newest first, one second apart."""
    return [FinishedRun(status, newest_at - timedelta(seconds=i)) for i, status in enumerate(statuses)]


class TestFailureStreak:
    def test_fewer_failures_than_the_limit_never_block(self) -> None:
        assert failure_cooldown_remaining_s(finished(*[Status.FAILED] * 4), 5, 60, NOW) == 0

    def test_five_failures_block_for_the_cooldown_from_the_last_one(self) -> None:
        recent = finished(*[Status.FAILED] * 5, newest_at=NOW - timedelta(seconds=10))
        assert failure_cooldown_remaining_s(recent, 5, 60, NOW) == 50

    def test_timeouts_count_as_failures(self) -> None:
        recent = finished(Status.TIMEOUT, Status.FAILED, Status.TIMEOUT, Status.FAILED, Status.TIMEOUT)
        assert failure_cooldown_remaining_s(recent, 5, 60, NOW) == 60

    def test_a_completed_run_resets_the_streak(self) -> None:
        recent = finished(Status.FAILED, Status.FAILED, Status.FAILED, Status.FAILED, Status.COMPLETED)
        assert failure_cooldown_remaining_s(recent, 5, 60, NOW) == 0

    def test_the_block_ends_after_the_cooldown(self) -> None:
        recent = finished(*[Status.FAILED] * 5, newest_at=NOW - timedelta(seconds=60))
        assert failure_cooldown_remaining_s(recent, 5, 60, NOW) == 0

    def test_partial_seconds_round_up(self) -> None:
        recent = finished(*[Status.FAILED] * 5, newest_at=NOW - timedelta(seconds=59, milliseconds=500))
        assert failure_cooldown_remaining_s(recent, 5, 60, NOW) == 1


def outcome(status: Status, stdout: str = "out") -> RunOutcome:
    return RunOutcome(
        status=status,
        reason=Reason.NONE if status == Status.COMPLETED else Reason.RUNTIME_ERROR,
        stdout=stdout,
        stderr="",
        stdout_truncated=False,
        stderr_truncated=False,
        exit_code=0 if status == Status.COMPLETED else 1,
        execution_time_ms=12,
        memory_kb=2048,
        stages=(Stage("run", 10, 12, 2048, 0, ""),),
        sandbox="none",
    )


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["postgresql", "sqlite"])
def executions(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, clock: Clock) -> Iterator[Executions]:
    """Executions over a real database (PostgreSQL and the SQLite default) and a real Redis."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/x.db"
    engine = make_engine(url)
    HISTORY.upgrade(engine)
    client = redis.Redis.from_url(redis_url)
    # Transitions never ask SessionService: nothing listens here, and nothing must need to.
    sessions = SessionClient("127.0.0.1:9")
    yield Executions(
        Repository(engine),
        sessions,
        SlidingWindowLimiter(client, 10),
        JobQueue(client, "unit-test"),
        failure_streak_limit=5,
        failure_cooldown_s=60,
        retries=RetryPolicy((2.0, 4.0, 8.0)),
        lease_s=10,
        idempotency_window_s=24 * 3600,
        clock=clock,
    )
    sessions.close()
    client.close()
    engine.dispose()


def queued(executions: Executions, key: str | None = None, session_id: str | None = None) -> str:
    execution = Execution(
        id=str(uuid.uuid4()),
        session_id=session_id or str(uuid.uuid4()),
        status=Status.QUEUED,
        language="python",
        source_code="print(1)\n",
        time_limit_ms=1000,
        memory_limit_mb=128,
        created_at=executions.clock(),
        started_at=None,
        finished_at=None,
        attempt=1,
        executor_id="",
        outcome=None,
        idempotency_key=key,
    )
    assert executions.repository.insert_queued(execution, not_before=execution.created_at)
    return execution.id


def due(executions: Executions, now: datetime, execution_id: str) -> list[tuple[str, int]]:
    """The reconciler's view of one row (the PostgreSQL database is shared by the test session)."""
    refs = executions.repository.due_queued(now, None, 10_000)
    return [(ref.execution_id, ref.attempt) for ref in refs if ref.execution_id == execution_id]


def expired(executions: Executions, now: datetime, execution_id: str) -> list[tuple[str, int, str]]:
    refs = executions.repository.expired_leases(now, 10_000)
    return [(ref.execution_id, ref.attempt, ref.executor_id) for ref in refs if ref.execution_id == execution_id]


def event_types(executions: Executions, execution_id: str) -> list[tuple[str, int | None]]:
    return [(event.type, event.attempt) for event in executions.events(execution_id)]


class TestRepositoryTransitions:
    """The repository says whether it made a transition: the callers' logs and fallbacks rely on it."""

    def test_start_is_made_once(self, executions: Executions, clock: Clock) -> None:
        execution_id = queued(executions)
        lease = clock() + timedelta(seconds=10)
        assert executions.repository.start(execution_id, "ex-1", 1, clock(), lease) is True
        assert executions.repository.start(execution_id, "ex-1", 1, clock(), lease) is False

    def test_finish_is_made_once_and_answers_the_finished_execution(self, executions: Executions, clock: Clock) -> None:
        execution_id = queued(executions)
        done = outcome(Status.COMPLETED)
        finished = executions.repository.finish(execution_id, "ex-1", 1, done, clock())
        # The row as written, announced with the change: the same as a read of it afterwards.
        assert finished is not None and finished.outcome == done
        assert finished == executions.get(execution_id)
        assert executions.repository.finish(execution_id, "ex-1", 1, done, clock()) is None

    def test_a_retry_ends_its_attempt_once(self, executions: Executions, clock: Clock) -> None:
        execution_id = queued(executions)
        retry_at = clock() + timedelta(seconds=2)
        assert executions.repository.retry(execution_id, 1, "ex-1", "lost", clock(), retry_at) is True
        assert executions.repository.retry(execution_id, 1, "ex-1", "lost", clock(), retry_at) is False


class TestTransitions:
    def test_started_moves_queued_to_running(self, executions: Executions) -> None:
        execution_id = queued(executions)
        assert executions.report_started(execution_id, "ex-1", 1) is True
        after = executions.get(execution_id)
        assert after.status == Status.RUNNING
        assert (after.attempt, after.executor_id) == (1, "ex-1")
        assert after.started_at is not None and after.started_at.tzinfo is not None

    def test_a_repeated_start_of_the_holder_is_answered_again(self, executions: Executions) -> None:
        execution_id = queued(executions)
        executions.report_started(execution_id, "ex-1", 1)
        assert executions.report_started(execution_id, "ex-1", 1) is True
        assert event_types(executions, execution_id) == [("QUEUED", None), ("RUNNING", 1)]

    def test_the_same_attempt_is_never_run_by_two_executors(self, executions: Executions) -> None:
        execution_id = queued(executions)
        executions.report_started(execution_id, "ex-1", 1)
        assert executions.report_started(execution_id, "ex-2", 1) is False
        assert executions.get(execution_id).executor_id == "ex-1"

    def test_an_attempt_other_than_the_current_one_must_not_run(self, executions: Executions) -> None:
        execution_id = queued(executions)
        assert executions.report_started(execution_id, "ex-2", 2) is False
        assert executions.report_started(execution_id, "ex-0", 0) is False
        assert executions.get(execution_id).status == Status.QUEUED

    def test_result_is_final(self, executions: Executions) -> None:
        execution_id = queued(executions)
        executions.report_started(execution_id, "ex-1", 1)
        assert executions.report_result(execution_id, "ex-1", 1, outcome(Status.COMPLETED, "first")) == Status.COMPLETED
        first = executions.get(execution_id)

        assert executions.report_result(execution_id, "ex-2", 1, outcome(Status.FAILED, "second")) == Status.COMPLETED
        assert executions.report_started(execution_id, "ex-3", 1) is False
        assert executions.get(execution_id) == first
        assert first.outcome is not None and first.outcome.stdout == "first"

    def test_result_may_arrive_without_a_start(self, executions: Executions) -> None:
        execution_id = queued(executions)
        assert executions.report_result(execution_id, "ex-1", 1, outcome(Status.TIMEOUT)) == Status.TIMEOUT
        after = executions.get(execution_id)
        assert after.status == Status.TIMEOUT and after.finished_at is not None

    def test_outcome_round_trips(self, executions: Executions) -> None:
        execution_id = queued(executions)
        sent = outcome(Status.FAILED)
        executions.report_result(execution_id, "ex-1", 1, sent)
        assert executions.get(execution_id).outcome == sent

    @pytest.mark.parametrize("status", [Status.QUEUED, Status.RUNNING])
    def test_a_non_terminal_result_is_refused(self, executions: Executions, status: Status) -> None:
        execution_id = queued(executions)
        with pytest.raises(InvalidArgument):
            executions.report_result(execution_id, "ex-1", 1, outcome(status))
        assert executions.get(execution_id).status == Status.QUEUED

    def test_reports_on_unknown_executions_are_not_found(self, executions: Executions) -> None:
        with pytest.raises(NotFound):
            executions.report_started(str(uuid.uuid4()), "ex-1", 1)
        with pytest.raises(NotFound):
            executions.report_result(str(uuid.uuid4()), "ex-1", 1, outcome(Status.COMPLETED))
        with pytest.raises(NotFound):
            executions.renew_lease(str(uuid.uuid4()), "ex-1", 1)


def internal_error() -> RunOutcome:
    return dataclasses.replace(outcome(Status.FAILED), reason=Reason.INTERNAL_ERROR, stderr="sandbox set-up failed")


class TestRetries:
    def test_a_programs_own_failure_is_a_result_never_retried(self, executions: Executions) -> None:
        for status in (Status.FAILED, Status.TIMEOUT):
            execution_id = queued(executions)
            executions.report_started(execution_id, "ex-1", 1)
            assert executions.report_result(execution_id, "ex-1", 1, outcome(status)) == status
            assert event_types(executions, execution_id)[-1] == (status.value, 1)

    def test_an_infrastructure_failure_queues_the_next_attempt_after_its_backoff(
        self, executions: Executions, clock: Clock
    ) -> None:
        execution_id = queued(executions)
        executions.report_started(execution_id, "ex-1", 1)
        assert executions.report_result(execution_id, "ex-1", 1, internal_error()) == Status.QUEUED
        after = executions.get(execution_id)
        assert (after.status, after.attempt, after.executor_id) == (Status.QUEUED, 2, "")
        retried = executions.events(execution_id)[-1]
        assert (retried.type, retried.attempt, retried.executor_id) == ("RETRIED", 1, "ex-1")
        assert retried.reason == "internal_error: sandbox set-up failed"
        # Not due before its backoff of 2 s: the reconciler enqueues it once it is.
        assert due(executions, clock.now + timedelta(seconds=1.9), execution_id) == []
        assert due(executions, clock.now + timedelta(seconds=2), execution_id) == [(execution_id, 2)]

    def test_after_three_retries_the_run_ends_failed_with_its_history(self, executions: Executions) -> None:
        execution_id = queued(executions)
        for attempt in (1, 2, 3, 4):
            assert executions.report_started(execution_id, f"ex-{attempt}", attempt) is True
            executions.end_attempt(execution_id, attempt, f"ex-{attempt}", "lease_expired")
        final = executions.get(execution_id)
        assert final.status == Status.FAILED and final.outcome is not None
        assert final.outcome.reason == "internal_error"
        assert "attempt 4 failed (lease_expired)" in final.outcome.stderr
        assert event_types(executions, execution_id) == [
            ("QUEUED", None),
            *[(kind, attempt) for attempt in (1, 2, 3) for kind in ("RUNNING", "RETRIED")],
            ("RUNNING", 4),
            ("FAILED", 4),
        ]

    def test_a_failure_of_an_attempt_no_longer_current_changes_nothing(self, executions: Executions) -> None:
        execution_id = queued(executions)
        executions.report_started(execution_id, "ex-1", 1)
        executions.end_attempt(execution_id, 1, "ex-1", "lease_expired")
        executions.end_attempt(execution_id, 1, "ex-1", "lease_expired")  # a second replica, late
        assert executions.get(execution_id).attempt == 2
        assert [kind for kind, _ in event_types(executions, execution_id)].count("RETRIED") == 1

    def test_a_stale_attempts_result_is_taken_while_no_newer_one_runs(self, executions: Executions) -> None:
        execution_id = queued(executions)
        executions.report_started(execution_id, "ex-1", 1)
        executions.end_attempt(execution_id, 1, "ex-1", "lease_expired")
        # ex-1 was alive after all (cut off from the service): its true result ends the run.
        assert executions.report_result(execution_id, "ex-1", 1, outcome(Status.COMPLETED)) == Status.COMPLETED
        assert executions.report_started(execution_id, "ex-2", 2) is False

    def test_a_stale_attempts_result_is_ignored_while_a_newer_one_runs(self, executions: Executions) -> None:
        execution_id = queued(executions)
        executions.report_started(execution_id, "ex-1", 1)
        executions.end_attempt(execution_id, 1, "ex-1", "lease_expired")
        executions.report_started(execution_id, "ex-2", 2)
        assert executions.report_result(execution_id, "ex-1", 1, outcome(Status.FAILED)) == Status.RUNNING
        assert executions.report_result(execution_id, "ex-2", 2, outcome(Status.COMPLETED)) == Status.COMPLETED

    def test_a_failed_internal_error_run_counts_in_the_failure_streak(self, executions: Executions) -> None:
        session_id = str(uuid.uuid4())
        for _ in range(5):
            execution_id = queued(executions, session_id=session_id)
            for attempt in (1, 2, 3, 4):
                executions.end_attempt(execution_id, attempt, "ex", "job_ended_without_start")
        recent = executions.repository.last_finished(session_id, 5)
        assert [run.status for run in recent] == [Status.FAILED] * 5

    def test_retries_and_ends_are_counted_once_by_kind(self, executions: Executions) -> None:
        def counted() -> list[float]:
            finished = "lce_executions_finished_total"
            samples = [
                ("lce_execution_retries_total", {"reason": "internal_error"}),
                ("lce_execution_retries_total", {"reason": "lease_expired"}),
                (finished, {"language": "python", "status": "FAILED", "reason": "internal_error"}),
                (finished, {"language": "python", "status": "COMPLETED", "reason": ""}),
            ]
            return [REGISTRY.get_sample_value(name, labels) or 0.0 for name, labels in samples]

        before = counted()
        execution_id = queued(executions)
        executions.report_started(execution_id, "ex-1", 1)
        executions.report_result(execution_id, "ex-1", 1, internal_error())  # its detail is no label
        for attempt in (2, 3, 4):
            executions.report_started(execution_id, f"ex-{attempt}", attempt)
            assert executions.end_attempt(execution_id, attempt, f"ex-{attempt}", "lease_expired") is True
        assert executions.end_attempt(execution_id, 4, "ex-4", "lease_expired") is False  # a late replica
        completed = queued(executions)
        executions.report_started(completed, "ex-1", 1)
        executions.report_result(completed, "ex-1", 1, outcome(Status.COMPLETED))
        executions.report_result(completed, "ex-1", 1, outcome(Status.COMPLETED))  # repeated: nothing new
        after = counted()
        assert [b - a for a, b in zip(before, after, strict=True)] == [1, 2, 1, 1]


def test_due_rows_are_paged_through_in_order(executions: Executions, clock: Clock) -> None:
    """The reconciler's cursor (not_before, id) pages on PostgreSQL and SQLite alike."""
    ids = {queued(executions) for _ in range(5)}
    later = clock.now + timedelta(seconds=1)
    seen: list[str] = []
    after = None
    while page := executions.repository.due_queued(later, after, 2):
        seen += [ref.execution_id for ref in page]
        after = page[-1]
    assert ids <= set(seen) and len(seen) == len(set(seen))


class TestLease:
    def test_renewal_extends_the_lease_of_the_holder_only(self, executions: Executions, clock: Clock) -> None:
        execution_id = queued(executions)
        executions.report_started(execution_id, "ex-1", 1)
        clock.advance(9)
        assert executions.renew_lease(execution_id, "ex-1", 1) is True
        assert executions.renew_lease(execution_id, "ex-2", 1) is False
        assert executions.renew_lease(execution_id, "ex-1", 2) is False
        # Renewed at +9 s for 10 s: not expired at +18 s, expired after +19 s.
        assert expired(executions, clock.now + timedelta(seconds=9), execution_id) == []
        assert expired(executions, clock.now + timedelta(seconds=10.1), execution_id) == [(execution_id, 1, "ex-1")]

    def test_a_lost_lease_cannot_be_renewed(self, executions: Executions) -> None:
        execution_id = queued(executions)
        executions.report_started(execution_id, "ex-1", 1)
        executions.end_attempt(execution_id, 1, "ex-1", "lease_expired")
        assert executions.renew_lease(execution_id, "ex-1", 1) is False

    def test_a_finished_run_holds_no_lease(self, executions: Executions, clock: Clock) -> None:
        execution_id = queued(executions)
        executions.report_started(execution_id, "ex-1", 1)
        executions.report_result(execution_id, "ex-1", 1, outcome(Status.COMPLETED))
        assert expired(executions, clock.now + timedelta(hours=1), execution_id) == []
        assert executions.renew_lease(execution_id, "ex-1", 1) is False


class TestRetryPolicy:
    @pytest.mark.parametrize(("attempt", "backoff"), [(2, 2.0), (3, 4.0), (4, 8.0), (5, None), (1, None)])
    def test_three_retries_two_four_eight(self, attempt: int, backoff: float | None) -> None:
        policy = RetryPolicy((2.0, 4.0, 8.0))
        assert policy.backoff_before(attempt) == backoff

    def test_no_retries(self) -> None:
        assert RetryPolicy(()).backoff_before(2) is None

    @pytest.mark.parametrize(
        ("reason", "retried"),
        [
            ("internal_error", True),
            ("runtime_error", False),
            ("compile_error", False),
            ("memory_limit_exceeded", False),
        ],
    )
    def test_only_the_machinerys_failure_is_retried(self, reason: str, retried: bool) -> None:
        assert is_infrastructure_failure(dataclasses.replace(outcome(Status.FAILED), reason=Reason(reason))) is retried


class TestIdempotencyKey:
    @pytest.mark.parametrize("key", ["a", "x" * 255, "order-42/retry#1", "!~"])
    def test_visible_ascii_up_to_255_is_accepted(self, key: str) -> None:
        check_idempotency_key(key)

    @pytest.mark.parametrize("key", ["", "x" * 256, "with space", "tab\t", "é", "new\nline", "\x7f"])
    def test_anything_else_is_refused(self, key: str) -> None:
        with pytest.raises(InvalidArgument, match="Idempotency-Key"):
            check_idempotency_key(key)

    @pytest.mark.parametrize(("age_s", "expired"), [(0, False), (86399, False), (86400, True), (90000, True)])
    def test_a_key_answers_for_24_hours(self, age_s: int, expired: bool) -> None:
        assert idempotency_key_expired(NOW - timedelta(seconds=age_s), NOW, timedelta(hours=24)) is expired

    def test_a_key_is_unique_per_session_only(self, executions: Executions) -> None:
        session_id = str(uuid.uuid4())
        first = queued(executions, key="k", session_id=session_id)
        queued(executions, key="k")  # another session
        duplicate = Execution(**{**dataclasses.asdict(executions.get(first)), "id": str(uuid.uuid4())})
        assert executions.repository.insert_queued(duplicate, not_before=NOW) is False
        found = executions.repository.find_by_key(session_id, "k")
        assert found is not None and found.id == first

    def test_an_expired_key_is_released_for_a_new_run(self, executions: Executions, clock: Clock) -> None:
        session_id = str(uuid.uuid4())
        first = queued(executions, key="k", session_id=session_id)
        clock.advance(24 * 3600)
        assert executions._earlier_execution(session_id, "k", "") is None
        second = queued(executions, key="k", session_id=session_id)
        assert second != first
        assert executions.get(first).idempotency_key is None


def test_a_row_written_before_a_column_was_added_reads_with_today_s_defaults(executions: Executions) -> None:
    """The first migration adds such columns to an older database as NULL (tests/unit/test_migrations.py)."""
    engine = executions.repository.engine
    older = executions.get(queued(executions))
    with engine.begin() as conn:  # a row as a release before these columns wrote it
        conn.execute(text("UPDATE executions SET encoding = NULL, compile_time_limit_ms = NULL"))
    assert executions.get(older.id).encoding == Encoding.UTF8
    assert executions.get(older.id).compile_time_limit_ms == DEFAULT_COMPILE_TIME_LIMIT_MS


def _key(max_priority: Lane) -> ApiKey:
    return ApiKey("k", "acme", "", False, 10, 5, 10_000, 512, datetime.now(UTC), max_priority=max_priority)


def test_a_runs_lane_is_asked_or_by_its_kind_and_never_above_its_keys() -> None:
    suite = Suite(cases=(job.TestCase(name="", expected_output="x"),))
    assert resolve_lane(None, None, None) is Lane.INTERACTIVE
    assert resolve_lane(None, suite, None) is Lane.BATCH
    assert resolve_lane(Lane.INTERACTIVE, suite, None) is Lane.INTERACTIVE
    assert resolve_lane(Lane.BATCH, None, _key(Lane.INTERACTIVE)) is Lane.BATCH
    assert resolve_lane(None, None, _key(Lane.BATCH)) is Lane.BATCH  # a batch key's default is lowered
    with pytest.raises(InvalidArgument, match="runs are batch"):
        resolve_lane(Lane.INTERACTIVE, None, _key(Lane.BATCH))  # asked outright: refused, not silently lowered
