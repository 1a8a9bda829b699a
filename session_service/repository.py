"""Every SQL statement of session_service: the languages upsert, session reads and writes.

The `languages` table holds the reference rows sessions point at (a foreign key); nothing reads it.
Its `version` column is no longer written: versions are the live executors' (toolchains.py), and a
row added now stores "" there.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Executable, Row, Update, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from common import languages as reference
from common.db import DriverStatement, reading, writing
from common.job import SourceFile, files_from_json, files_to_json
from session_service.models import SessionStatus, languages, sessions
from session_service.sessions import SessionRecord

# Both dialects spell "insert, or update on conflict" the same way, each with its own insert().
_UPSERT_INSERTS: dict[str, Callable[..., Any]] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


# Read on every request that names a session (and on every run): built once, so SQLAlchemy skips
# building the statement and its cache key on each call.
# Another tenant's session is not there at all.
_OWNED = func.coalesce(sessions.c.tenant, "") == bindparam("owner_tenant")
_BY_ID = select(sessions).where(sessions.c.id == bindparam("session_id"), _OWNED)
# The writes, built once too (a bound name may not be a column's, hence set_*).
_INSERT = sessions.insert().values(
    {
        name: bindparam(f"set_{name}", type_=sessions.c[name].type)
        for name in ("id", "language_id", "status", "source_code", "files", "created_at", "updated_at", "tenant")
    }
)


def _update_if_active(*names: str) -> Update:
    return (
        update(sessions)
        .where(sessions.c.id == bindparam("session_id"), sessions.c.status == SessionStatus.ACTIVE.value, _OWNED)
        .values({name: bindparam(f"set_{name}", type_=sessions.c[name].type) for name in names})
        .returning(*sessions.c)
    )


_SAVE_SOURCE_IF_NO_FILES = _update_if_active("source_code", "updated_at").where(sessions.c.files.is_(None))
_SAVE_IF_UNCHANGED = _update_if_active("source_code", "files", "updated_at").where(
    sessions.c.updated_at == bindparam("seen_updated_at")
)
_CLOSE = _update_if_active("status", "updated_at")
# What a session request runs: on PostgreSQL, each on the driver's cursor (common/db.py DriverStatement).
_HOT = (_BY_ID, _INSERT, _SAVE_SOURCE_IF_NO_FILES, _SAVE_IF_UNCHANGED, _CLOSE)


class SessionRepository:
    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name not in _UPSERT_INSERTS:
            raise ValueError(f"unsupported database dialect {engine.dialect.name!r}")
        self._engine = engine
        self._drivers: dict[Executable, DriverStatement] = (
            {statement: DriverStatement(statement, engine) for statement in _HOT}
            if engine.dialect.name == "postgresql"
            else {}
        )

    @property
    def engine(self) -> Engine:
        return self._engine

    def upsert_languages(self, catalogue: Iterable[reference.Language]) -> None:
        rows = [_language_row(language) for language in catalogue]
        insert = _UPSERT_INSERTS[self._engine.dialect.name](languages).values(rows)
        statement = insert.on_conflict_do_update(
            index_elements=[languages.c.id],
            set_={
                column.name: insert.excluded[column.name]
                for column in languages.c
                if column.name not in ("id", "version")
            },
        )
        with self._engine.begin() as connection:
            connection.execute(statement)

    def insert(self, record: SessionRecord) -> None:
        with writing(self._engine) as (connection, _):
            self._first(
                connection,
                _INSERT,
                {
                    "set_id": uuid.UUID(record.id),
                    "set_language_id": uuid.UUID(record.language_id),
                    "set_status": record.status.value,
                    "set_source_code": record.source_code,
                    "set_files": _files_json(record.files),
                    "set_created_at": record.created_at,
                    "set_updated_at": record.updated_at,
                    "set_tenant": record.tenant or None,
                },
            )

    def get(self, session_id: str, tenant: str) -> SessionRecord | None:
        """The session, if it is `tenant`'s."""
        with reading(self._engine) as connection:
            row = self._first(connection, _BY_ID, {"session_id": uuid.UUID(session_id), "owner_tenant": tenant})
        return None if row is None else _record(row)

    def save_source_if_no_files(
        self, session_id: str, tenant: str, source_code: str, now: datetime
    ) -> SessionRecord | None:
        """The updated session, or None when it is unknown, closed or has files (the WHERE makes this race-free)."""
        return self._update_if_active(
            _SAVE_SOURCE_IF_NO_FILES, session_id, tenant, set_source_code=source_code, set_updated_at=now
        )

    def save_if_unchanged(
        self,
        session_id: str,
        tenant: str,
        source_code: str,
        files: Sequence[SourceFile],
        seen: datetime,
        now: datetime,
    ) -> SessionRecord | None:
        """The updated session, or None when it is unknown, closed, or was written since it read `seen`."""
        return self._update_if_active(
            _SAVE_IF_UNCHANGED,
            session_id,
            tenant,
            seen_updated_at=seen,
            set_source_code=source_code,
            set_files=_files_json(files),
            set_updated_at=now,
        )

    def close_if_active(self, session_id: str, tenant: str, now: datetime) -> SessionRecord | None:
        """The closed session, or None when it is unknown or was already closed."""
        return self._update_if_active(
            _CLOSE, session_id, tenant, set_status=SessionStatus.INACTIVE.value, set_updated_at=now
        )

    def dispose(self) -> None:
        self._engine.dispose()

    def _update_if_active(
        self, statement: Update, session_id: str, tenant: str, **values: object
    ) -> SessionRecord | None:
        with writing(self._engine) as (connection, _):
            params = {"session_id": uuid.UUID(session_id), "owner_tenant": tenant, **values}
            row = self._first(connection, statement, params)
        return None if row is None else _record(row)

    def _first(self, connection: Connection, statement: Executable, params: dict[str, Any]) -> Any | None:
        """The first row `statement` returns, or None (no rows, or a statement that returns none)."""
        driver = self._drivers.get(statement)
        if driver is not None:
            return driver.first(connection, params)
        result = connection.execute(statement, params)
        return result.first() if result.returns_rows else None


def _language_row(language: reference.Language) -> dict[str, object]:
    return {
        "id": uuid.UUID(language.id),
        "name": language.name,
        "runtime": language.runtime,
        "version": "",
        "template_code": language.template_code,
        "file_name": language.file_name,
        "default_time_limit_ms": language.default_time_limit_ms,
        "default_memory_mb": language.default_memory_mb,
    }


def _record(row: Row[Any]) -> SessionRecord:
    return SessionRecord(
        id=str(row.id),
        language_id=str(row.language_id),
        status=SessionStatus(row.status),
        source_code=row.source_code,
        files=files_from_json(row.files),
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
        tenant=row.tenant or "",
    )


def _files_json(files: Sequence[SourceFile]) -> list[dict[str, str]] | None:
    return files_to_json(list(files)) or None


def _utc(moment: datetime) -> datetime:
    # SQLite keeps no zone and hands back naive datetimes; everything we store is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
