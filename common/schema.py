"""A service's tables at start: created when missing, and brought up to the current release."""

from __future__ import annotations

import logging

import sqlalchemy
from sqlalchemy import Connection, Engine, MetaData, Table
from sqlalchemy.exc import DatabaseError

log = logging.getLogger(__name__)

_ATTEMPTS = 3


def create_schema(engine: Engine, metadata: MetaData) -> None:
    """Creates the tables, columns and indexes if missing (a column or index added in a later release
    too: create_all skips whatever belongs to a table that exists). Two replicas starting together may
    race on CREATE or ALTER: the loser's transaction fails, and its retry finds everything in place."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Building an index on a large table may take longer than any request's statement may.
                    conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
                metadata.create_all(conn, checkfirst=True)
                for table in metadata.sorted_tables:
                    _add_missing_columns(conn, table)
                    for index in table.indexes:
                        index.create(conn, checkfirst=True)
            return
        except DatabaseError as err:
            if attempt == _ATTEMPTS:
                raise
            log.info("schema changed concurrently by another replica; retrying", extra={"error": type(err).__name__})


def _add_missing_columns(conn: Connection, table: Table) -> None:
    """Adds the nullable columns a later release brought (rows written before read them as NULL)."""
    existing = {column["name"] for column in sqlalchemy.inspect(conn).get_columns(table.name)}
    for column in (column for column in table.columns if column.name not in existing):
        if not column.nullable:
            raise RuntimeError(f"{table.name}.{column.name} is missing and cannot be added to existing rows")
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(sqlalchemy.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
        log.info("column added", extra={"table": table.name, "column": column.name})
