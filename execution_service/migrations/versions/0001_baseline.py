"""The schema as it stood when migrations began: `executions`, `execution_events` and `api_keys`.

Written out here, not imported from models.py: this revision must keep creating this schema after
the models change. It creates what is missing, so it also adopts a database made before migrations.
Times are DateTime(timezone=True), what models.UtcDateTime stores; Python-side defaults make no DDL.
"""

import sqlalchemy as sa
from alembic import op

from common.schema import create_missing

revision = "0001"
down_revision = None

_schema = sa.MetaData()
_UUID = sa.Uuid(as_uuid=False)
_TIME = sa.DateTime(timezone=True)

sa.Table(
    "executions",
    _schema,
    sa.Column("id", _UUID, primary_key=True),
    sa.Column("session_id", _UUID, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("language", sa.String(32), nullable=False),
    sa.Column("source_code", sa.Text, nullable=False),
    sa.Column("time_limit_ms", sa.Integer, nullable=False),
    sa.Column("memory_limit_mb", sa.Integer, nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("started_at", _TIME),
    sa.Column("finished_at", _TIME),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("executor_id", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("stdout", sa.Text, nullable=False),
    sa.Column("stderr", sa.Text, nullable=False),
    sa.Column("stdout_truncated", sa.Boolean, nullable=False),
    sa.Column("stderr_truncated", sa.Boolean, nullable=False),
    sa.Column("exit_code", sa.Integer),
    sa.Column("execution_time_ms", sa.BigInteger, nullable=False),
    sa.Column("memory_kb", sa.BigInteger, nullable=False),
    sa.Column("stages", sa.JSON, nullable=False),
    sa.Column("sandbox", sa.Text, nullable=False),
    sa.Column("warnings", sa.JSON, nullable=False),
    sa.Column("not_before", _TIME),
    sa.Column("lease_expires_at", _TIME),
    sa.Column("idempotency_key", sa.String(255)),
    # Added by releases before migrations: a database of such a release gets them here.
    sa.Column("compile_time_limit_ms", sa.Integer),
    sa.Column("compile_memory_limit_mb", sa.Integer),
    sa.Column("encoding", sa.String(8)),
    sa.Column("stdin", sa.LargeBinary),
    sa.Column("args", sa.JSON),
    sa.Column("interactive", sa.Boolean),
    sa.Column("files", sa.JSON),
    sa.Column("suite", sa.JSON),
    sa.Column("tests", sa.JSON),
    sa.Column("program_failed", sa.Boolean),
    sa.Column("tenant", sa.Text),
    sa.Column("api_key_id", _UUID),
    sa.Index("ix_executions_session_created", "session_id", "created_at"),
    sa.Index("ix_executions_session_finished", "session_id", "finished_at"),
    sa.Index("ix_executions_status_not_before", "status", "not_before"),
    sa.Index("ix_executions_status_lease", "status", "lease_expires_at"),
    sa.Index("ix_executions_api_key_status", "api_key_id", "status"),
    sa.Index("ux_executions_session_idempotency_key", "session_id", "idempotency_key", unique=True),
)

sa.Table(
    "execution_events",
    _schema,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("execution_id", _UUID, nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("at", _TIME, nullable=False),
    sa.Column("attempt", sa.Integer),
    sa.Column("executor_id", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Index("ix_execution_events_execution", "execution_id", "id"),
)

sa.Table(
    "api_keys",
    _schema,
    sa.Column("id", _UUID, primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("admin", sa.Boolean, nullable=False),
    sa.Column("runs_per_minute", sa.Integer, nullable=False),
    sa.Column("concurrent_runs", sa.Integer, nullable=False),
    sa.Column("max_time_limit_ms", sa.Integer, nullable=False),
    sa.Column("max_memory_limit_mb", sa.Integer, nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("revoked_at", _TIME),
)


def upgrade() -> None:
    create_missing(op.get_bind(), _schema)
