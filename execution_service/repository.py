"""All SQL of execution_service. Transitions are conditional UPDATEs, so concurrent reports stay monotonic."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import sqlalchemy.exc
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Engine,
    Insert,
    Integer,
    RowMapping,
    Select,
    String,
    Text,
    Update,
    bindparam,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)

from common.config import DEFAULT_COMPILE_MEMORY_LIMIT_MB, DEFAULT_COMPILE_TIME_LIMIT_MS
from common.db import reading, writing
from common.job import Encoding, Lane, Suite, files_from_json, files_to_json
from common.outcome import (
    TERMINAL,
    UNFINISHED,
    Reason,
    RunOutcome,
    Stage,
    Status,
    case_from_json,
    case_to_json,
    output_of,
    reason_from_text,
    reason_text,
)
from execution_service.models import (
    RETRIED,
    WEBHOOK,
    AttemptRef,
    Event,
    Execution,
    FinishedRun,
    UtcDateTime,
    execution_events,
    executions,
)

log = logging.getLogger(__name__)


# The reads on every request path, built once: SQLAlchemy then skips building the statement and
# its cache key on each call (measured: a third of the time of get() with a warm compile cache).
_BY_ID = select(executions).where(executions.c.id == bindparam("execution_id"))
# A listing leaves out what only one execution's own read needs: up to 100 rows of sources, stdin
# and outputs of a MiB each would make one request read and send hundreds of MiB.
_LISTED_COLUMNS = [
    c for c in executions.c if c.name not in ("source_code", "files", "stdin", "suite", "stdout", "stderr", "tests")
]
_NEWEST_OF_SESSION = (
    select(*_LISTED_COLUMNS)
    .where(executions.c.session_id == bindparam("session_id"))
    .order_by(executions.c.created_at.desc(), executions.c.id.desc())
    .limit(bindparam("count"))
)
_UNFINISHED_OF_KEY = (
    select(sqlalchemy.func.count())
    .select_from(executions)
    .where(executions.c.api_key_id == bindparam("api_key_id"))
    .where(executions.c.status.in_([status.value for status in UNFINISHED]))
)
_LAST_FINISHED = (
    select(executions.c.status, executions.c.finished_at, executions.c.program_failed)
    .where(executions.c.session_id == bindparam("session_id"))
    .where(executions.c.status.in_([status.value for status in TERMINAL]))
    .order_by(executions.c.finished_at.desc())
    .limit(bindparam("count"))
)


def _set(names: Iterable[str]) -> dict[str, BindParameter[Any]]:
    """Each column of `names` takes the parameter `set_<column>` (a bound name may not be a column's)."""
    return {name: bindparam(f"set_{name}", type_=executions.c[name].type) for name in names}


def _transition(*conditions: ColumnElement[bool], sets: Iterable[str]) -> Update:
    """A row's transition: made only from a status of the bound list `allowed` and under `conditions`."""
    return (
        update(executions)
        .where(executions.c.id == bindparam("execution_id"))
        .where(executions.c.status.in_(bindparam("allowed", expanding=True)))
        .where(*conditions)
        .values(_set(sets))
    )


_EVENT_COLUMNS = {"type": String(16), "at": UtcDateTime, "attempt": Integer, "executor_id": Text, "reason": Text}
_EVENT = insert(execution_events).values(
    execution_id=bindparam("event_execution_id", type_=execution_events.c.execution_id.type),
    **{name: bindparam(f"event_{name}", type_=type_) for name, type_ in _EVENT_COLUMNS.items()},
)


@dataclass(frozen=True)
class _Write:
    """A write of one row, and the same write with its lifecycle event in one statement: the event's
    INSERT reads the row the write RETURNs (one round trip, one commit, all or nothing). Either
    answers the written row's `returned` columns, no row when nothing was written."""

    write: Insert | Update
    returned: tuple[ColumnElement[Any], ...] = (executions.c.id,)

    @cached_property
    def alone(self) -> Insert | Update:
        return self.write.returning(*self.returned)

    @cached_property
    def with_event(self) -> Select[Any]:
        written = self.alone.cte("written")
        event = select(
            written.c.id, *(bindparam(f"event_{name}", type_=type_) for name, type_ in _EVENT_COLUMNS.items())
        )
        columns = ["execution_id", *_EVENT_COLUMNS]
        # PostgreSQL runs a data-modifying WITH to completion whether or not the query reads it.
        # Whether it wrote is told by the row, as for every write here (not by rowcount).
        return select(written).add_cte(insert(execution_events).from_select(columns, event).cte("event"))


# The writes, built once like the reads (measured: building a transition, its CTE and its cache key
# on every call made a write cost ~3.1 ms of CPU; built once, ~0.5 ms).
_ATTEMPT = bindparam("when_attempt")
_INSERT_QUEUED = _Write(
    insert(executions).values(
        _set(
            (
                "id",
                "session_id",
                "status",
                "language",
                "source_code",
                "time_limit_ms",
                "memory_limit_mb",
                "created_at",
                "attempt",
                "idempotency_key",
                "not_before",
                "compile_time_limit_ms",
                "compile_memory_limit_mb",
                "encoding",
                "stdin",
                "args",
                "interactive",
                "files",
                "suite",
                "tenant",
                "api_key_id",
                "callback_url",
                "callback_state",
                "callback_attempts",
                "priority",
            )
        )
    )
)
_START = _Write(
    _transition(executions.c.attempt == _ATTEMPT, sets=("status", "started_at", "executor_id", "lease_expires_at"))
)
_RENEW_LEASE = _transition(
    executions.c.attempt == _ATTEMPT,
    executions.c.executor_id == bindparam("when_executor_id"),
    sets=("lease_expires_at",),
)
_RETRY = _Write(
    _transition(
        executions.c.attempt == _ATTEMPT, sets=("status", "attempt", "executor_id", "lease_expires_at", "not_before")
    )
)
# A result's columns, as an unfinished row has them: an operator's retry of a dead letter clears them.
_NO_RESULT = {
    **dict.fromkeys(("finished_at", "exit_code", "tests")),
    **dict.fromkeys(("reason", "stdout", "stderr", "sandbox"), ""),
    **dict.fromkeys(("stdout_truncated", "stderr_truncated", "program_failed"), False),
    **dict.fromkeys(("execution_time_ms", "memory_kb"), 0),
    "stages": [],
    "warnings": [],
}
_RESULT_COLUMNS = tuple(_NO_RESULT)
# The webhook's delivery: a retried run's new result is delivered anew.
_CALLBACK = ("callback_state", "callback_attempts", "callback_next_at")
_REQUEUE = _Write(
    _transition(
        executions.c.attempt == _ATTEMPT,
        executions.c.reason == bindparam("when_reason"),
        sets=("status", "attempt", "executor_id", "lease_expires_at", "not_before", *_RESULT_COLUMNS, *_CALLBACK),
    ),
    returned=tuple(executions.c),
)
_FINISH = _Write(
    _transition(
        (executions.c.attempt == _ATTEMPT) | (executions.c.status == Status.QUEUED.value),
        sets=("status", "executor_id", "lease_expires_at", *_RESULT_COLUMNS),
    ),
    # The whole row: the finished execution is announced with its result (execution_service/change_feed.py).
    returned=tuple(executions.c),
)


PENDING, DELIVERED, GAVE_UP = "pending", "delivered", "failed"  # a webhook delivery's states
# Never tried, its retry's wait is over, or a replica's claim on it expired.
_CALLBACK_DUE = or_(
    executions.c.callback_next_at.is_(None), executions.c.callback_next_at <= bindparam("now", type_=UtcDateTime)
)
_DUE_CALLBACKS = (
    select(executions)
    .where(executions.c.callback_state == PENDING)
    .where(executions.c.status.in_([status.value for status in TERMINAL]))
    .where(_CALLBACK_DUE)
    .order_by(executions.c.finished_at)
    .limit(bindparam("count"))
)
# Both for the run's attempt as it was read: an operator's retry in between makes them write nothing.
_PENDING_CALLBACK_OF_RUN = (
    update(executions)
    .where(executions.c.id == bindparam("execution_id"))
    .where(executions.c.attempt == bindparam("run_attempt"))
    .where(executions.c.status.in_([status.value for status in TERMINAL]))
    .where(executions.c.callback_state == PENDING)
)
_CLAIM_CALLBACK = (
    _PENDING_CALLBACK_OF_RUN.where(executions.c.callback_attempts == bindparam("attempts"))
    .where(_CALLBACK_DUE)
    .values(callback_next_at=bindparam("until", type_=UtcDateTime))
)
_RECORD_CALLBACK = _PENDING_CALLBACK_OF_RUN.where(executions.c.callback_attempts == bindparam("before")).values(
    callback_attempts=bindparam("attempts"),
    callback_state=bindparam("state"),
    callback_next_at=bindparam("next_at", type_=UtcDateTime),
)


class Repository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert_queued(self, execution: Execution, not_before: datetime) -> bool:
        """The row and its QUEUED event, together or not at all. False when the session already has
        an execution under the same idempotency key (a concurrent duplicate); nothing is written then."""
        row = _values(
            id=execution.id,
            session_id=execution.session_id,
            status=Status.QUEUED.value,
            language=execution.language,
            source_code=execution.source_code,
            time_limit_ms=execution.time_limit_ms,
            memory_limit_mb=execution.memory_limit_mb,
            created_at=execution.created_at,
            attempt=execution.attempt,
            idempotency_key=execution.idempotency_key,
            not_before=not_before,
            compile_time_limit_ms=execution.compile_time_limit_ms,
            compile_memory_limit_mb=execution.compile_memory_limit_mb,
            encoding=execution.encoding.value,
            stdin=execution.stdin or None,
            args=list(execution.args) or None,
            interactive=execution.interactive,
            files=files_to_json(execution.files) or None,
            suite=execution.suite.to_json() if execution.suite is not None else None,
            tenant=execution.tenant or None,
            api_key_id=execution.api_key_id,
            callback_url=execution.callback_url,
            callback_state=execution.callback_state,
            callback_attempts=execution.callback_attempts,
            priority=execution.priority.value,
        )
        try:
            with writing(self.engine) as (conn, one_statement):
                _write_with_event(
                    conn, one_statement, _INSERT_QUEUED, row, execution.id, Status.QUEUED, execution.created_at
                )
        except sqlalchemy.exc.IntegrityError:
            if execution.idempotency_key is None:
                raise
            return False
        return True

    def get(self, execution_id: str) -> Execution | None:
        with reading(self.engine) as conn:
            row = conn.execute(_BY_ID, {"execution_id": execution_id}).mappings().first()
        return None if row is None else _to_execution(row)

    def find_by_key(self, session_id: str, idempotency_key: str) -> Execution | None:
        query = select(executions).where(
            executions.c.session_id == session_id, executions.c.idempotency_key == idempotency_key
        )
        with reading(self.engine) as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _to_execution(row)

    def release_key(self, execution_id: str, idempotency_key: str) -> None:
        """Frees an expired key for a new execution; the old one keeps everything else."""
        with self.engine.begin() as conn:
            conn.execute(
                update(executions)
                .where(executions.c.id == execution_id, executions.c.idempotency_key == idempotency_key)
                .values(idempotency_key=None)
            )

    def list_for_session(self, session_id: str, limit: int) -> list[Execution]:
        with reading(self.engine) as conn:
            rows = conn.execute(_NEWEST_OF_SESSION, {"session_id": session_id, "count": limit}).mappings()
            return [_to_execution(row) for row in rows]

    def events(self, execution_id: str) -> list[Event]:
        query = (
            select(execution_events)
            .where(execution_events.c.execution_id == execution_id)
            .order_by(execution_events.c.id)
        )
        with reading(self.engine) as conn:
            return [
                Event(type=row.type, at=row.at, attempt=row.attempt, executor_id=row.executor_id, reason=row.reason)
                for row in conn.execute(query)
            ]

    def find(
        self, status: Status | None, reason: Reason | None, limit: int, after: tuple[datetime, str] | None
    ) -> list[Execution]:
        """Executions of every tenant with this status and reason (None: any), newest first, from just
        after `after` (the (created_at, id) of the previous page's last)."""
        query = select(*_LISTED_COLUMNS).order_by(executions.c.created_at.desc(), executions.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(executions.c.status == status.value)
        if reason is Reason.SIGNAL:
            query = query.where(executions.c.reason.startswith(reason_text(Reason.SIGNAL, ""), autoescape=True))
        elif reason is not None:
            query = query.where(executions.c.reason == reason.value)
        if after is not None:
            cursor = tuple_(literal(after[0], UtcDateTime), literal(after[1], executions.c.id.type))
            query = query.where(tuple_(executions.c.created_at, executions.c.id) < cursor)
        with reading(self.engine) as conn:
            return [_to_execution(row) for row in conn.execute(query).mappings()]

    def requeue(self, execution_id: str, ended: Execution, reason: str, now: datetime) -> Execution | None:
        """The terminal `ended` (its status, attempt and reason) -> QUEUED as its next attempt, due now,
        its result cleared; recorded as a RETRIED event with `reason`. None when the row is no longer as
        `ended` says (someone else retried it first)."""
        change = (
            _when(execution_id, [ended.status], ended.attempt)
            | {"when_reason": ended.outcome.reason_text if ended.outcome else ""}
            | _values(
                status=Status.QUEUED.value,
                attempt=ended.attempt + 1,
                executor_id="",
                lease_expires_at=None,
                not_before=now,
                **_NO_RESULT,
                callback_state=PENDING if ended.callback_url else None,
                callback_attempts=0,
                callback_next_at=None,
            )
        )
        with writing(self.engine) as (conn, one_statement):
            written = _write_with_event(
                conn, one_statement, _REQUEUE, change, execution_id, RETRIED, now, attempt=ended.attempt, reason=reason
            )
        return _to_execution(written) if written is not None else None

    def due_callbacks(self, now: datetime, limit: int) -> list[Execution]:
        """Finished runs whose webhook delivery is pending and due, the longest finished first."""
        with reading(self.engine) as conn:
            rows = conn.execute(_DUE_CALLBACKS, {"now": now, "count": limit}).mappings()
            return [_to_execution(row) for row in rows]

    def claim_callback(self, execution: Execution, now: datetime, until: datetime) -> bool:
        """Takes the due delivery of the run as read, until `until`: False when another replica took it
        first, or the run changed since (an operator retried it)."""
        params = {"execution_id": execution.id, "run_attempt": execution.attempt, "now": now, "until": until}
        with writing(self.engine) as (conn, _):
            claimed = conn.execute(_CLAIM_CALLBACK, params | {"attempts": execution.callback_attempts})
        return claimed.rowcount == 1

    def record_callback(
        self, execution: Execution, attempt: int, state: str, next_at: datetime | None, reason: str, now: datetime
    ) -> None:
        """The attempt's outcome: the delivery's new state (and when it is next due), and its WEBHOOK event;
        nothing when the run changed since it was read (an operator retried it: its new result goes anew)."""
        params = {"execution_id": execution.id, "run_attempt": execution.attempt, "before": attempt - 1}
        with writing(self.engine) as (conn, _):
            recorded = conn.execute(
                _RECORD_CALLBACK, params | {"attempts": attempt, "state": state, "next_at": next_at}
            )
            if recorded.rowcount == 1:
                event = {"event_type": WEBHOOK, "event_at": now, "event_attempt": attempt, "event_reason": reason}
                conn.execute(_EVENT, {"event_execution_id": execution.id, "event_executor_id": ""} | event)

    def unfinished_of_key(self, api_key_id: str) -> int:
        """How many runs created with the key are QUEUED or RUNNING."""
        with reading(self.engine) as conn:
            return int(conn.execute(_UNFINISHED_OF_KEY, {"api_key_id": api_key_id}).scalar_one())

    def last_finished(self, session_id: str, count: int) -> list[FinishedRun]:
        """The session's `count` most recently finished runs, newest first."""
        with reading(self.engine) as conn:
            rows = conn.execute(_LAST_FINISHED, {"session_id": session_id, "count": count})
            return [FinishedRun(Status(row.status), row.finished_at, bool(row.program_failed)) for row in rows]

    def due_queued(self, now: datetime, after: AttemptRef | None, limit: int) -> list[AttemptRef]:
        """QUEUED rows whose `not_before` has passed, in (not_before, id) order, from just after `after`."""
        due = executions.c.not_before
        query = (
            select(executions.c.id, executions.c.attempt, executions.c.executor_id, due)
            .where(executions.c.status == Status.QUEUED.value, due <= now)
            .order_by(due, executions.c.id)
            .limit(limit)
        )
        if after is not None:
            cursor = tuple_(literal(after.due_at, UtcDateTime), literal(after.execution_id, executions.c.id.type))
            query = query.where(tuple_(due, executions.c.id) > cursor)
        return self._attempt_refs(query)

    def expired_leases(self, now: datetime, limit: int) -> list[AttemptRef]:
        """RUNNING rows whose executor's lease ran out, oldest expiry first."""
        due = executions.c.lease_expires_at
        query = (
            select(executions.c.id, executions.c.attempt, executions.c.executor_id, due)
            .where(executions.c.status == Status.RUNNING.value, due < now)
            .order_by(due)
            .limit(limit)
        )
        return self._attempt_refs(query)

    def _attempt_refs(self, query: Select[Any]) -> list[AttemptRef]:
        with reading(self.engine) as conn:
            return [AttemptRef(str(row[0]), row[1], row[2], row[3]) for row in conn.execute(query)]

    def start(self, execution_id: str, executor_id: str, attempt: int, now: datetime, lease_until: datetime) -> bool:
        """QUEUED -> RUNNING for the current attempt only. False otherwise (another attempt, or not QUEUED)."""
        change = _when(execution_id, {Status.QUEUED}, attempt) | _values(
            status=Status.RUNNING.value, started_at=now, executor_id=executor_id, lease_expires_at=lease_until
        )
        with writing(self.engine) as (conn, one_statement):
            written = _write_with_event(
                conn,
                one_statement,
                _START,
                change,
                execution_id,
                Status.RUNNING,
                now,
                attempt=attempt,
                executor_id=executor_id,
            )
        return written is not None

    def renew_lease(self, execution_id: str, executor_id: str, attempt: int, lease_until: datetime) -> bool:
        """Extends the lease of the executor running the current attempt; False when it is not that executor."""
        change = _when(execution_id, {Status.RUNNING}, attempt) | _values(lease_expires_at=lease_until)
        # One statement: in autocommit, a single round trip that commits as it runs.
        with writing(self.engine) as (conn, _):
            return conn.execute(_RENEW_LEASE, {**change, "when_executor_id": executor_id}).rowcount == 1

    def retry(
        self,
        execution_id: str,
        failed_attempt: int,
        executor_id: str,
        reason: str,
        now: datetime,
        not_before: datetime,
        *,
        allowed: frozenset[Status] = UNFINISHED,
    ) -> bool:
        """Ends `failed_attempt` and queues the next one, to be enqueued from `not_before` on. False when
        that attempt is no longer the current one or the row left `allowed` (someone else decided)."""
        change = _when(execution_id, allowed, failed_attempt) | _values(
            status=Status.QUEUED.value,
            attempt=failed_attempt + 1,
            executor_id="",
            lease_expires_at=None,
            not_before=not_before,
        )
        with writing(self.engine) as (conn, one_statement):
            written = _write_with_event(
                conn,
                one_statement,
                _RETRY,
                change,
                execution_id,
                RETRIED,
                now,
                attempt=failed_attempt,
                executor_id=executor_id,
                reason=reason,
            )
        return written is not None

    def finish(
        self,
        execution_id: str,
        executor_id: str,
        attempt: int,
        outcome: RunOutcome,
        now: datetime,
        *,
        warnings: Iterable[str] = (),
        allowed: frozenset[Status] = UNFINISHED,
    ) -> Execution | None:
        """QUEUED or RUNNING (those of `allowed`) -> the outcome's terminal status; the finished execution.
        None when already terminal, or when the report is of an older attempt while a newer one is
        RUNNING (that one's result is awaited).

        An older attempt's result is taken while the row is QUEUED: its executor was alive after
        all (e.g. it could not renew its lease while this service was down) and the run it
        reports is the same snapshot, so the next attempt need not run at all."""
        change = _when(execution_id, allowed, attempt) | _values(
            status=outcome.status.value,
            finished_at=now,
            executor_id=executor_id,
            lease_expires_at=None,
            reason=outcome.reason_text,
            **output_of(outcome),
            stages=[asdict(stage) for stage in outcome.stages],
            sandbox=outcome.sandbox,
            warnings=list(warnings),
            tests=[case_to_json(case) for case in outcome.tests] or None,
            program_failed=any(case.crashed for case in outcome.tests),
        )
        with writing(self.engine) as (conn, one_statement):
            written = _write_with_event(
                conn,
                one_statement,
                _FINISH,
                change,
                execution_id,
                outcome.status,
                now,
                attempt=attempt,
                executor_id=executor_id,
                reason=outcome.reason_text,
            )
        return _to_execution(written) if written is not None else None


def _when(execution_id: str, allowed: Iterable[Status], attempt: int) -> dict[str, Any]:
    """The parameters of a transition's condition: this row, from a status of `allowed`, for `attempt`."""
    return {"execution_id": execution_id, "allowed": [status.value for status in allowed], "when_attempt": attempt}


def _values(**values: Any) -> dict[str, Any]:
    """The parameters of the columns a write sets (see _set)."""
    return {f"set_{name}": value for name, value in values.items()}


def _write_with_event(
    conn: Connection,
    one_statement: bool,
    write: _Write,
    params: dict[str, Any],
    execution_id: str,
    event_type: str,
    at: datetime,
    *,
    attempt: int | None = None,
    executor_id: str | None = None,
    reason: str | None = None,
) -> RowMapping | None:
    """Writes one row and, when it did, its event, atomically; the written row's `write.returned`
    columns, None when it wrote nothing.

    With `one_statement` (PostgreSQL) both go in one statement (_Write.with_event). Otherwise
    (SQLite) two statements in the caller's transaction."""
    event = {"event_type": event_type, "event_at": at, "event_attempt": attempt}
    event |= {"event_executor_id": executor_id, "event_reason": reason}
    if one_statement:
        return conn.execute(write.with_event, params | event).mappings().first()
    written = conn.execute(write.alone, params).mappings().first()
    if written is not None:
        conn.execute(_EVENT, {"event_execution_id": execution_id, **event})
    return written


def _to_execution(row: RowMapping) -> Execution:
    status = Status(row["status"])
    return Execution(
        id=str(row["id"]),
        session_id=str(row["session_id"]),
        status=status,
        language=row["language"],
        source_code=row.get("source_code", ""),
        time_limit_ms=row["time_limit_ms"],
        memory_limit_mb=row["memory_limit_mb"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        attempt=row["attempt"],
        executor_id=row["executor_id"],
        outcome=_to_outcome(row) if status in TERMINAL else None,
        warnings=tuple(row["warnings"] or ()),
        idempotency_key=row["idempotency_key"],
        compile_time_limit_ms=row["compile_time_limit_ms"] or DEFAULT_COMPILE_TIME_LIMIT_MS,
        compile_memory_limit_mb=row["compile_memory_limit_mb"] or DEFAULT_COMPILE_MEMORY_LIMIT_MB,
        encoding=Encoding(row["encoding"] or Encoding.UTF8),
        stdin=row.get("stdin") or b"",
        args=tuple(row["args"] or ()),
        interactive=bool(row["interactive"]),
        files=files_from_json(row.get("files")),
        suite=Suite.from_json(row["suite"]) if row.get("suite") else None,
        tenant=row["tenant"] or "",
        api_key_id=str(row["api_key_id"]) if row["api_key_id"] else None,
        callback_url=row.get("callback_url"),
        callback_state=row.get("callback_state"),
        callback_attempts=row.get("callback_attempts") or 0,
        priority=Lane(row.get("priority") or Lane.INTERACTIVE),
    )


def _to_outcome(row: RowMapping) -> RunOutcome:
    reason, signal = reason_from_text(row["reason"])
    return RunOutcome(
        status=Status(row["status"]),
        reason=reason,
        signal=signal,
        stdout=row.get("stdout", ""),
        stderr=row.get("stderr", ""),
        stdout_truncated=row["stdout_truncated"],
        stderr_truncated=row["stderr_truncated"],
        exit_code=row["exit_code"],
        execution_time_ms=row["execution_time_ms"],
        memory_kb=row["memory_kb"],
        stages=tuple(_to_stage(stage) for stage in row["stages"]),
        sandbox=row["sandbox"],
        tests=tuple(case_from_json(case) for case in row.get("tests") or ()),
    )


def _to_stage(stage: Mapping[str, Any]) -> Stage:
    return Stage(**{name: stage[name] for name in Stage.__dataclass_fields__})
