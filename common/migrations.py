"""Each service's schema as an Alembic migration history: `python -m <service> migrate`, and the check at start.

A service that owns tables keeps its history in `<service>/migrations/versions/`, and records the
revision its database is at in a version table of its own (`<service>_alembic_version`), so both
services may share one PostgreSQL database. The rules:

- `migrate` upgrades to the newest revision (head), holding a lock while it does, so migrate runs
  started together (a Job retried, two operators) run one after the other and the later finds
  nothing to do. A database made before migrations (tables, no version table) is adopted by the
  first revision, which creates only what is missing and keeps every row.
- At start, a service on PostgreSQL changes nothing: it refuses a database that is not at head
  with one line saying what to run. On its embedded SQLite file (a service's own, never shared
  by replicas) it migrates the file itself. A revision this release does not know (a newer release
  migrated the database) is refused everywhere.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, MetaData

from common.db import make_engine

log = logging.getLogger(__name__)
# Alembic says which dialect it found each time it looks at a database (every start): upgrade() says what it did.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)


class SchemaError(RuntimeError):
    """The database's schema is not the one this release runs on; the message says what to do."""


@dataclass(frozen=True)
class History:
    service: str  # the package, as in `python -m <service> migrate`
    metadata: MetaData  # the tables as the code uses them: head must create exactly these
    root: Path = Path(__file__).resolve().parent.parent  # the source tree holding <service>/migrations

    @property
    def directory(self) -> Path:
        return self.root / self.service / "migrations"

    @property
    def version_table(self) -> str:
        return f"{self.service}_alembic_version"

    @property
    def script(self) -> ScriptDirectory:
        return ScriptDirectory(str(self.directory))

    @property
    def head(self) -> str:
        heads = self.script.get_heads()
        if len(heads) != 1:  # two revisions with the same parent: someone must order them
            raise SchemaError(f"{self.service}: the migration history has {len(heads)} heads, {heads}; it must be one")
        return heads[0]

    def owns(self, name: str | None, kind: str, _parents: Any) -> bool:
        """Alembic's include_name: only this service's tables, never the other's in a shared database."""
        return kind != "table" or name in self.metadata.tables

    def current(self, connection: Connection) -> str | None:
        """The revision the database is at; None before the first migrate (empty, or made by create_all)."""
        heads = MigrationContext.configure(connection, opts={"version_table": self.version_table}).get_current_heads()
        return heads[0] if heads else None

    def upgrade(self, engine: Engine) -> None:
        """Brings the database to head (nothing if it is there), in one transaction under the service's lock."""
        with engine.connect() as connection, connection.begin():
            _lock(connection, self.service)
            before = self.current(connection)
            self._refuse_unknown(before)
            command.upgrade(self._config(connection), "head")
            after = self.current(connection)
        if after != before:
            log.info("schema migrated", extra={"schema": self.service, "from": before, "to": after})

    def check(self, engine: Engine) -> None:
        """Raises SchemaError unless the database is at head."""
        with engine.connect() as connection:
            current = self.current(connection)
        self._refuse_unknown(current)
        if current != self.head:
            raise SchemaError(
                f"{self.service}: the database is at schema revision {current or 'none (never migrated)'} and this "
                f"release needs {self.head}: run `python -m {self.service} migrate` (same LCE_DATABASE_URL) first"
            )

    def prepare(self, engine: Engine) -> None:
        """At a service's start: its own SQLite file is migrated, a PostgreSQL database only checked."""
        if engine.dialect.name == "sqlite":
            self.upgrade(engine)
        else:
            self.check(engine)

    def new_revision(self, message: str) -> Path:
        """Writes the next revision: what the models have that head does not (autogenerated, to review)."""
        with tempfile.TemporaryDirectory() as scratch:
            engine = make_engine(f"sqlite:///{scratch}/head.db")
            try:
                self.upgrade(engine)
                with engine.connect() as connection:
                    number = len(list(self.script.walk_revisions())) + 1
                    config = self._config(connection)
                    _lint_after_writing(config)
                    script = command.revision(config, message, autogenerate=True, rev_id=f"{number:04d}")
            finally:
                engine.dispose()
        assert script is not None and not isinstance(script, list)
        return Path(script.path)

    def _refuse_unknown(self, current: str | None) -> None:
        if current is None:
            return
        try:
            self.script.get_revision(current)
        except CommandError:
            raise SchemaError(
                f"{self.service}: the database is at schema revision {current}, which this release does not know "
                "(a newer release migrated it): run that release or a newer one, or restore a backup from before it"
            ) from None

    def _config(self, connection: Connection) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.directory))
        config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
        config.attributes.update(history=self, connection=connection)
        return config


def run_env(context: EnvironmentContext) -> None:
    """The body of each history's env.py: Alembic runs it with the connection that History handed over."""
    history: History = context.config.attributes["history"]
    context.configure(
        connection=context.config.attributes["connection"],
        target_metadata=history.metadata,
        version_table=history.version_table,
        include_name=history.owns,
        # SQLite alters a table by copying it: a later revision's op.batch_alter_table does that there.
        render_as_batch=True,
    )
    context.run_migrations()


def _lint_after_writing(config: Config) -> None:
    """The written revision passes `make test`'s lint as it is: ruff fixes its imports and formats it."""
    hooks = {"fix": "check --fix --quiet REVISION_SCRIPT_FILENAME", "format": "format REVISION_SCRIPT_FILENAME"}
    config.set_section_option("post_write_hooks", "hooks", " ".join(hooks))
    for name, options in hooks.items():
        config.set_section_option("post_write_hooks", f"{name}.type", "module")
        config.set_section_option("post_write_hooks", f"{name}.module", "ruff")
        config.set_section_option("post_write_hooks", f"{name}.options", options)


def _lock(connection: Connection, service: str) -> None:
    """Held until the transaction ends: a second migrate of the same service waits, then finds head."""
    if connection.dialect.name == "postgresql":
        # Building an index on a large table may take longer than a request's statement may, and
        # the lock is waited for as long as the migrate before this one takes.
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        connection.exec_driver_sql("SET LOCAL lock_timeout = 0")
        key = zlib.crc32(f"lce-migrate:{service}".encode())
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({key})")
    else:
        # SQLite's DDL is transactional; IMMEDIATE takes the file's write lock before anything is read.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def main(history: History, argv: list[str], database_url: Callable[[], str]) -> int:
    """`python -m <service> migrate|current|revision`: the commands that act on a service's schema."""
    parser = argparse.ArgumentParser(prog=f"python -m {history.service}", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="upgrade the database (LCE_DATABASE_URL, or the SQLite default) to head")
    commands.add_parser("current", help="print the revision the database is at, and head")
    revision = commands.add_parser("revision", help="for developers: write the next migration from the models")
    revision.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)
    if args.command == "revision":
        print(history.new_revision(args.message))
        return 0
    engine = make_engine(database_url())
    try:
        if args.command == "migrate":
            history.upgrade(engine)
        with engine.connect() as connection:
            current = history.current(connection)
    except SchemaError as err:
        log.error("%s", err)
        return 2
    finally:
        engine.dispose()
    print(f"{history.service}: at {current or 'none'}, head {history.head}")
    return 0
