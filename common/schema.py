"""What the first migration of each service runs: its tables, created where missing.

Before migrations, each service created its tables at start (create_all) and added the nullable
columns and indexes of later releases to a database that had the tables. The first revision of each
history does the same with the schema as it stood then, so it both creates a new database and adopts
one made by any release before migrations, keeping its rows. Later revisions use Alembic's `op`.
"""

from __future__ import annotations

import logging

import sqlalchemy
from sqlalchemy import Connection, MetaData, Table

log = logging.getLogger(__name__)


def create_missing(conn: Connection, metadata: MetaData) -> None:
    """Creates the tables, columns and indexes of `metadata` that the database does not have."""
    metadata.create_all(conn, checkfirst=True)
    for table in metadata.sorted_tables:
        _add_missing_columns(conn, table)
        for index in table.indexes:
            index.create(conn, checkfirst=True)


def _add_missing_columns(conn: Connection, table: Table) -> None:
    """Adds the nullable columns a later release brought (rows written before read them as NULL)."""
    existing = {column["name"] for column in sqlalchemy.inspect(conn).get_columns(table.name)}
    for column in (column for column in table.columns if column.name not in existing):
        if not column.nullable:
            raise RuntimeError(f"{table.name}.{column.name} is missing and cannot be added to existing rows")
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(sqlalchemy.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
        log.info("column added", extra={"table": table.name, "column": column.name})
