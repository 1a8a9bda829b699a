"""The rules of executions: what may be run, when a session is throttled, how a run moves through its states.

    QUEUED ──> RUNNING ──> COMPLETED | FAILED | TIMEOUT
       └──────────────────────^
A terminal state is final. A repeated or late report changes nothing; the database's
conditional updates (repository.py) are what make that hold between concurrent replicas.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.exceptions

from common import logs
from common.errors import InvalidArgument, NotFound, RateLimited, SessionClosed
from common.job import ExecutionJob
from execution_service.job_queue import JobQueue
from execution_service.models import TERMINAL, Execution, FinishedRun, RunOutcome, Status
from execution_service.rate_limit import SlidingWindowLimiter
from execution_service.repository import Repository
from execution_service.session_client import SessionClient, SessionSnapshot

log = logging.getLogger(__name__)

TIME_LIMIT_MS = (100, 60_000)
MEMORY_LIMIT_MB = (32, 2048)
LIST_LIMIT = (1, 100)
DEFAULT_LIST_LIMIT = 10

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


@dataclass(frozen=True)
class Limits:
    time_limit_ms: int
    memory_limit_mb: int


def parse_id(value: str, field: str) -> str:
    """The canonical form of a UUID, or InvalidArgument naming the field."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{field} must be a UUID, got {value!r}") from None


