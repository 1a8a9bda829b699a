"""Domain errors and their gRPC status codes: the one table the services use.

    LceError                      (never raised itself)
    ├── NotFound                  NOT_FOUND             unknown session, language or execution
    ├── InvalidArgument           INVALID_ARGUMENT      malformed id, out-of-range limit, bad value
    │   └── PayloadTooLarge       INVALID_ARGUMENT      source code over 1 MiB (kind tells it apart)
    ├── SessionClosed             FAILED_PRECONDITION   autosave or run on a closed session
    ├── NotInteractive            FAILED_PRECONDITION   talking to a run created without `interactive`
    ├── NotRetryable              FAILED_PRECONDITION   an operator's retry of a run the machinery did not fail
    ├── Unauthenticated           UNAUTHENTICATED       no API key, or an unknown or revoked one
    ├── PermissionDenied          PERMISSION_DENIED     a key that may not do this (an admin call)
    ├── RateLimited               RESOURCE_EXHAUSTED    abuse rules, a key's limits; carries retry_after_s
    ├── DeadlinePassed            DEADLINE_EXCEEDED     the caller's deadline passed before the write: nothing was done
    └── Unavailable               UNAVAILABLE           a dependency (database, Redis, peer) is down

A servicer raises these; `common.grpc_server` turns them into `context.abort` with the
error's `kind` (and `retry-after` where there is one) in the trailing metadata, so a
caller can tell apart errors that share a code. The gateway maps code and kind to HTTP
in its own single table (gateway/http_errors.py).
"""

from __future__ import annotations

import grpc

KIND_METADATA_KEY = "lce-error-kind"
RETRY_AFTER_METADATA_KEY = "retry-after"


class LceError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    kind: str = "unknown"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((KIND_METADATA_KEY, self.kind),)


class NotFound(LceError):
    code = grpc.StatusCode.NOT_FOUND
    kind = "not_found"


class InvalidArgument(LceError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    kind = "invalid_argument"


class PayloadTooLarge(InvalidArgument):
    kind = "payload_too_large"


class SessionClosed(LceError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    kind = "session_closed"


class NotInteractive(LceError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    kind = "not_interactive"


class NotRetryable(LceError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    kind = "not_retryable"


class Unauthenticated(LceError):
    code = grpc.StatusCode.UNAUTHENTICATED
    kind = "unauthenticated"


class PermissionDenied(LceError):
    code = grpc.StatusCode.PERMISSION_DENIED
    kind = "permission_denied"


class RateLimited(LceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    kind = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (*super().trailing_metadata(), (RETRY_AFTER_METADATA_KEY, str(self.retry_after_s)))


class DeadlinePassed(LceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    kind = "deadline_passed"


class Unavailable(LceError):
    code = grpc.StatusCode.UNAVAILABLE
    kind = "unavailable"


ALL_ERRORS: tuple[type[LceError], ...] = (
    NotFound,
    InvalidArgument,
    PayloadTooLarge,
    SessionClosed,
    NotRetryable,
    RateLimited,
    DeadlinePassed,
    Unavailable,
)
