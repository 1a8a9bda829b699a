"""Each service's migration history (common/migrations.py), on PostgreSQL and SQLite: head is the
models' schema, a database made before migrations is adopted with every row, `migrate` is idempotent
and safe to run concurrently, and a service refuses a schema it cannot run on, saying what to run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, Table, text

from common.db import make_engine
from common.migrations import History, SchemaError
from execution_service.migrations import HISTORY as EXECUTION
from session_service.migrations import HISTORY as SESSION
from tests.conftest import REPO_ROOT, fresh_database

HISTORIES = (SESSION, EXECUTION)


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: the two services share it, as they may share one PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lce.db'}"
        return
    with fresh_database("lce_migrations") as url:
        yield url


@pytest.fixture
def engine(database: str) -> Iterator[Engine]:
    engine = make_engine(database)
    yield engine
    engine.dispose()


def differences(engine: Engine, history: History) -> list[Any]:
    """What the database lacks or has more than the models, as Alembic's autogenerate sees it."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"include_name": history.owns, "version_table": history.version_table, "compare_type": True},
        )
        return list(compare_metadata(context, history.metadata))


def test_head_is_exactly_the_models_schema(engine: Engine) -> None:
    """A model changed without a migration fails here."""
    for history in HISTORIES:
        history.upgrade(engine)
    for history in HISTORIES:
        assert differences(engine, history) == []
        with engine.connect() as connection:
            assert history.current(connection) == history.head
    with engine.begin() as connection:  # what a model's new index without a migration looks like
        connection.execute(text("DROP INDEX ix_executions_status_lease"))
    assert [difference[0] for difference in differences(engine, EXECUTION)] == ["add_index"]
    names = set(sqlalchemy.inspect(engine).get_table_names())
    assert names == {*SESSION.metadata.tables, *EXECUTION.metadata.tables, *(h.version_table for h in HISTORIES)}


# --- a database made before migrations ---


