"""The execution domain's records and the tables that hold them (`executions`, `execution_events`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
)

from common.config import DEFAULT_COMPILE_MEMORY_LIMIT_MB, DEFAULT_COMPILE_TIME_LIMIT_MS
from common.job import Encoding, Lane, SourceFile, Suite
from common.outcome import RunOutcome, Status

RETRIED = "RETRIED"  # the event type of an attempt that failed and was queued again
WEBHOOK = "WEBHOOK"  # the event type of an attempt to deliver the run's webhook


@dataclass(frozen=True)
class Execution:
    id: str
    session_id: str
    status: Status
    language: str
    source_code: str
    time_limit_ms: int
    memory_limit_mb: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int  # the current attempt: 1 at creation, one more per infrastructure retry
    executor_id: str
    outcome: RunOutcome | None  # set once terminal
    warnings: tuple[str, ...] = ()  # the executor's advice about the source, set with the result
    idempotency_key: str | None = None
    compile_time_limit_ms: int = DEFAULT_COMPILE_TIME_LIMIT_MS
    compile_memory_limit_mb: int = DEFAULT_COMPILE_MEMORY_LIMIT_MB
    encoding: Encoding = Encoding.UTF8  # of the outcome's stdout and stderr
    stdin: bytes = b""
    args: tuple[str, ...] = ()
    interactive: bool = False  # stdin stays open for what the client sends (common/run_input.py)
    files: tuple[SourceFile, ...] = ()  # the session's other files, snapshotted with its source
    suite: Suite | None = None  # a test suite instead of one run (judge mode)
    tenant: str = ""  # "" without API keys
    api_key_id: str | None = None
    # The webhook (execution_service/webhooks.py): where the finished run is POSTed, and its delivery so far.
    callback_url: str | None = None
    callback_state: str | None = None  # pending, delivered or failed; None without a callback_url
    callback_attempts: int = 0
    priority: Lane = Lane.INTERACTIVE


@dataclass(frozen=True)
class RunEvent:
    """One event of a run's live stream (common/run_events.py): a state change, output, or its end."""

    id: str
    kind: str  # status, stdout, stderr or result
    fields: dict[str, str | int]  # status: status, attempt, reason; output: attempt, offset, data
    execution: Execution | None = None  # result: the final state


@dataclass(frozen=True)
class Event:
    """One entry of an execution's lifecycle log."""

    type: str  # a Status, or RETRIED
    at: datetime
    attempt: int | None
    executor_id: str | None
    reason: str | None


@dataclass(frozen=True)
class AttemptRef:
    """What the reconciler needs of a row to judge its current attempt, without loading its source."""

    execution_id: str
    attempt: int
    executor_id: str
    due_at: datetime  # QUEUED: not_before; RUNNING: lease_expires_at


