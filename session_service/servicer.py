"""The gRPC adapter of lce.session.v1.SessionService: proto in, domain call, proto out."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from common.job import SourceFile
from common.tenancy import caller_from_metadata
from lce.session.v1 import session_pb2, session_pb2_grpc
from session_service.models import SessionStatus
from session_service.sessions import LanguageInfo, Session, Sessions

SERVICE_NAME = "lce.session.v1.SessionService"

_STATUSES = {
    SessionStatus.ACTIVE: session_pb2.SESSION_STATUS_ACTIVE,
    SessionStatus.INACTIVE: session_pb2.SESSION_STATUS_INACTIVE,
}


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def register(self, server: grpc.Server) -> None:
        session_pb2_grpc.add_SessionServiceServicer_to_server(self, server)

    def close(self) -> None:
        """Releases the database connections; call once the server has stopped."""
        self._sessions.dispose()

    def ListLanguages(
        self, request: session_pb2.ListLanguagesRequest, context: grpc.ServicerContext
    ) -> session_pb2.ListLanguagesResponse:
        return session_pb2.ListLanguagesResponse(
            languages=[_language(language) for language in self._sessions.catalogue.languages]
        )

    def GetLanguage(
        self, request: session_pb2.GetLanguageRequest, context: grpc.ServicerContext
    ) -> session_pb2.GetLanguageResponse:
        return session_pb2.GetLanguageResponse(language=_language(self._sessions.catalogue.get(request.language_id)))

    def CreateSession(
        self, request: session_pb2.CreateSessionRequest, context: grpc.ServicerContext
    ) -> session_pb2.CreateSessionResponse:
        source_code = request.source_code if request.HasField("source_code") else None
        session = self._sessions.create(request.language_id, source_code, _files(request.files), _tenant(context))
        return session_pb2.CreateSessionResponse(session=_session(session))

    def GetSession(
        self, request: session_pb2.GetSessionRequest, context: grpc.ServicerContext
    ) -> session_pb2.GetSessionResponse:
        session = self._sessions.get(request.session_id, _tenant(context))
        return session_pb2.GetSessionResponse(session=_session(session))

    def UpdateSource(
        self, request: session_pb2.UpdateSourceRequest, context: grpc.ServicerContext
    ) -> session_pb2.UpdateSourceResponse:
        source_code = request.source_code if request.HasField("source_code") else None
        files = _files(request.file_set.files) if request.HasField("file_set") else None
        session = self._sessions.update_source(request.session_id, source_code, files, _tenant(context))
        return session_pb2.UpdateSourceResponse(session=_session(session))

    def CloseSession(
        self, request: session_pb2.CloseSessionRequest, context: grpc.ServicerContext
    ) -> session_pb2.CloseSessionResponse:
        session = self._sessions.close(request.session_id, _tenant(context))
        return session_pb2.CloseSessionResponse(session=_session(session))


def _tenant(context: grpc.ServicerContext) -> str:
    """The tenant the caller names (common/tenancy.py): the gateway, or execution_service for a run."""
    return caller_from_metadata(context.invocation_metadata()).tenant


# Every session answer carries its language: the same few messages, built once each. Kept messages are
# never changed in place; a response built with one holds a copy. A language's versions changing makes
# another LanguageInfo, hence another entry, and the old one ages out.
@lru_cache(maxsize=64)
def _language(language: LanguageInfo) -> session_pb2.Language:
    return session_pb2.Language(
        id=language.id,
        name=language.name,
        runtime=language.runtime,
        version=language.version,
        template_code=language.template_code,
        file_name=language.file_name,
        default_time_limit_ms=language.default_time_limit_ms,
        default_memory_mb=language.default_memory_mb,
        versions=language.versions,
        available=language.available,
        packages=[session_pb2.Package(name=name, version=version) for name, version in language.packages],
    )


def _files(files: Iterable[session_pb2.SourceFile]) -> tuple[SourceFile, ...]:
    return tuple(SourceFile(name=file.name, content=file.content) for file in files)


def _session(session: Session) -> session_pb2.Session:
    created_at, updated_at = Timestamp(), Timestamp()
    created_at.FromDatetime(session.created_at)
    updated_at.FromDatetime(session.updated_at)
    return session_pb2.Session(
        id=session.id,
        status=_STATUSES[session.status],
        language=_language(session.language),
        source_code=session.source_code,
        files=[session_pb2.SourceFile(name=file.name, content=file.content) for file in session.files],
        created_at=created_at,
        updated_at=updated_at,
    )
