"""common.db.DriverStatement on the test PostgreSQL: the same rows as SQLAlchemy's execute, SQLAlchemy's
errors, and a pool that recovers from a lost server as SQLAlchemy's own would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, bindparam, select, text

from common.db import DriverStatement, make_engine, reading, writing
from common.languages import LANGUAGES
from session_service.models import sessions
from session_service.repository import _BY_ID, _INSERT, _SAVE_SOURCE_IF_NO_FILES, SessionRepository
from tests.conftest import ADMIN_URL

PYTHON_ID = next(language.id for language in LANGUAGES if language.name == "python")


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    SessionRepository(engine).upsert_languages(LANGUAGES)  # the rows sessions point at
    yield engine
    engine.dispose()


def insert_session(engine: Engine, files: list[dict[str, str]] | None) -> uuid.UUID:
    session_id = uuid.uuid4()
    now = datetime.now(UTC)
    values = {
        "set_id": session_id,
        "set_language_id": uuid.UUID(PYTHON_ID),
        "set_status": "ACTIVE",
        "set_source_code": "print(1)\n",
        "set_files": files,
        "set_created_at": now,
        "set_updated_at": now,
        "set_tenant": "acme",
    }
    with writing(engine) as (connection, _):
        assert DriverStatement(_INSERT, engine).first(connection, values) is None  # returns no rows
    return session_id


@pytest.mark.parametrize("files", [None, [{"name": "lib/util.py", "content": "X = 1\n"}]])
def test_rows_are_those_sqlalchemy_reads(engine: Engine, files: list[dict[str, str]] | None) -> None:
    session_id = insert_session(engine, files)
    params = {"session_id": session_id, "owner_tenant": "acme"}
    with reading(engine) as connection:
        ours = DriverStatement(_BY_ID, engine).first(connection, params)
        theirs = connection.execute(_BY_ID, params).first()
    assert theirs is not None and ours is not None
    assert tuple(ours) == tuple(theirs)
    assert ours.files == files and ours.tenant == "acme"


def test_a_write_is_committed_when_it_returns(engine: Engine, postgres_url: str) -> None:
    """An acknowledged autosave must outlive the service: another connection sees it at once."""
    session_id = insert_session(engine, None)
    update = _SAVE_SOURCE_IF_NO_FILES
    params = {
        "session_id": session_id,
        "owner_tenant": "acme",
        "set_source_code": "print(2)\n",
        "set_updated_at": datetime.now(UTC),
    }
    with writing(engine) as (connection, _):
        saved = DriverStatement(update, engine).first(connection, params)
        assert saved is not None and saved.source_code == "print(2)\n"
        with psycopg.connect(postgres_url.replace("+psycopg", "")) as other:
            seen = other.execute("SELECT source_code FROM sessions WHERE id = %s", (session_id,)).fetchone()
    assert seen == ("print(2)\n",)


def test_no_row_is_none(engine: Engine) -> None:
    with reading(engine) as connection:
        found = DriverStatement(_BY_ID, engine).first(connection, {"session_id": uuid.uuid4(), "owner_tenant": ""})
    assert found is None


def test_a_statement_error_leaves_as_sqlalchemys(engine: Engine) -> None:
    statement = select(sessions.c.id).where(sessions.c.id == bindparam("session_id"))
    with reading(engine) as connection, pytest.raises(sqlalchemy.exc.DataError):
        DriverStatement(statement, engine).first(connection, {"session_id": "not a uuid"})


def test_a_lost_server_is_an_operational_error_and_the_pool_recovers(engine: Engine) -> None:
    statement = DriverStatement(_BY_ID, engine)
    params = {"session_id": uuid.uuid4(), "owner_tenant": ""}
    with reading(engine) as first, reading(engine) as second:  # two pooled connections, both to be lost
        pids = [c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in (first, second)]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
    with reading(engine) as connection, pytest.raises(sqlalchemy.exc.OperationalError) as lost:
        statement.first(connection, params)
    assert lost.value.connection_invalidated
    # What the pool held went with the server: the next statement runs on a fresh connection.
    with reading(engine) as connection:
        assert statement.first(connection, params) is None


def test_only_psycopg_engines(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    try:
        with pytest.raises(ValueError, match="psycopg"):
            DriverStatement(_BY_ID, engine)
    finally:
        engine.dispose()
