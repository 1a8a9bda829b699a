"""Who calls a gRPC service, proven by a certificate (mTLS), a token, or both; the credentials of
servers and channels (README "Security model").

A caller is an EXECUTOR, the GATEWAY or another SERVICE. Executors may call ExecutorReportService
and nothing else; the others may call everything but it. Health checks are open to anyone who
completes the handshake, so that probes work. Server reflection (the schema, as grpcurl reads it) is
open to every identified member, executors included: it reveals nothing protos/ does not, but which
services a port serves is still nobody else's business. A servicer asks `caller()` who is calling.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from common.config import ConfigError, GrpcSecurity

EXECUTOR = "executor"
GATEWAY = "gateway"
SERVICE = "service"
# The callers trusted to speak for someone else (to name a tenant, say).
INTERNAL_CALLERS = frozenset({GATEWAY, SERVICE})
# A certificate's Common Name says who holds it; `make certs` issues these four.
CERTIFICATE_NAMES = {
    "executor": EXECUTOR,
    "gateway": GATEWAY,
    "session_service": SERVICE,
    "execution_service": SERVICE,
}

EXECUTOR_REPORT_SERVICE = "lce.execution.v1.ExecutorReportService"
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"
# Where a service's token travels; "authorization" is left to the API keys of the callers' clients.
TOKEN_METADATA_KEY = "lce-service-token"

_caller: ContextVar[str | None] = ContextVar("lce_service_caller", default=None)


def caller() -> str | None:
    """Who makes the call being served: EXECUTOR, GATEWAY or SERVICE (with certificates the gateway
    is told from the services; with tokens alone both are SERVICE). None when the deployment
    identifies no caller (plaintext, no tokens: `make run`) and in health checks."""
    return _caller.get()


@contextmanager
def serving(who: str | None) -> Iterator[None]:
    """Within, `caller()` answers `who`."""
    token = _caller.set(who)
    try:
        yield
    finally:
        _caller.reset(token)


class Refused(Exception):
    """A call its caller may not make: the status code and details it is answered with."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@dataclass(frozen=True)
class CallerPolicy:
    """Which callers a server admits: every proof the deployment configures is required."""

    executor_tokens: tuple[str, ...] = ()
    internal_tokens: tuple[str, ...] = ()
    certificates: bool = False  # the server requires client certificates (mTLS)

    @classmethod
    def of(cls, security: GrpcSecurity) -> CallerPolicy:
        return cls(security.executor_tokens, security.internal_tokens, security.tls)

    @property
    def identifies(self) -> bool:
        return bool(self.executor_tokens or self.internal_tokens or self.certificates)

    def admit(self, service: str, token: str | None, common_name: str | None) -> str | None:
        """The caller, admitted to `service`; None where nobody is identified. Raises Refused."""
        if service == HEALTH_SERVICE or not self.identifies:
            return None
        who = self.identify(token, common_name)
        if service == REFLECTION_SERVICE:
            return who
        if (who == EXECUTOR) != (service == EXECUTOR_REPORT_SERVICE):
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"the {who} may not call {service}")
        return who

    def identify(self, token: str | None, common_name: str | None) -> str:
        by_token = self._by_token(token)
        by_certificate = self._by_certificate(common_name)
        if by_token and by_certificate and (by_token == EXECUTOR) != (by_certificate == EXECUTOR):
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, "the certificate and the token name different callers")
        who = by_certificate or by_token
        if who is None:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "the caller is not identified")
        if (self.executor_tokens if who == EXECUTOR else self.internal_tokens) and by_token is None:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, f"the {who}'s token is missing")
        return who

    def _by_token(self, token: str | None) -> str | None:
        if token is None or not (self.executor_tokens or self.internal_tokens):
            return None
        if tokens_match(token, self.executor_tokens):
            return EXECUTOR
        if tokens_match(token, self.internal_tokens):
            return SERVICE
        raise Refused(grpc.StatusCode.UNAUTHENTICATED, "unknown token")

    def _by_certificate(self, common_name: str | None) -> str | None:
        if not self.certificates:
            return None
        who = CERTIFICATE_NAMES.get(common_name or "")
        if who is None:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, f"a certificate of {common_name!r} names no LCE caller")
        return who


def tokens_match(presented: str, accepted: Iterable[str]) -> bool:
    """Whether `presented` is one of `accepted`, in time that does not depend on where they differ."""
    given = presented.encode()
    # Every token compared, none skipped: the time taken says nothing about which one matched.
    return any([hmac.compare_digest(given, token.encode()) for token in accepted])


def token_of(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The service token a call carries, or None."""
    for key, value in metadata or ():
        if key == TOKEN_METADATA_KEY and isinstance(value, str):
            return value
    return None


def common_name_of(auth_context: dict[str, list[bytes]]) -> str | None:
    """The Common Name of the client certificate the handshake verified, or None."""
    names = auth_context.get("x509_common_name")
    return names[0].decode(errors="replace") if names else None


def is_loopback(listen_addr: str) -> bool:
    """Whether a gRPC listen address ("host:port", "[::1]:port", "unix:path") is reachable from this host only."""
    if listen_addr.startswith("unix:"):
        return True
    host = listen_addr.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- credentials -----------------------------------------------------------------------------


def _read(path: Path | None) -> bytes:
    assert path is not None, "TLS files are set together (common.config.GrpcSettings)"
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror})") from exc


def server_credentials(security: GrpcSecurity) -> grpc.ServerCredentials:
    """TLS with the process's certificate, requiring a client certificate signed by the CA."""
    return grpc.ssl_server_credentials(
        [(_read(security.tls_key), _read(security.tls_cert))],
        root_certificates=_read(security.tls_ca),
        require_client_auth=True,
    )


def channel_credentials(security: GrpcSecurity) -> grpc.ChannelCredentials:
    """TLS presenting the process's certificate, verifying the peer's against the CA."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read(security.tls_ca),
        private_key=_read(security.tls_key),
        certificate_chain=_read(security.tls_cert),
    )


# The token rides in an interceptor, TLS or not: gRPC's call credentials would need TLS, and would
# send it as "authorization".


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _SyncCallDetails(_CallDetails, grpc.ClientCallDetails):
    pass


def _with_token(metadata: Iterable[tuple[str, str]] | None, token: str) -> tuple[tuple[str, str], ...]:
    return (*(metadata or ()), (TOKEN_METADATA_KEY, token))


class TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the token to every call of a channel."""

    def __init__(self, token: str) -> None:
        self.token = token

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _SyncCallDetails(
            details.method,
            details.timeout,
            _with_token(details.metadata, self.token),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class _AioToken:
    def __init__(self, token: str) -> None:
        self.token = token

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(
            details.method,
            details.timeout,
            grpc.aio.Metadata(*_with_token(details.metadata, self.token)),
            details.credentials,
            details.wait_for_ready,
        )


# grpc.aio sorts interceptors by kind, one kind each: four classes.
class _AioUnaryUnaryToken(_AioToken, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _AioUnaryStreamToken(_AioToken, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _AioStreamUnaryToken(_AioToken, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _AioStreamStreamToken(_AioToken, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def aio_token_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    return [
        kind(token) for kind in (_AioUnaryUnaryToken, _AioUnaryStreamToken, _AioStreamUnaryToken, _AioStreamStreamToken)
    ]
