"""execution_service's view of SessionService: one reused channel, domain errors out."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from common import grpc_client
from common.config import GrpcSecurity
from common.errors import NotFound, Unavailable
from common.job import SourceFile
from common.tenancy import Caller
from lce.session.v1 import session_pb2, session_pb2_grpc

_PEER_DOWN = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@dataclass(frozen=True)
class SessionSnapshot:
    """What a run needs from its session, as it is at this moment."""

    id: str
    active: bool
    language: str
    source_code: str
    files: tuple[SourceFile, ...]
    default_time_limit_ms: int
    default_memory_mb: int


class PendingSession:
    """A GetSession on its way: the caller does other work meanwhile, then takes the answer."""

    def __init__(self, session_id: str, call: grpc.Future) -> None:
        self._session_id = session_id
        self._call = call

    def result(self) -> SessionSnapshot:
        try:
            response = self._call.result()
        except grpc.RpcError as err:
            code = err.code()  # type: ignore[attr-defined]
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"session {self._session_id} not found") from err
            if code in _PEER_DOWN:
                raise Unavailable("the session service is unavailable") from err
            raise
        return _snapshot(response.session)

    def cancel(self) -> None:
        self._call.cancel()


class SessionClient:
    def __init__(self, addr: str, security: GrpcSecurity | None = None) -> None:
        self._channel = grpc_client.channel(addr, security)
        self._stub = session_pb2_grpc.SessionServiceStub(self._channel)

    def request_session(self, session_id: str, timeout: float, tenant: str = "") -> PendingSession:
        """The session as its tenant sees it: another tenant's is NOT_FOUND."""
        request = session_pb2.GetSessionRequest(session_id=session_id)
        metadata = Caller(tenant).metadata()
        return PendingSession(session_id, self._stub.GetSession.future(request, timeout=timeout, metadata=metadata))

    def get_session(self, session_id: str, timeout: float, tenant: str = "") -> SessionSnapshot:
        return self.request_session(session_id, timeout, tenant).result()

    def close(self) -> None:
        self._channel.close()


def _snapshot(session: session_pb2.Session) -> SessionSnapshot:
    return SessionSnapshot(
        id=session.id,
        active=session.status == session_pb2.SESSION_STATUS_ACTIVE,
        language=session.language.name,
        source_code=session.source_code,
        files=tuple(SourceFile(name=file.name, content=file.content) for file in session.files),
        default_time_limit_ms=session.language.default_time_limit_ms,
        default_memory_mb=session.language.default_memory_mb,
    )
