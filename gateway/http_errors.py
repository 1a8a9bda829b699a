"""gRPC status (+ the error kind in trailing metadata) -> HTTP status and JSON body: the one table.

Every gRPC status code has an explicit row (tests/unit/test_http_errors.py proves it), so a
new failure never falls through to a guess. Client mistakes keep the service's own message;
server-side failures get a generic one (the details are logged, not shown).

    HttpError                     raised by the gateway itself (bad JSON, wrong types, body too large)
    grpc.aio.AioRpcError          raised by a backend call; mapped by `rpc_error_response`
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import grpc

from common.errors import KIND_METADATA_KEY, RETRY_AFTER_METADATA_KEY

log = logging.getLogger(__name__)

RATE_LIMITED_MESSAGE = "Rate limit exceeded"
UNAVAILABLE_MESSAGE = "a backend service is unavailable, retry shortly"
# A create that failed on the way, after the service may have written it: a blind retry could run it twice.
OUTCOME_UNKNOWN_MESSAGE = (
    "a backend service failed while taking the run, which may or may not have been created: look at the "
    "session's executions before running it again, or send an Idempotency-Key, which makes retries safe"
)
INTERNAL_MESSAGE = "internal error"
# Backend-down answers tell clients when to come back; a restarting peer is usually back within a second.
UNAVAILABLE_RETRY_AFTER_S = 1
DEFAULT_RATE_LIMIT_RETRY_AFTER_S = 1


@dataclass(frozen=True)
class HttpMapping:
    status: int
    # None: the service's own message is clear and safe to show (a client mistake).
    message: str | None = None


STATUS_TABLE: Mapping[grpc.StatusCode, HttpMapping] = {
    grpc.StatusCode.OK: HttpMapping(500, INTERNAL_MESSAGE),  # an error carrying OK is a bug
    grpc.StatusCode.CANCELLED: HttpMapping(503, UNAVAILABLE_MESSAGE),
    grpc.StatusCode.UNKNOWN: HttpMapping(500, INTERNAL_MESSAGE),
    grpc.StatusCode.INVALID_ARGUMENT: HttpMapping(400),
    grpc.StatusCode.DEADLINE_EXCEEDED: HttpMapping(503, UNAVAILABLE_MESSAGE),
    grpc.StatusCode.NOT_FOUND: HttpMapping(404),
    grpc.StatusCode.ALREADY_EXISTS: HttpMapping(409),
    grpc.StatusCode.PERMISSION_DENIED: HttpMapping(403),
    # Without the rate_limited kind: gRPC's own refusal (a server at its bound of calls, a message too large).
    grpc.StatusCode.RESOURCE_EXHAUSTED: HttpMapping(503, UNAVAILABLE_MESSAGE),
    grpc.StatusCode.FAILED_PRECONDITION: HttpMapping(409),
    grpc.StatusCode.ABORTED: HttpMapping(409),
    grpc.StatusCode.OUT_OF_RANGE: HttpMapping(400),
    grpc.StatusCode.UNIMPLEMENTED: HttpMapping(501, "not implemented by the backend service"),
    grpc.StatusCode.INTERNAL: HttpMapping(500, INTERNAL_MESSAGE),
    grpc.StatusCode.UNAVAILABLE: HttpMapping(503, UNAVAILABLE_MESSAGE),
    grpc.StatusCode.DATA_LOSS: HttpMapping(500, INTERNAL_MESSAGE),
    grpc.StatusCode.UNAUTHENTICATED: HttpMapping(401),
}

# Kinds (common.errors) that share a gRPC code with others but mean a different HTTP status.
KIND_TABLE: Mapping[str, HttpMapping] = {
    "payload_too_large": HttpMapping(413),
    "rate_limited": HttpMapping(429, RATE_LIMITED_MESSAGE),
    # The service saw the deadline pass before it wrote anything: nothing happened, a retry is safe.
    "deadline_passed": HttpMapping(503, "a backend service is overloaded and did not take the request, retry shortly"),
}


class HttpError(Exception):
    """A request the gateway refuses before (or instead of) calling a backend."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ErrorResponse:
    status: int
    body: dict[str, object]
    headers: dict[str, str]


Metadata = Iterable[tuple[str, str | bytes]] | None


def metadata_value(metadata: Metadata, key: str) -> str | None:
    for item_key, value in metadata or ():
        if item_key == key:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def retry_after_seconds(raw: str | None, default: int) -> int:
    try:
        return max(1, int(raw)) if raw is not None else default
    except ValueError:
        return default


def map_status(code: grpc.StatusCode, kind: str | None) -> HttpMapping:
    return KIND_TABLE.get(kind or "") or STATUS_TABLE[code]


def error_response(code: grpc.StatusCode, details: str | None, metadata: Metadata) -> ErrorResponse:
    """The HTTP answer for a failed backend call with this code, message and trailing metadata."""
    mapping = map_status(code, metadata_value(metadata, KIND_METADATA_KEY))
    message = mapping.message or details or "request refused"
    body: dict[str, object] = {"error": message}
    headers: dict[str, str] = {}
    if mapping.status == 429:
        retry_after = retry_after_seconds(
            metadata_value(metadata, RETRY_AFTER_METADATA_KEY), DEFAULT_RATE_LIMIT_RETRY_AFTER_S
        )
        body["retryAfter"] = retry_after
        if details:
            body["detail"] = details
        headers["Retry-After"] = str(retry_after)
    elif mapping.status == 503:
        headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_S)
    if mapping.status >= 500:
        log.warning("backend call failed", extra={"grpc_code": code.name, "details": (details or "")[:500]})
    return ErrorResponse(mapping.status, body, headers)


# Failures that may come after the service did the work: the call timed out or was cut off while
# it ran, or it broke in a way nobody explained. (UNAVAILABLE is a call that never reached a
# service, or one the service refused because a dependency was down, before any write.)
_OUTCOME_UNKNOWN = {
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
}


def rpc_error_response(err: grpc.aio.AioRpcError, *, replay_safe: bool = True) -> ErrorResponse:
    """replay_safe=False for a call that creates something without an idempotency key: then a failure
    that may have come after the write does not invite a retry."""
    metadata = err.trailing_metadata()
    response = error_response(err.code(), err.details(), metadata)
    explained = metadata_value(metadata, KIND_METADATA_KEY) is not None
    if replay_safe or explained or err.code() not in _OUTCOME_UNKNOWN:
        return response
    return ErrorResponse(response.status, {"error": OUTCOME_UNKNOWN_MESSAGE}, {})
