"""The rules of executions: limits, list bounds, the failure streak, monotonic transitions, the schema."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy import Engine, inspect

from common.db import make_engine
from common.errors import InvalidArgument, NotFound
from execution_service.executions import (
    Executions,
    check_limits,
    failure_cooldown_remaining_s,
    parse_id,
    resolve_limits,
    resolve_list_limit,
)
from execution_service.job_queue import JobQueue
from execution_service.models import Execution, FinishedRun, RunOutcome, Stage, Status
from execution_service.rate_limit import SlidingWindowLimiter
from execution_service.repository import Repository, create_schema
from execution_service.session_client import SessionClient, SessionSnapshot
from tests.conftest import ADMIN_URL

NOW = datetime(2026, 1, 21, 10, 0, 0, tzinfo=UTC)


def snapshot(default_time_limit_ms: int = 5000, default_memory_mb: int = 256) -> SessionSnapshot:
    return SessionSnapshot(
        id=str(uuid.uuid4()),
        active=True,
        language="python",
        source_code="print(1)\n",
        default_time_limit_ms=default_time_limit_ms,
        default_memory_mb=default_memory_mb,
    )


class TestIds:
    def test_canonical_uuid_passes(self) -> None:
        value = str(uuid.uuid4())
        assert parse_id(value, "session_id") == value

    def test_upper_case_uuid_is_canonicalised(self) -> None:
        value = str(uuid.uuid4())
        assert parse_id(value.upper(), "session_id") == value

    @pytest.mark.parametrize("value", ["", "abc", "123", "not-a-uuid-at-all-not-a-uuid-at-all!"])
    def test_malformed_id_names_the_field(self, value: str) -> None:
        with pytest.raises(InvalidArgument, match="execution_id"):
            parse_id(value, "execution_id")


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
        reason="" if status == Status.COMPLETED else "runtime_error",
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


@pytest.fixture(params=["postgresql", "sqlite"])
def executions(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[Executions]:
    """Executions over a real database (PostgreSQL and the SQLite default) and a real Redis."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/x.db"
    engine = make_engine(url)
    create_schema(engine)
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
    )
    sessions.close()
    client.close()
    engine.dispose()


def queued(executions: Executions) -> str:
    execution = Execution(
        id=str(uuid.uuid4()),
        session_id=str(uuid.uuid4()),
        status=Status.QUEUED,
        language="python",
        source_code="print(1)\n",
        time_limit_ms=1000,
        memory_limit_mb=128,
        created_at=datetime.now(UTC),
        started_at=None,
        finished_at=None,
        attempt=0,
        executor_id="",
        outcome=None,
    )
    executions.repository.insert_queued(execution)
    return execution.id


class TestTransitions:
    def test_started_moves_queued_to_running(self, executions: Executions) -> None:
        execution_id = queued(executions)
        assert executions.report_started(execution_id, "ex-1", 1) is True
        after = executions.get(execution_id)
        assert after.status == Status.RUNNING
        assert (after.attempt, after.executor_id) == (1, "ex-1")
        assert after.started_at is not None and after.started_at.tzinfo is not None

    def test_redelivery_records_the_new_attempt(self, executions: Executions) -> None:
        execution_id = queued(executions)
        executions.report_started(execution_id, "ex-1", 1)
        assert executions.report_started(execution_id, "ex-2", 2) is True
        after = executions.get(execution_id)
        assert (after.status, after.attempt, after.executor_id) == (Status.RUNNING, 2, "ex-2")

    def test_a_late_report_of_an_older_attempt_does_not_move_back(self, executions: Executions) -> None:
        execution_id = queued(executions)
        executions.report_started(execution_id, "ex-2", 2)
        executions.report_started(execution_id, "ex-1", 1)
        assert executions.get(execution_id).attempt == 2

    def test_result_is_final(self, executions: Executions) -> None:
        execution_id = queued(executions)
        executions.report_started(execution_id, "ex-1", 1)
        assert executions.report_result(execution_id, "ex-1", outcome(Status.COMPLETED, "first")) == Status.COMPLETED
        first = executions.get(execution_id)

        assert executions.report_result(execution_id, "ex-2", outcome(Status.FAILED, "second")) == Status.COMPLETED
        assert executions.report_started(execution_id, "ex-3", 3) is False
        assert executions.get(execution_id) == first
        assert first.outcome is not None and first.outcome.stdout == "first"

    def test_result_may_arrive_without_a_start(self, executions: Executions) -> None:
        execution_id = queued(executions)
        assert executions.report_result(execution_id, "ex-1", outcome(Status.TIMEOUT)) == Status.TIMEOUT
        after = executions.get(execution_id)
        assert after.status == Status.TIMEOUT and after.finished_at is not None

    def test_outcome_round_trips(self, executions: Executions) -> None:
        execution_id = queued(executions)
        sent = outcome(Status.FAILED)
        executions.report_result(execution_id, "ex-1", sent)
        assert executions.get(execution_id).outcome == sent

    @pytest.mark.parametrize("status", [Status.QUEUED, Status.RUNNING])
    def test_a_non_terminal_result_is_refused(self, executions: Executions, status: Status) -> None:
        execution_id = queued(executions)
        with pytest.raises(InvalidArgument):
            executions.report_result(execution_id, "ex-1", outcome(status))
        assert executions.get(execution_id).status == Status.QUEUED

    def test_reports_on_unknown_executions_are_not_found(self, executions: Executions) -> None:
        with pytest.raises(NotFound):
            executions.report_started(str(uuid.uuid4()), "ex-1", 1)
        with pytest.raises(NotFound):
            executions.report_result(str(uuid.uuid4()), "ex-1", outcome(Status.COMPLETED))


def test_replicas_starting_together_create_the_schema_once() -> None:
    name = f"lce_schema_race_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{ADMIN_URL.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
        engines = [make_engine(url) for _ in range(6)]
        barrier = threading.Barrier(len(engines))

        def start(engine: Engine) -> None:
            barrier.wait()
            create_schema(engine)

        with ThreadPoolExecutor(len(engines)) as pool:
            list(pool.map(start, engines))
        assert {"executions", "execution_events"} <= set(inspect(engines[0]).get_table_names())
        for engine in engines:
            engine.dispose()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
