"""SQLAlchemy engines: PostgreSQL in production, a SQLite file as the embedded default."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, Engine, Executable, create_engine, event
from sqlalchemy.exc import DBAPIError


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets readers proceed while a writer commits; NORMAL sync is safe under WAL.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        # No pool_pre_ping: it costs a round trip (SELECT 1) before every statement. After a
        # PostgreSQL restart the first statement on a dead connection fails instead; SQLAlchemy
        # sees the disconnect and invalidates the whole pool, the call answers UNAVAILABLE
        # (common/grpc_server.py), and the caller's retry gets a fresh connection.
        # During an outage fail fast so callers get UNAVAILABLE quickly instead of hanging.
        pool_timeout=3,
        connect_args={
            "connect_timeout": 3,
            # A PostgreSQL host that vanishes without a reset (power, network) is noticed in about
            # 10 s instead of the kernel's 15 minutes: the call then fails with UNAVAILABLE.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
            # No statement holds a request (or the reconciler) for long, whatever it waits on.
            "options": "-c statement_timeout=10000 -c lock_timeout=5000",
        },
    )


@contextmanager
def writing(engine: Engine) -> Iterator[tuple[Connection, bool]]:
    """A pooled connection for one atomic write, and whether that write must be a single statement.

    PostgreSQL: True, and the connection is in autocommit: the one statement commits as it runs
    (synchronously, so durable once it returns), one round trip instead of BEGIN, the statement
    and COMMIT. A change that needs several rows written together puts them in one statement
    (a data-modifying WITH). SQLite, which has no such statement: False, and a transaction
    that commits when the block ends."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT"), True
        return
    with engine.begin() as connection:
        yield connection, False


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A pooled connection for one read that needs no transaction: in autocommit, a read is one round
    trip to PostgreSQL instead of three (BEGIN, the query, the ROLLBACK when the connection returns)."""
    with engine.connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


class DriverStatement:
    """A prebuilt PostgreSQL statement run on the driver's (psycopg's) own cursor, on a connection of
    `writing` or `reading`: the query is compiled once, and a call skips SQLAlchemy's execution and
    result layers, which cost a short query more CPU than the query itself. Values go through the
    same bind conversions SQLAlchemy applies (JSON); a statement whose results SQLAlchemy would
    convert is refused, so rows carry the same values as `connection.execute` gives. Driver errors
    leave as SQLAlchemy's (OperationalError...), and a lost server discards the pool, as they would."""

    def __init__(self, statement: Executable, engine: Engine) -> None:
        dialect = engine.dialect
        if dialect.driver != "psycopg":
            raise ValueError(f"DriverStatement runs on psycopg, not {dialect.driver!r}")
        compiled = statement.compile(dialect=dialect)
        returned = getattr(statement, "exported_columns", ())
        if any(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in returned):
            raise ValueError("a statement whose results SQLAlchemy converts cannot skip it")
        self._engine = engine
        self.sql = compiled.string
        names = compiled.bind_names
        self._fixed = {name: bind.value for bind, name in names.items() if not bind.required}
        self._conversions = {
            name: convert
            for bind, name in names.items()
            if (convert := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Any | None:
        """The first row (attributes named after its columns), or None: none returned, or no rows at all."""
        values = {**self._fixed, **params}
        for name, convert in self._conversions.items():
            values[name] = convert(values[name])
        driver = connection.connection.driver_connection
        try:
            with driver.cursor(row_factory=namedtuple_row) as cursor:
                cursor.execute(self.sql, values)
                return cursor.fetchone() if cursor.description else None
        except psycopg.Error as err:
            lost = self._engine.dialect.is_disconnect(err, driver, None)
            if lost:
                connection.invalidate(err)
                self._engine.dispose()  # the other pooled connections went with the server
            raise DBAPIError.instance(self.sql, values, err, psycopg.Error, connection_invalidated=lost) from err
