"""The schema as it stood when migrations began: `languages` and `sessions`.

Written out here, not imported from models.py: this revision must keep creating this schema after
the models change. It creates what is missing, so it also adopts a database made before migrations.
"""

import sqlalchemy as sa
from alembic import op

from common.schema import create_missing

revision = "0001"
down_revision = None

_schema = sa.MetaData()

sa.Table(
    "languages",
    _schema,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(32), nullable=False, unique=True),
    sa.Column("runtime", sa.String(32), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("template_code", sa.Text, nullable=False),
    sa.Column("file_name", sa.String(64), nullable=False),
    sa.Column("default_time_limit_ms", sa.Integer, nullable=False),
    sa.Column("default_memory_mb", sa.Integer, nullable=False),
)

sa.Table(
    "sessions",
    _schema,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("language_id", sa.Uuid, sa.ForeignKey("languages.id"), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("source_code", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Added by releases before migrations: a database of such a release gets them here.
    sa.Column("files", sa.JSON, nullable=True),
    sa.Column("tenant", sa.Text, nullable=True),
    sa.CheckConstraint("status IN ('ACTIVE', 'INACTIVE')", name="sessions_status_known"),
)


def upgrade() -> None:
    create_missing(op.get_bind(), _schema)
