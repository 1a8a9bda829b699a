"""Priority lanes, and the operators' search of every run.

Revision 0003, after 0002: a run's lane (executions.priority), the highest lane a key's runs may
take (api_keys.max_priority), and an index on executions.created_at (FindExecutions without a status
filter, newest first). Nullable columns only: every row is kept, and rows of earlier releases read as
interactive.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_priority", sa.String(length=16), nullable=True))

    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.String(length=16), nullable=True))
        batch_op.create_index("ix_executions_created", ["created_at"], unique=False)
