"""session_service: sessions and the languages they are written in, over gRPC (lce.session.v1).

`build_servicer(database_url, redis_url)` is the one way to wire it: the entry point (`python -m
session_service`), the contract tests and the integration harness all use it.
"""

from __future__ import annotations

from common import languages as reference
from common.db import make_engine
from session_service.migrations import HISTORY
from session_service.repository import SessionRepository
from session_service.servicer import SERVICE_NAME, SessionServicer
from session_service.sessions import Catalogue, Sessions
from session_service.toolchains import LiveToolchains

__all__ = ["SERVICE_NAME", "SessionServicer", "build_servicer", "build_sessions"]


def build_sessions(database_url: str, redis_url: str) -> Sessions:
    """Checks the schema (migrates the embedded SQLite file) and upserts the languages' reference rows;
    versions come from the executors' announcements in Redis (toolchains.py), read when asked for.
    Raises common.migrations.SchemaError on a schema it cannot run on."""
    repository = SessionRepository(make_engine(database_url))
    try:
        HISTORY.prepare(repository.engine)
        repository.upsert_languages(reference.LANGUAGES)
    except BaseException:
        repository.dispose()
        raise
    toolchains = LiveToolchains.from_url(redis_url)
    return Sessions(repository, Catalogue(toolchains.versions, toolchains.packages), on_dispose=toolchains.close)


def build_servicer(database_url: str, redis_url: str) -> SessionServicer:
    return SessionServicer(build_sessions(database_url, redis_url))
