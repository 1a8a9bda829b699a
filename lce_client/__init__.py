"""LCE's client: the REST API from Python (`Client`, `AsyncClient`), the `lce` command (lce_client/cli.py)
and, for LCE's own services and internal callers, gRPC stubs with the deployment's security
(lce_client/grpc.py, which needs the source tree)."""

from lce_client.calls import DEFAULT_URL, RunOptions
from lce_client.client import AsyncClient, Client
from lce_client.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    LceError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    UnavailableError,
    UnreachableError,
)
from lce_client.interaction import AsyncInteraction, Interaction
from lce_client.models import (
    Event,
    Execution,
    ExecutionSummary,
    Language,
    Session,
    SessionState,
    SourceFile,
    TestCase,
    TestResult,
)

__all__ = [
    "DEFAULT_URL",
    "AsyncClient",
    "AsyncInteraction",
    "AuthError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "Event",
    "Execution",
    "ExecutionSummary",
    "Interaction",
    "Language",
    "LceError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "RunOptions",
    "Session",
    "SessionState",
    "SourceFile",
    "TestCase",
    "TestResult",
    "UnavailableError",
    "UnreachableError",
]
