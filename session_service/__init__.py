"""session_service: sessions and the languages they are written in, over gRPC (lce.session.v1).

`build_servicer(database_url)` is the one way to wire it: the entry point (`python -m
session_service`), the contract tests and the integration harness all use it.
"""

from __future__ import annotations

from common.db import make_engine
from session_service.migrations import HISTORY
from session_service.repository import SessionRepository
from session_service.servicer import SERVICE_NAME, SessionServicer
from session_service.sessions import Catalogue, Sessions

__all__ = ["SERVICE_NAME", "SessionServicer", "build_servicer", "build_sessions"]


def build_sessions(database_url: str) -> Sessions:
    """Checks the schema (migrates the embedded SQLite file) and upserts the languages with the
    versions detected on this machine. Raises common.migrations.SchemaError on a schema it cannot run on."""
    repository = SessionRepository(make_engine(database_url))
    catalogue = Catalogue.detect()
    try:
        HISTORY.prepare(repository.engine)
        repository.upsert_languages(catalogue.languages)
    except BaseException:
        repository.dispose()
        raise
    return Sessions(repository, catalogue)


def build_servicer(database_url: str) -> SessionServicer:
    return SessionServicer(build_sessions(database_url))
