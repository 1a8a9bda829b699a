"""All SQL of execution_service. Transitions are conditional UPDATEs, so concurrent reports stay monotonic."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, RowMapping, insert, select, update

from execution_service.models import (
    TERMINAL,
    Execution,
    FinishedRun,
    RunOutcome,
    Stage,
    Status,
    execution_events,
    executions,
    metadata,
)

log = logging.getLogger(__name__)

_SCHEMA_ATTEMPTS = 3


def create_schema(engine: Engine) -> None:
    """Creates the tables if missing. Two replicas starting together may race on CREATE TABLE:
    the loser sees a duplicate-object error, and its retry finds the tables in place."""
    for attempt in range(1, _SCHEMA_ATTEMPTS + 1):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == _SCHEMA_ATTEMPTS:
                raise
            log.info("schema created concurrently by another replica; checking again")


class Repository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert_queued(self, execution: Execution) -> None:
        """The row and its QUEUED event, together or not at all."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(executions).values(
                    id=execution.id,
                    session_id=execution.session_id,
                    status=Status.QUEUED.value,
                    language=execution.language,
                    source_code=execution.source_code,
                    time_limit_ms=execution.time_limit_ms,
                    memory_limit_mb=execution.memory_limit_mb,
                    created_at=execution.created_at,
                )
            )
            _add_event(conn, execution.id, Status.QUEUED, execution.created_at)

    def get(self, execution_id: str) -> Execution | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(executions).where(executions.c.id == execution_id)).mappings().first()
        return None if row is None else _to_execution(row)

    def list_for_session(self, session_id: str, limit: int) -> list[Execution]:
        query = (
            select(executions)
            .where(executions.c.session_id == session_id)
            .order_by(executions.c.created_at.desc(), executions.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_to_execution(row) for row in conn.execute(query).mappings()]

    def last_finished(self, session_id: str, count: int) -> list[FinishedRun]:
        """The session's `count` most recently finished runs, newest first."""
        query = (
            select(executions.c.status, executions.c.finished_at)
            .where(executions.c.session_id == session_id)
            .where(executions.c.status.in_([status.value for status in TERMINAL]))
            .order_by(executions.c.finished_at.desc())
            .limit(count)
        )
        with self.engine.connect() as conn:
            return [FinishedRun(Status(row.status), row.finished_at) for row in conn.execute(query)]

    def queued_before(self, cutoff: datetime, limit: int) -> list[Execution]:
        query = (
            select(executions)
            .where(executions.c.status == Status.QUEUED.value)
            .where(executions.c.created_at < cutoff)
            .order_by(executions.c.created_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_to_execution(row) for row in conn.execute(query).mappings()]

    def start(self, execution_id: str, executor_id: str, attempt: int, now: datetime) -> bool:
        """QUEUED -> RUNNING. False when the execution was not QUEUED."""
        with self.engine.begin() as conn:
            changed = _update_where(
                conn,
                execution_id,
                {Status.QUEUED},
                status=Status.RUNNING.value,
                started_at=now,
                attempt=attempt,
                executor_id=executor_id,
            )
            if changed:
                _add_event(conn, execution_id, Status.RUNNING, now, attempt=attempt, executor_id=executor_id)
            return changed

    def restart(self, execution_id: str, executor_id: str, attempt: int, now: datetime) -> bool:
        """A RUNNING execution delivered again: records the new attempt. False when it is not RUNNING,
        when this very attempt was already recorded (a repeated report changes nothing), or when the
        report is of an older attempt than the recorded one (a late report never moves it backwards)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(executions)
                .where(executions.c.id == execution_id)
                .where(executions.c.status == Status.RUNNING.value)
                .where(executions.c.attempt <= attempt)
                .where((executions.c.attempt != attempt) | (executions.c.executor_id != executor_id))
                .values(attempt=attempt, executor_id=executor_id)
            )
            if result.rowcount == 1:
                _add_event(conn, execution_id, Status.RUNNING, now, attempt=attempt, executor_id=executor_id)
            return result.rowcount == 1

    def finish(self, execution_id: str, executor_id: str, outcome: RunOutcome, now: datetime) -> bool:
        """QUEUED or RUNNING -> the outcome's terminal status. False when already terminal."""
        with self.engine.begin() as conn:
            changed = _update_where(
                conn,
                execution_id,
                {Status.QUEUED, Status.RUNNING},
                status=outcome.status.value,
                finished_at=now,
                executor_id=executor_id,
                reason=outcome.reason,
                stdout=outcome.stdout,
                stderr=outcome.stderr,
                stdout_truncated=outcome.stdout_truncated,
                stderr_truncated=outcome.stderr_truncated,
                exit_code=outcome.exit_code,
                execution_time_ms=outcome.execution_time_ms,
                memory_kb=outcome.memory_kb,
                stages=[asdict(stage) for stage in outcome.stages],
                sandbox=outcome.sandbox,
            )
            if changed:
                _add_event(conn, execution_id, outcome.status, now, executor_id=executor_id, reason=outcome.reason)
            return changed


def _update_where(conn: Connection, execution_id: str, allowed: Iterable[Status], **values: Any) -> bool:
    result = conn.execute(
        update(executions)
        .where(executions.c.id == execution_id)
        .where(executions.c.status.in_([status.value for status in allowed]))
        .values(**values)
    )
    return result.rowcount == 1


def _add_event(
    conn: Connection,
    execution_id: str,
    status: Status,
    at: datetime,
    *,
    attempt: int | None = None,
    executor_id: str | None = None,
    reason: str | None = None,
) -> None:
    conn.execute(
        insert(execution_events).values(
            execution_id=execution_id,
            type=status.value,
            at=at,
            attempt=attempt,
            executor_id=executor_id,
            reason=reason,
        )
    )


def _to_execution(row: RowMapping) -> Execution:
    status = Status(row["status"])
    return Execution(
        id=str(row["id"]),
        session_id=str(row["session_id"]),
        status=status,
        language=row["language"],
        source_code=row["source_code"],
        time_limit_ms=row["time_limit_ms"],
        memory_limit_mb=row["memory_limit_mb"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        attempt=row["attempt"],
        executor_id=row["executor_id"],
        outcome=_to_outcome(row) if status in TERMINAL else None,
    )


def _to_outcome(row: RowMapping) -> RunOutcome:
    return RunOutcome(
        status=Status(row["status"]),
        reason=row["reason"],
        stdout=row["stdout"],
        stderr=row["stderr"],
        stdout_truncated=row["stdout_truncated"],
        stderr_truncated=row["stderr_truncated"],
        exit_code=row["exit_code"],
        execution_time_ms=row["execution_time_ms"],
        memory_kb=row["memory_kb"],
        stages=tuple(_to_stage(stage) for stage in row["stages"]),
        sandbox=row["sandbox"],
    )


def _to_stage(stage: Mapping[str, Any]) -> Stage:
    return Stage(**{name: stage[name] for name in Stage.__dataclass_fields__})
