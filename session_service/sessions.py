"""The rules of sessions, and the catalogue of languages they are written in.

A session is ACTIVE from creation until closed, then INACTIVE for good: autosave on a
closed session is refused, closing it again answers the closed session. Languages are
reference data from common.languages, with versions detected once at startup and served
from memory, so reading a session costs one primary-key query.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from common import languages as reference
from common.errors import InvalidArgument, NotFound, PayloadTooLarge, SessionClosed
from common.ids import parse_uuid
from session_service.models import SessionStatus

if TYPE_CHECKING:
    from session_service.repository import SessionRepository

MAX_SOURCE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class LanguageInfo:
    id: str
    name: str
    runtime: str
    version: str
    template_code: str
    file_name: str
    default_time_limit_ms: int
    default_memory_mb: int

    @classmethod
    def detected(cls, language: reference.Language) -> LanguageInfo:
        """The language as this machine has it: its reference data plus the installed toolchain's version."""
        return cls(
            id=language.id,
            name=language.name,
            runtime=language.runtime,
            version=reference.detect_version(language),
            template_code=language.template_code,
            file_name=language.file_name,
            default_time_limit_ms=language.default_time_limit_ms,
            default_memory_mb=language.default_memory_mb,
        )


@dataclass(frozen=True)
class SessionRecord:
    """A session as stored: its language by id only."""

    id: str
    language_id: str
    status: SessionStatus
    source_code: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Session:
    id: str
    status: SessionStatus
    language: LanguageInfo
    source_code: str
    created_at: datetime
    updated_at: datetime


def check_source(source_code: str) -> None:
    if len(source_code.encode("utf-8")) > MAX_SOURCE_BYTES:
        raise PayloadTooLarge(f"source_code must be at most {MAX_SOURCE_BYTES} bytes of UTF-8")
    # PostgreSQL text cannot hold NUL; refusing it here keeps both databases answering the same.
    if "\x00" in source_code:
        raise InvalidArgument("source_code must not contain NUL characters")


class Catalogue:
    """The languages, in the order of common.languages."""

    def __init__(self, languages: Iterable[LanguageInfo]) -> None:
        self.languages = tuple(languages)
        self._by_id = {language.id: language for language in self.languages}

    @classmethod
    def detect(cls) -> Catalogue:
        return cls(LanguageInfo.detected(language) for language in reference.LANGUAGES)

    def get(self, language_id: str) -> LanguageInfo:
        language = self._by_id.get(parse_uuid(language_id, "language_id"))
        if language is None:
            raise NotFound(f"language {language_id} not found")
        return language


class Sessions:
    def __init__(self, repository: SessionRepository, catalogue: Catalogue) -> None:
        self._repository = repository
        self.catalogue = catalogue

    def create(self, language_id: str, source_code: str | None = None) -> Session:
        language = self.catalogue.get(language_id)
        source = language.template_code if source_code is None else source_code
        check_source(source)
        now = datetime.now(UTC)
        record = SessionRecord(
            id=str(uuid.uuid4()),
            language_id=language.id,
            status=SessionStatus.ACTIVE,
            source_code=source,
            created_at=now,
            updated_at=now,
        )
        self._repository.insert(record)
        return self._session(record)

    def get(self, session_id: str) -> Session:
        return self._session(self._existing(parse_uuid(session_id, "session_id")))

    def update_source(self, session_id: str, source_code: str) -> Session:
        canonical_id = parse_uuid(session_id, "session_id")
        check_source(source_code)
        record = self._repository.update_source_if_active(canonical_id, source_code, datetime.now(UTC))
        if record is None:
            # Nothing updated: tell an unknown session from a closed one.
            self._existing(canonical_id)
            raise SessionClosed(f"session {canonical_id} is closed")
        return self._session(record)

    def close(self, session_id: str) -> Session:
        canonical_id = parse_uuid(session_id, "session_id")
        record = self._repository.close_if_active(canonical_id, datetime.now(UTC))
        # Nothing closed: unknown (NotFound), or closed before, which is the answer itself.
        return self._session(record or self._existing(canonical_id))

    def dispose(self) -> None:
        self._repository.dispose()

    def _existing(self, session_id: str) -> SessionRecord:
        record = self._repository.get(session_id)
        if record is None:
            raise NotFound(f"session {session_id} not found")
        return record

    def _session(self, record: SessionRecord) -> Session:
        return Session(
            id=record.id,
            status=record.status,
            # Ids are stable and languages never leave the table, so every stored language_id is here.
            language=self.catalogue.get(record.language_id),
            source_code=record.source_code,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )
