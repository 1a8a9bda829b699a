"""Webhooks and the operators' search.

Revision 0002, after 0001: the webhook's outbox in the executions row (callback_url, its delivery's
state, attempts and next due time), the index the webhook sweep reads, and the one FindExecutions
reads (status, newest first). Adds only nullable columns and indexes: every row is kept, and rows of
earlier releases read as runs without a webhook.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("callback_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("callback_state", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("callback_attempts", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("callback_next_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_executions_callback_due", ["callback_state", "callback_next_at"], unique=False)
        batch_op.create_index("ix_executions_status_created", ["status", "created_at"], unique=False)