def _check_range(field: str, value: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if not low <= value <= high:
        raise InvalidArgument(f"{field} must be between {low} and {high}, got {value}")


def check_limits(time_limit_ms: int | None, memory_limit_mb: int | None) -> None:
    """Refuses a requested limit outside its range; an absent one is left to the language's default."""
    if time_limit_ms is not None:
        _check_range("time_limit_ms", time_limit_ms, TIME_LIMIT_MS)
    if memory_limit_mb is not None:
        _check_range("memory_limit_mb", memory_limit_mb, MEMORY_LIMIT_MB)


def resolve_limits(time_limit_ms: int | None, memory_limit_mb: int | None, session: SessionSnapshot) -> Limits:
    """The limits a run gets: those requested (already checked), else its language's defaults."""
    return Limits(
        time_limit_ms=session.default_time_limit_ms if time_limit_ms is None else time_limit_ms,
        memory_limit_mb=session.default_memory_mb if memory_limit_mb is None else memory_limit_mb,
    )


def resolve_list_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIST_LIMIT
    _check_range("limit", limit, LIST_LIMIT)
    return limit


def failure_cooldown_remaining_s(
    recent: Sequence[FinishedRun], streak_limit: int, cooldown_s: int, now: datetime
) -> int:
    """Seconds a session must still wait after `streak_limit` consecutive FAILED/TIMEOUT runs; 0 if none.

    `recent` is the session's last finished runs, newest first. A COMPLETED run among the last
    `streak_limit` breaks the streak; the cooldown counts from the newest failure's finish.
    """
    streak = recent[:streak_limit]
    if len(streak) < streak_limit or any(run.status == Status.COMPLETED for run in streak):
        return 0
    remaining = (streak[0].finished_at + timedelta(seconds=cooldown_s) - now).total_seconds()
    return math.ceil(remaining) if remaining > 0 else 0


def utc_now() -> datetime:
    return datetime.now(UTC)


class Executions:
    def __init__(
        self,
        repository: Repository,
        sessions: SessionClient,
        limiter: SlidingWindowLimiter,
        queue: JobQueue,
        *,
        failure_streak_limit: int,
        failure_cooldown_s: int,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.repository = repository
        self.sessions = sessions
        self.limiter = limiter
        self.queue = queue
        self.failure_streak_limit = failure_streak_limit
        self.failure_cooldown_s = failure_cooldown_s
        self.clock = clock

    def create(
        self, session_id: str, time_limit_ms: int | None, memory_limit_mb: int | None, *, timeout: float
    ) -> Execution:
        """Snapshots the session's code and queues a run of it. Once this returns, the run is never lost:
        the row is written before the job, and a job that could not be written is left to the reconciler."""
        session_id = parse_id(session_id, "session_id")
        check_limits(time_limit_ms, memory_limit_mb)
        session = self.sessions.get_session(session_id, timeout)
        if not session.active:
            raise SessionClosed(f"session {session_id} is closed")
        limits = resolve_limits(time_limit_ms, memory_limit_mb, session)
        self._refuse_during_failure_cooldown(session_id)

        execution_id = str(uuid.uuid4())
        logs.execution_id.set(execution_id)
        self._admit(session_id, execution_id)
        execution = Execution(
            id=execution_id,
            session_id=session_id,
            status=Status.QUEUED,
            language=session.language,
            source_code=session.source_code,
            time_limit_ms=limits.time_limit_ms,
            memory_limit_mb=limits.memory_limit_mb,
            created_at=self.clock(),
            started_at=None,
            finished_at=None,
            attempt=0,
            executor_id="",
            outcome=None,
        )
        self.repository.insert_queued(execution)
        log.info("execution queued", extra={"session_id": session_id, "language": session.language})
        self._enqueue(execution)
        return execution

    def get(self, execution_id: str) -> Execution:
        execution_id = parse_id(execution_id, "execution_id")
        execution = self.repository.get(execution_id)
        if execution is None:
            raise NotFound(f"execution {execution_id} not found")
        return execution

    def list_for_session(self, session_id: str, limit: int | None, *, timeout: float) -> list[Execution]:
        session_id = parse_id(session_id, "session_id")
        count = resolve_list_limit(limit)
        # Asked so that an unknown session is told apart from one that has not run anything yet.
        self.sessions.get_session(session_id, timeout)
        return self.repository.list_for_session(session_id, count)

    def report_started(self, execution_id: str, executor_id: str, attempt: int) -> bool:
        """Records that an executor took the run; False when the run is already over and must not run."""
        execution_id = parse_id(execution_id, "execution_id")
        now = self.clock()
        if self.repository.start(execution_id, executor_id, attempt, now):
            log.info("execution running", extra={"executor_id": executor_id, "attempt": attempt})
            return True
        if self.repository.restart(execution_id, executor_id, attempt, now):
            log.info("execution delivered again", extra={"executor_id": executor_id, "attempt": attempt})
            return True
        return self.get(execution_id).status not in TERMINAL

    def report_result(self, execution_id: str, executor_id: str, outcome: RunOutcome) -> Status:
        """Records a terminal result once; later reports change nothing. Returns the status after the report."""
        execution_id = parse_id(execution_id, "execution_id")
        if outcome.status not in TERMINAL:
            raise InvalidArgument(f"a result's status must be COMPLETED, FAILED or TIMEOUT, got {outcome.status}")
        if self.repository.finish(execution_id, executor_id, outcome, self.clock()):
            log.info(
                "execution finished",
                extra={"status": outcome.status.value, "reason": outcome.reason, "executor_id": executor_id},
            )
            return outcome.status
        return self.get(execution_id).status

    def _refuse_during_failure_cooldown(self, session_id: str) -> None:
        recent = self.repository.last_finished(session_id, self.failure_streak_limit)
        wait_s = failure_cooldown_remaining_s(recent, self.failure_streak_limit, self.failure_cooldown_s, self.clock())
        if wait_s > 0:
            raise RateLimited(
                f"{self.failure_streak_limit} consecutive failed runs; runs resume after a cooldown",
                retry_after_s=wait_s,
            )

    def _admit(self, session_id: str, execution_id: str) -> None:
        try:
            self.limiter.admit(session_id, execution_id)
        except _REDIS_DOWN as err:
            # The window lives in Redis; while Redis is down the run is still accepted (the
            # reconciler queues it later) rather than refusing every run of every session.
            log.warning("rate limit not checked: redis unavailable", extra={"error": repr(err)})

    def _enqueue(self, execution: Execution) -> None:
        try:
            self.queue.enqueue(job_for(execution))
        except _REDIS_DOWN as err:
            log.warning("job not enqueued: redis unavailable; the reconciler will", extra={"error": repr(err)})


def job_for(execution: Execution) -> ExecutionJob:
    return ExecutionJob(
        execution_id=execution.id,
        language=execution.language,
        source_code=execution.source_code,
        time_limit_ms=execution.time_limit_ms,
        memory_limit_mb=execution.memory_limit_mb,
    )