@dataclass(frozen=True)
class FinishedRun:
    """The part of a terminal run the failure-streak rule looks at."""

    status: Status
    finished_at: datetime
    program_failed: bool = False  # a suite whose program failed in a case (it is COMPLETED all the same)

    @property
    def failed(self) -> bool:
        return self.status != Status.COMPLETED or self.program_failed


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on PostgreSQL (timestamptz) and SQLite (which keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        utc = value.astimezone(UTC)
        # SQLite stores the text without an offset: keep every stored value in UTC so they compare as text.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

executions = Table(
    "executions",
    metadata,
    Column("id", Uuid(as_uuid=False), primary_key=True),
    Column("session_id", Uuid(as_uuid=False), nullable=False),
    Column("status", String(16), nullable=False),
    # The snapshot taken at creation: a later autosave never changes what a queued run executes.
    Column("language", String(32), nullable=False),
    Column("source_code", Text, nullable=False),
    Column("time_limit_ms", Integer, nullable=False),
    Column("memory_limit_mb", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("attempt", Integer, nullable=False, default=0),
    Column("executor_id", Text, nullable=False, default=""),
    # The result, set once terminal.
    Column("reason", Text, nullable=False, default=""),
    Column("stdout", Text, nullable=False, default=""),
    Column("stderr", Text, nullable=False, default=""),
    Column("stdout_truncated", Boolean, nullable=False, default=False),
    Column("stderr_truncated", Boolean, nullable=False, default=False),
    Column("exit_code", Integer),
    Column("execution_time_ms", BigInteger, nullable=False, default=0),
    Column("memory_kb", BigInteger, nullable=False, default=0),
    Column("stages", JSON, nullable=False, default=list),
    Column("sandbox", Text, nullable=False, default=""),
    Column("warnings", JSON, nullable=False, default=list),
    # QUEUED: when the reconciler may (re-)enqueue the current attempt: after the creator had its
    # chance to, or once a retry's backoff is over.
    Column("not_before", UtcDateTime),
    # RUNNING: the executor's claim on the run ends here unless renewed.
    Column("lease_expires_at", UtcDateTime),
    Column("idempotency_key", String(255)),
    # Added by a later release: NULL in rows written before it, which are read with today's defaults.
    Column("compile_time_limit_ms", Integer),
    Column("compile_memory_limit_mb", Integer),
    Column("encoding", String(8)),
    Column("stdin", LargeBinary),
    Column("args", JSON),
    Column("interactive", Boolean),
    Column("files", JSON),
    # A test suite: its cases as asked (common.job.Suite), their verdicts once it ends, and whether a
    # case's program failed (which counts toward the failure streak, as against a wrong answer).
    Column("suite", JSON),
    Column("tests", JSON),
    Column("program_failed", Boolean),
    # Who it belongs to: the tenant of the API key that created it (NULL without keys), and that key.
    Column("tenant", Text),
    Column("api_key_id", Uuid(as_uuid=False)),
    # The webhook's outbox (execution_service/webhooks.py): the URL, the delivery's state, the attempts
    # made, and when the next attempt is due (or until when a replica's claim on it lasts).
    Column("callback_url", Text),
    Column("callback_state", String(16)),
    Column("callback_attempts", Integer),
    Column("callback_next_at", UtcDateTime),
    # Its lane (common.job.Lane); NULL in rows made before lanes, read as interactive.
    Column("priority", String(16)),
    # A session's history, newest first.
    Index("ix_executions_session_created", "session_id", "created_at"),
    # A session's last finished runs (the failure streak, read on every run): without it, every
    # run read and sorted all of its session's earlier runs.
    Index("ix_executions_session_finished", "session_id", "finished_at"),
    # The reconciler's two sweeps: QUEUED rows that are due, RUNNING rows whose lease ran out.
    Index("ix_executions_status_not_before", "status", "not_before"),
    Index("ix_executions_status_lease", "status", "lease_expires_at"),
    # A key's unfinished runs, counted against its concurrency on every run it creates.
    Index("ix_executions_api_key_status", "api_key_id", "status"),
    # Deliveries that are due, for the webhook sender's sweep.
    Index("ix_executions_callback_due", "callback_state", "callback_next_at"),
    # An operator's search (FindExecutions), newest first: by status, or of every run.
    Index("ix_executions_status_created", "status", "created_at"),
    Index("ix_executions_created", "created_at"),
    # One execution per key and session; concurrent duplicates lose on this index, not on a race.
    Index("ux_executions_session_idempotency_key", "session_id", "idempotency_key", unique=True),
)

execution_events = Table(
    "execution_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("execution_id", Uuid(as_uuid=False), nullable=False),
    Column("type", String(16), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("attempt", Integer),
    Column("executor_id", Text),
    Column("reason", Text),
    Index("ix_execution_events_execution", "execution_id", "id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid(as_uuid=False), primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("name", Text, nullable=False, default=""),
    # SHA-256 of the key: the key itself is shown once, at creation, and never stored.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("admin", Boolean, nullable=False, default=False),
    Column("runs_per_minute", Integer, nullable=False),
    Column("concurrent_runs", Integer, nullable=False),
    Column("max_time_limit_ms", Integer, nullable=False),
    Column("max_memory_limit_mb", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Column("max_priority", String(16)),  # NULL: interactive (keys made before lanes)
)
