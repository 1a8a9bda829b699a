"""${message}

Revision ${up_revision}, after ${down_revision | comma,n}. Written by `python -m <service> revision`:
review it, and test it on a copy of a real database. Migrations only go forward (restore a backup to
go back), and must keep every row.
"""

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}
