"""gRPC channels to our peers: one per peer, reused, with retries for idempotent calls only.

The retry policy lives in the channel's service config (gRPC's own mechanism), so a call
to a restarting peer is retried transparently on UNAVAILABLE, and never for a call that
could create something twice.
"""

from __future__ import annotations

import json

import grpc

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
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
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    # Reconnect quickly after a peer restarts instead of backing off for up to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


def channel(addr: str) -> grpc.Channel:
    return grpc.insecure_channel(addr, options=list(CHANNEL_OPTIONS))


def aio_channel(addr: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(addr, options=list(CHANNEL_OPTIONS))


def deadline(context: grpc.ServicerContext | None, default: float = DEFAULT_DEADLINE_S) -> float:
    """The deadline for a downstream call: ours, or what is left of our caller's if that is shorter."""
    if context is None:
        return default
    remaining = context.time_remaining()
    return default if remaining is None else max(0.05, min(default, remaining))
