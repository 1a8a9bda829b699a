"""The rules of sessions, and the catalogue of languages they are written in.

A session is ACTIVE from creation until closed, then INACTIVE for good: autosave on a
closed session is refused, closing it again answers the closed session. Its program is
source_code (the language's main file) plus up to 32 other files. Languages are
reference data from common.languages; their versions are those live executors serve
(toolchains.py), kept in memory, so reading a session costs one primary-key query.
"""

from __future__ import annotations

import string
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from common import languages as reference
from common.errors import InvalidArgument, NotFound, PayloadTooLarge, SessionClosed, Unavailable
from common.ids import parse_uuid
from common.job import SourceFile
from session_service.models import SessionStatus

if TYPE_CHECKING:
    from session_service.repository import SessionRepository

# Of source_code alone, and of source_code and every file's content together.
MAX_SOURCE_BYTES = 1024 * 1024
MAX_FILES = 32
MAX_FILE_NAME_CHARS = 255
_FILE_NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_.-/")
# An autosave that reads the row first writes only if nobody wrote in between, and else reads again.
_SAVE_ATTEMPTS = 5
# A language's version while no live executor serves it (what a missing toolchain always answered).
UNAVAILABLE = "unavailable"


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
    # What live executors serve it with, the most common first; version is the first, or UNAVAILABLE.
    versions: tuple[str, ...] = ()
    packages: tuple[tuple[str, str], ...] = ()  # the libraries its runs may use: (name, version)

    @property
    def available(self) -> bool:
        return bool(self.versions)

    @classmethod
    def served(
        cls, language: reference.Language, versions: tuple[str, ...], packages: Mapping[str, str] | None = None
    ) -> LanguageInfo:
        """The language's reference data with the versions live executors serve it with."""
        return cls(
            id=language.id,
            name=language.name,
            runtime=language.runtime,
            version=versions[0] if versions else UNAVAILABLE,
            template_code=language.template_code,
            file_name=language.file_name,
            default_time_limit_ms=language.default_time_limit_ms,
            default_memory_mb=language.default_memory_mb,
            versions=versions,
            packages=tuple(sorted((packages or {}).items())),
        )


@dataclass(frozen=True)
class SessionRecord:
    """A session as stored: its language by id only."""

    id: str
    language_id: str
    status: SessionStatus
    source_code: str
    files: tuple[SourceFile, ...]
    created_at: datetime
    updated_at: datetime
    tenant: str = ""  # "" without API keys


@dataclass(frozen=True)
class Session:
    id: str
    status: SessionStatus
    language: LanguageInfo
    source_code: str
    files: tuple[SourceFile, ...]
    created_at: datetime
    updated_at: datetime


def check_source(source_code: str) -> None:
    if len(source_code.encode("utf-8")) > MAX_SOURCE_BYTES:
        raise PayloadTooLarge(f"source_code must be at most {MAX_SOURCE_BYTES} bytes of UTF-8")
    # PostgreSQL text cannot hold NUL; refusing it here keeps both databases answering the same.
    if "\x00" in source_code:
        raise InvalidArgument("source_code must not contain NUL characters")


def check_files(files: Sequence[SourceFile], main_file: str, source_code: str) -> None:
    """The rules of a session's files, and the size of the whole program: source_code plus every file.

    Each check is one pass over its text (a character set, a split), never a regular expression."""
    if len(files) > MAX_FILES:
        raise InvalidArgument(f"files must be at most {MAX_FILES}")
    names: set[str] = set()
    # Folders as nested dicts, a file as None: "lib" and "lib/x.py" cannot both be files.
    tree: dict[str, Any] = {main_file: None}
    total_bytes = len(source_code.encode("utf-8"))
    for index, file in enumerate(files):
        field = f"files[{index}]"
        _check_file_name(file.name, field, main_file)
        if file.name in names:
            raise InvalidArgument(f"{field}.name {file.name!r} is given twice")
        names.add(file.name)
        if not _place(tree, file.name.split("/")):
            raise InvalidArgument(f"{field}.name {file.name!r} makes a file's name a folder, or a folder's a file")
        if "\x00" in file.content:
            raise InvalidArgument(f"{field}.content must not contain NUL characters")
        total_bytes += len(file.content.encode("utf-8"))
    if total_bytes > MAX_SOURCE_BYTES:
        raise PayloadTooLarge(f"source_code and files must be at most {MAX_SOURCE_BYTES} bytes of UTF-8 together")


def _check_file_name(name: str, field: str, main_file: str) -> None:
    if not 0 < len(name) <= MAX_FILE_NAME_CHARS:
        raise InvalidArgument(f"{field}.name must be 1 to {MAX_FILE_NAME_CHARS} characters")
    if not _FILE_NAME_CHARACTERS.issuperset(name):
        raise InvalidArgument(f"{field}.name may hold only ASCII letters, digits, '_', '.', '-' and '/'")
    if any(segment in ("", ".", "..") for segment in name.split("/")):
        raise InvalidArgument(f"{field}.name must be a relative path without empty, '.' or '..' segments")
    if name.startswith("-"):  # a compiler would read it as an option
        raise InvalidArgument(f"{field}.name must not start with '-'")
    if name == main_file:
        raise InvalidArgument(f"{field}.name must not be {main_file}, the language's main file")