def sample_row(table: Table, n: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """A row with every column set, each to a value of its type (n makes them differ between rows)."""
    row: dict[str, Any] = {}
    for column in table.columns:
        kind = column.type
        if isinstance(kind, sqlalchemy.Uuid):
            value: Any = uuid.uuid4() if kind.as_uuid else str(uuid.uuid4())
        elif isinstance(kind, sqlalchemy.Boolean):
            value = n % 2 == 0
        elif isinstance(kind, sqlalchemy.Integer):
            value = 1000 + n
        elif isinstance(kind, sqlalchemy.DateTime | sqlalchemy.types.TypeDecorator):
            value = datetime(2026, 1, 2, 3, 4, 5, n, tzinfo=UTC)
        elif isinstance(kind, sqlalchemy.JSON):
            value = {"n": n, "list": [1, "two"]}
        elif isinstance(kind, sqlalchemy.LargeBinary):
            value = bytes([0, 255, n])
        else:
            value = f"{column.name}-{n}"[: getattr(kind, "length", None) or 64]
        row[column.name] = value
    return row | {name: value for name, value in overrides.items() if name in table.columns}


def fill_every_table(engine: Engine, skip: dict[str, set[str]]) -> None:
    """Two rows in every table of both services, as today's code writes them (minus `skip`'s columns)."""
    language_ids = [uuid.uuid4(), uuid.uuid4()]
    with engine.begin() as connection:
        for metadata in (SESSION.metadata, EXECUTION.metadata):
            for table in metadata.sorted_tables:
                for n in range(2):
                    overrides = {"status": "ACTIVE", "language_id": language_ids[n]}
                    if table.name == "languages":
                        overrides["id"] = language_ids[n]
                    row = sample_row(table, n, overrides)
                    for column in skip.get(table.name, set()):
                        del row[column]
                    connection.execute(table.insert().values(row))


def every_row(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, of the columns the database has (read as it has them)."""
    rows = {}
    with engine.connect() as connection:
        for name in (*SESSION.metadata.tables, *EXECUTION.metadata.tables):
            table = Table(name, MetaData(), autoload_with=connection)
            result = connection.execute(table.select().order_by(*table.primary_key.columns))
            rows[name] = [dict(row) for row in result.mappings()]
    return rows


def baseline(history: History) -> MetaData:
    """The schema as it stood when migrations began, as the first revision writes it out."""
    schema: MetaData = history.script.get_revision("0001").module._schema
    return schema


def made_before_migrations(engine: Engine) -> None:
    """The tables as every release before migrations made them at start: create_all of the models then."""
    for history in HISTORIES:
        baseline(history).create_all(engine)


def added_since_migrations_began() -> dict[str, set[str]]:
    """The columns later revisions added, by table."""
    added = {}
    for history in HISTORIES:
        then = baseline(history).tables
        for table in history.metadata.sorted_tables:
            new = {c.name for c in table.columns} - {c.name for c in then[table.name].columns}
            if new:
                added[table.name] = new
    return added


def assert_every_row_kept(
    before: dict[str, list[dict[str, Any]]], missing: dict[str, set[str]], engine: Engine
) -> None:
    """The rows are as they were, and the columns they did not have read as NULL."""
    after = every_row(engine)
    for table, rows in before.items():
        kept = [{k: v for k, v in row.items() if k not in missing.get(table, set())} for row in after[table]]
        assert kept == rows
        assert all(row[column] is None for row in after[table] for column in missing.get(table, set()))


def test_a_database_made_by_create_all_is_adopted_with_every_row(engine: Engine) -> None:
    made_before_migrations(engine)
    added = added_since_migrations_began()
    fill_every_table(engine, skip=added)
    before = every_row(engine)
    assert all(len(rows) == 2 for rows in before.values())
    with pytest.raises(SchemaError, match="none"):
        EXECUTION.check(engine)
    for history in HISTORIES:
        history.upgrade(engine)
        history.check(engine)
        assert differences(engine, history) == []
    assert_every_row_kept(before, added, engine)


def test_a_database_of_an_older_release_gets_what_later_releases_added(engine: Engine) -> None:
    """Releases before migrations added nullable columns and indexes at start: the first revision adds
    those an older database lacks, and rows written before read them as NULL."""
    made_before_migrations(engine)
    dropped = {"sessions": {"files", "tenant"}, "executions": {"encoding", "suite", "api_key_id"}}
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_executions_api_key_status"))
        connection.execute(text("DROP INDEX ix_executions_session_finished"))
        for table, columns in dropped.items():
            for column in columns:
                connection.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    added = added_since_migrations_began()
    missing = {table: dropped.get(table, set()) | added.get(table, set()) for table in {*dropped, *added}}
    fill_every_table(engine, skip=missing)
    before = every_row(engine)
    for history in HISTORIES:
        history.upgrade(engine)
        assert differences(engine, history) == []
    assert_every_row_kept(before, missing, engine)


# --- the commands and the refusals ---


def lce(module: str, *args: str, database: str) -> subprocess.CompletedProcess[str]:
    """`python -m <module> ...` as an operator runs it (the service alone, or one of its commands)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LCE_")}
    env["LCE_DATABASE_URL"] = database
    # execution_service's config needs a Redis and a session_service address; nothing is reached before the check.
    env["LCE_REDIS_URL"] = "redis://127.0.0.1:9/0"
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("history", HISTORIES, ids=lambda h: h.service)
def test_migrate_is_idempotent(history: History, database: str, engine: Engine) -> None:
    for _ in range(2):
        done = lce(history.service, "migrate", database=database)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"{history.service}: at {history.head}, head {history.head}\n"
    with engine.connect() as connection:
        versions = connection.execute(text(f"SELECT version_num FROM {history.version_table}")).scalars().all()
    assert versions == [history.head]
    assert differences(engine, history) == []


def refusal(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a refusing service logs, with exit status 2."""
    assert done.returncode == 2, done.stderr
    errors = [json.loads(line) for line in done.stderr.splitlines() if '"level": "error"' in line]
    assert len(errors) == 1, done.stderr
    return str(errors[0]["msg"])


@pytest.mark.parametrize("history", HISTORIES, ids=lambda h: h.service)
def test_a_service_refuses_a_database_of_an_unknown_revision(history: History, database: str, engine: Engine) -> None:
    history.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {history.version_table} SET version_num = 'f00d'"))
    line = refusal(lce(history.service, database=database))
    assert line.startswith(f"{history.service}: the database is at schema revision f00d, which this release does not")
    assert refusal(lce(history.service, "migrate", database=database)) == line
    with engine.connect() as connection:
        assert history.current(connection) == "f00d"


@pytest.mark.parametrize("history", HISTORIES, ids=lambda h: h.service)
def test_a_service_on_postgresql_refuses_a_database_never_migrated(history: History) -> None:
    with fresh_database("lce_unmigrated") as database:
        line = refusal(lce(history.service, database=database))
        engine = make_engine(database)
        try:
            assert sqlalchemy.inspect(engine).get_table_names() == []  # it changed nothing
        finally:
            engine.dispose()
    assert line == (
        f"{history.service}: the database is at schema revision none (never migrated) and this release needs "
        f"{history.head}: run `python -m {history.service} migrate` (same LCE_DATABASE_URL) first"
    )


def test_a_service_migrates_its_own_sqlite_file_at_start(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'own.db'}")
    try:
        SESSION.prepare(engine)
        assert differences(engine, SESSION) == []
    finally:
        engine.dispose()


def test_migrates_started_together_run_one_after_the_other() -> None:
    """Replicas of a Job, or two operators: each migrate waits for the one before and finds head."""
    with fresh_database("lce_migrate_race") as database:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LCE_")} | {"LCE_DATABASE_URL": database}
        script = " && ".join(f"python -m {h.service} migrate" for h in HISTORIES)
        racers = [
            subprocess.Popen(["sh", "-c", script.replace("python", sys.executable)], cwd=REPO_ROOT, env=env)
            for _ in range(4)
        ]
        assert [racer.wait(60) for racer in racers] == [0] * 4
        engine = make_engine(database)
        try:
            for history in HISTORIES:
                assert differences(engine, history) == []
        finally:
            engine.dispose()


def test_a_new_revision_is_written_from_what_the_models_added(tmp_path: Path) -> None:
    """`python -m <service> revision -m ...` autogenerates the next migration against head."""
    shutil.copytree(SESSION.directory, tmp_path / "session_service" / "migrations")
    metadata = MetaData()
    for table in SESSION.metadata.tables.values():
        table.to_metadata(metadata)
    metadata.tables["sessions"].append_column(sqlalchemy.Column("title", sqlalchemy.Text))
    path = History("session_service", metadata, root=tmp_path).new_revision("sessions get a title")
    assert path == tmp_path / "session_service" / "migrations" / "versions" / "0002_sessions_get_a_title.py"
    written = path.read_text()
    assert 'down_revision = "0001"' in written and 'sa.Column("title", sa.Text()' in written
    lint = [sys.executable, "-m", "ruff"]
    assert subprocess.run([*lint, "check", "-q", str(path)]).returncode == 0
    assert subprocess.run([*lint, "format", "--check", "-q", str(path)]).returncode == 0
