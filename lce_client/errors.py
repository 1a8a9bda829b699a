"""What can go wrong talking to LCE, as exceptions; HTTP answers become them in one place (`error_for`).

LceError                  status (None when no answer came) and message; retry_after from Retry-After
├── BadRequestError       400: a malformed id, a wrong type, a limit out of range
├── AuthError             401 no or a revoked API key, 403 not an admin's
├── NotFoundError         404: unknown, or another tenant's
├── ConflictError         409: a closed session, a run that is not interactive, stdin already closed
├── PayloadTooLargeError  413: source, stdin or tests over their size
├── RateLimitedError      429: retry after `retry_after` seconds
├── UnavailableError      503: a backend is down (retry_after set), or a run that may or may not have
│                         been created (retry_after None: look at the session's executions first)
└── UnreachableError      no answer: the gateway cannot be reached, or the connection broke
"""

from __future__ import annotations

import json
from collections.abc import Mapping


class LceError(Exception):
    """An error of the API (status: its HTTP status) or of the way to it (status None)."""

    def __init__(self, status: int | None, message: str, retry_after: int | None = None) -> None:
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status = status
        self.message = message
        self.retry_after = retry_after  # seconds, when the answer said when to come back


class BadRequestError(LceError):
    pass


class AuthError(LceError):
    pass


class NotFoundError(LceError):
    pass


class ConflictError(LceError):
    pass


class PayloadTooLargeError(LceError):
    pass


class RateLimitedError(LceError):
    pass


class UnavailableError(LceError):
    pass


class UnreachableError(LceError):
    def __init__(self, message: str) -> None:
        super().__init__(None, message)


_BY_STATUS: Mapping[int, type[LceError]] = {
    400: BadRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitedError,
    503: UnavailableError,
}


def error_for(status: int, headers: Mapping[str, str], body: bytes) -> LceError:
    """The exception for an HTTP error answer: its class by status, the message from the JSON body
    ({"error": ...}, with a rate limit's "detail"), retry_after from the Retry-After header."""
    message = _message(body) or f"HTTP {status}"
    retry_after = _seconds(headers.get("retry-after"))
    return _BY_STATUS.get(status, LceError)(status, message, retry_after)


def _message(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()[:500]
    if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), str):
        return ""
    detail = parsed.get("detail")
    return f"{parsed['error']}: {detail}" if isinstance(detail, str) and detail else parsed["error"]


def _seconds(raw: str | None) -> int | None:
    """Retry-After as delay-seconds; an HTTP date (which LCE never sends) is ignored."""
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw)