def _place(tree: dict[str, Any], segments: list[str]) -> bool:
    """Adds the file at `segments` to `tree`; False when a file stands where a folder must, or the reverse."""
    for folder in segments[:-1]:
        tree = tree.setdefault(folder, {})
        if tree is None:
            return False
    if segments[-1] in tree:
        return False
    tree[segments[-1]] = None
    return True


class Catalogue:
    """The languages, in the order of common.languages, with the versions `served` gives (language
    name -> versions, the most common first: toolchains.LiveToolchains.versions)."""

    def __init__(
        self,
        served: Callable[[], Mapping[str, tuple[str, ...]]],
        packages: Callable[[], Mapping[str, Mapping[str, str]]] = dict,
    ) -> None:
        self.served = served
        self.packages = packages
        # The LanguageInfos of the last mappings `served` and `packages` gave (held, so compared by
        # identity): a session answer builds none while they stand (toolchains.py replaces them).
        self._made: tuple[object, object, dict[str, LanguageInfo]] | None = None

    @property
    def languages(self) -> tuple[LanguageInfo, ...]:
        return tuple(self._current().values())

    def get(self, language_id: str) -> LanguageInfo:
        language = self._current().get(parse_uuid(language_id, "language_id"))
        if language is None:
            raise NotFound(f"language {language_id} not found")
        return language

    def _current(self) -> dict[str, LanguageInfo]:
        """Language id -> LanguageInfo, in the order of common.languages."""
        served, packages, made = self.served(), self.packages(), self._made
        if made is None or made[0] is not served or made[1] is not packages:
            infos = {
                language.id: LanguageInfo.served(language, served.get(language.name, ()), packages.get(language.name))
                for language in reference.LANGUAGES
            }
            made = self._made = (served, packages, infos)
        return made[2]


class Sessions:
    def __init__(
        self, repository: SessionRepository, catalogue: Catalogue, on_dispose: Callable[[], None] = lambda: None
    ) -> None:
        self._repository = repository
        self.catalogue = catalogue
        self._on_dispose = on_dispose

    def create(
        self, language_id: str, source_code: str | None = None, files: Sequence[SourceFile] = (), tenant: str = ""
    ) -> Session:
        language = self.catalogue.get(language_id)
        source = language.template_code if source_code is None else source_code
        check_source(source)
        check_files(files, language.file_name, source)
        now = datetime.now(UTC)
        record = SessionRecord(
            id=str(uuid.uuid4()),
            language_id=language.id,
            status=SessionStatus.ACTIVE,
            source_code=source,
            files=tuple(files),
            created_at=now,
            updated_at=now,
            tenant=tenant,
        )
        self._repository.insert(record)
        return self._session(record)

    def get(self, session_id: str, tenant: str = "") -> Session:
        """The session; NotFound for an unknown one or another tenant's."""
        return self._session(self._existing(parse_uuid(session_id, "session_id"), tenant))

    def update_source(
        self, session_id: str, source_code: str | None, files: Sequence[SourceFile] | None = None, tenant: str = ""
    ) -> Session:
        """Replaces the source, the whole set of files, or both; None leaves that part as it is."""
        canonical_id = parse_uuid(session_id, "session_id")
        if source_code is not None:
            check_source(source_code)
            if files is None:
                # Autosave of a session without files: the source's own check is all, so no read.
                record = self._repository.save_source_if_no_files(canonical_id, tenant, source_code, datetime.now(UTC))
                if record is not None:
                    return self._session(record)
        elif files is None:
            raise InvalidArgument("an update needs source_code, files or both")
        # Files have rules that need the session's language, and their size counts with the source:
        # read, check what the session would become, and write it only if nobody wrote in between.
        for _ in range(_SAVE_ATTEMPTS):
            current = self._existing(canonical_id, tenant)
            if current.status is not SessionStatus.ACTIVE:
                raise SessionClosed(f"session {canonical_id} is closed")
            source = current.source_code if source_code is None else source_code
            new_files = current.files if files is None else tuple(files)
            check_files(new_files, self.catalogue.get(current.language_id).file_name, source)
            # Strictly later than what was read, so that the write always changes what the next one compares.
            now = max(datetime.now(UTC), current.updated_at + timedelta(microseconds=1))
            record = self._repository.save_if_unchanged(
                canonical_id, tenant, source, new_files, current.updated_at, now
            )
            if record is not None:
                return self._session(record)
        raise Unavailable(f"session {canonical_id} kept changing while being saved; try again")

    def close(self, session_id: str, tenant: str = "") -> Session:
        canonical_id = parse_uuid(session_id, "session_id")
        record = self._repository.close_if_active(canonical_id, tenant, datetime.now(UTC))
        # Nothing closed: unknown (NotFound), or closed before, which is the answer itself.
        return self._session(record or self._existing(canonical_id, tenant))

    def dispose(self) -> None:
        self._repository.dispose()
        self._on_dispose()

    def _existing(self, session_id: str, tenant: str) -> SessionRecord:
        record = self._repository.get(session_id, tenant)
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
            files=record.files,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )
