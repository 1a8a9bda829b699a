"""gRPC channels to our peers: one per peer, reused, with retries for idempotent calls only.

The retry policy lives in the channel's service config (gRPC's own mechanism), so a call
to a restarting peer is retried transparently on UNAVAILABLE, and never for a call that
could create something twice.

With LCE_GRPC_TLS_* a channel speaks TLS, presenting the process's certificate and verifying the
peer's against the CA; it presents a token on every call where one is configured (common/service_auth.py).
"""

from __future__ import annotations

import json

import grpc

from common import service_auth
from common.config import GrpcSecurity

# The largest request the API admits, with room to spare. A result (ReportResult) is the largest:
# stdout and stderr of at most 1 MiB each as captured (LCE_OUTPUT_LIMIT_BYTES' default) make at
# most 6 MiB of UTF-8 together (an invalid byte decodes to U+FFFD, 3 bytes; a compile error's
# stderr holds both streams), 2.7 MiB in base64. A source is at most 1 MiB, but the gateway passes
# on whatever a body under its cap held (gateway/request_limits.py: 6 MiB), for session_service to
# refuse it with its own 413. Servers receive and channels send no more: a larger request is
# refused (RESOURCE_EXHAUSTED) before any handler reads it.
MAX_REQUEST_BYTES = 8 * 1024 * 1024
# The largest answer. One execution fits in MAX_REQUEST_BYTES, but ListExecutions answers up to 100
# with their outputs: a list whose outputs add up to more is refused (RESOURCE_EXHAUSTED), not sent.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
DEFAULT_DEADLINE_S = 5.0

# (service, method) pairs that may be sent twice without changing the outcome.
IDEMPOTENT_METHODS: tuple[tuple[str, str], ...] = (
    ("lce.session.v1.SessionService", "ListLanguages"),
    ("lce.session.v1.SessionService", "GetLanguage"),
    ("lce.session.v1.SessionService", "GetSession"),
    ("lce.session.v1.SessionService", "UpdateSource"),
    ("lce.session.v1.SessionService", "CloseSession"),
    ("lce.execution.v1.ExecutionService", "GetExecution"),
    ("lce.execution.v1.ExecutionService", "ListExecutions"),
    ("lce.execution.v1.ExecutionService", "ListExecutionEvents"),
    ("lce.execution.v1.ExecutorReportService", "ReportStarted"),
    ("lce.execution.v1.ExecutorReportService", "RenewLease"),
    ("lce.execution.v1.ExecutorReportService", "ReportResult"),
)

_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": service, "method": method} for service, method in IDEMPOTENT_METHODS],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

CHANNEL_OPTIONS: tuple[tuple[str, object], ...] = (
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.max_send_message_length", MAX_REQUEST_BYTES),
    ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    # Reconnect quickly after a peer restarts instead of backing off for up to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


def channel(addr: str, security: GrpcSecurity | None = None, *, token: str | None = None) -> grpc.Channel:
    """A channel to a peer, with `security` (the process's settings'; none: plaintext), presenting `token`
    (by default the internal token; "": none)."""
    security = security or GrpcSecurity()
    token = security.internal_token if token is None else token
    options = list(CHANNEL_OPTIONS)
    if security.tls:
        transport = grpc.secure_channel(addr, service_auth.channel_credentials(security), options=options)
    else:
        transport = grpc.insecure_channel(addr, options=options)
    return grpc.intercept_channel(transport, service_auth.TokenInterceptor(token)) if token else transport


def aio_channel(addr: str, security: GrpcSecurity | None = None) -> grpc.aio.Channel:
    """An asyncio channel to a peer, presenting the internal token; as `channel`."""
    security = security or GrpcSecurity()
    options = list(CHANNEL_OPTIONS)
    interceptors = service_auth.aio_token_interceptors(security.internal_token) if security.internal_token else None
    if security.tls:
        credentials = service_auth.channel_credentials(security)
        return grpc.aio.secure_channel(addr, credentials, options=options, interceptors=interceptors)
    return grpc.aio.insecure_channel(addr, options=options, interceptors=interceptors)


def deadline(context: grpc.ServicerContext | None, default: float = DEFAULT_DEADLINE_S) -> float:
    """The deadline for a downstream call: ours, or what is left of our caller's if that is shorter."""
    if context is None:
        return default
    remaining = context.time_remaining()
    return default if remaining is None else max(0.05, min(default, remaining))
