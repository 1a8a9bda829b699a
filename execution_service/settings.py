"""execution_service's settings: every LCE_* variable it reads (README "Configuration")."""

from __future__ import annotations

from functools import partial
from typing import Self

from pydantic import field_validator, model_validator

from common.config import (
    DEFAULT_COMPILE_MEMORY_LIMIT_MB,
    DEFAULT_COMPILE_TIME_LIMIT_MS,
    DEFAULT_REDIS_URL,
    CommaList,
    ConfigError,
    Group,
    GrpcServerSettings,
    Tokens,
    Waits,
    sqlite_url,
    variable,
)


class WebhookConfig(Group):
    """Webhooks (README "Webhooks"). Without a secret, a run's callback_url is refused. `allow` holds
    LCE_CALLBACK_ALLOW's host:port and CIDR entries (checked by execution_service/callback_targets.py);
    `retry_s` the waits before each retry of a failed delivery."""

    secrets: Tokens = variable("LCE_WEBHOOK_SECRET", ())
    allow: CommaList = variable("LCE_CALLBACK_ALLOW", ())
    retry_s: Waits = variable("LCE_WEBHOOK_RETRY_S", (1.0, 5.0, 30.0, 120.0, 600.0))
    timeout_s: float = variable("LCE_WEBHOOK_TIMEOUT_S", 5.0, ge=0.5, le=60)

    @field_validator("retry_s")
    @classmethod
    def _retries_are_apart(cls, waits: tuple[float, ...]) -> tuple[float, ...]:
        if any(wait < 0.1 for wait in waits):
            raise ValueError(f"must be >= 0.1 each, got {','.join(map(str, waits))}")
        return waits

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if len(self.secrets) > 1:
            raise ConfigError("LCE_WEBHOOK_SECRET is one secret")
        return self

    @property
    def secret(self) -> str:
        return self.secrets[0] if self.secrets else ""


class ExecutionServiceConfig(GrpcServerSettings):
    listen_addr: str = variable("LCE_EXECUTION_LISTEN", "127.0.0.1:7052")
    database_url: str = variable("LCE_DATABASE_URL", default_factory=partial(sqlite_url, "execution"))
    redis_url: str = variable("LCE_REDIS_URL", DEFAULT_REDIS_URL)
    queue_name: str = variable("LCE_QUEUE_NAME", "lce-executions")
    session_service_addr: str = variable("LCE_SESSION_SERVICE_ADDR", "127.0.0.1:7051")
    runs_per_minute: int = variable("LCE_RUNS_PER_MINUTE", 10, ge=1)
    failure_streak_limit: int = variable("LCE_FAILURE_STREAK_LIMIT", 5, ge=1)
    failure_cooldown_s: int = variable("LCE_FAILURE_COOLDOWN_S", 60, ge=1)
    # Reliability (README "Reliability"): how long an executor's claim on a run lasts unrenewed,
    # the waits before each infrastructure retry (their count is the number of retries), how
    # often the reconciler sweeps, and how long an Idempotency-Key keeps answering its execution.
    lease_s: int = variable("LCE_LEASE_S", 10, ge=2, le=3600)
    retry_backoff_s: Waits = variable("LCE_RETRY_BACKOFF_S", (2.0, 4.0, 8.0))
    reconcile_interval_s: float = variable("LCE_RECONCILE_INTERVAL_S", 1.0, ge=0.05, le=60)
    idempotency_window_s: int = variable("LCE_IDEMPOTENCY_WINDOW_S", 24 * 3600, ge=1)
    metrics_listen_addr: str = variable("LCE_METRICS_LISTEN", "")
    compile_time_limit_ms: int = variable(
        "LCE_COMPILE_TIME_LIMIT_MS", DEFAULT_COMPILE_TIME_LIMIT_MS, ge=1000, le=120_000
    )
    compile_memory_limit_mb: int = variable(
        "LCE_COMPILE_MEMORY_LIMIT_MB", DEFAULT_COMPILE_MEMORY_LIMIT_MB, ge=128, le=8192
    )
    # It serves both kinds of callers: the executors, and the gateway and session_service.
    executor_tokens: Tokens = variable("LCE_EXECUTOR_TOKEN", ())
    internal_tokens: Tokens = variable("LCE_INTERNAL_TOKEN", ())
    webhooks: WebhookConfig = WebhookConfig()

    @model_validator(mode="after")
    def _callers_told_apart(self) -> Self:
        if set(self.executor_tokens) & set(self.internal_tokens):
            raise ConfigError("LCE_EXECUTOR_TOKEN and LCE_INTERNAL_TOKEN must differ")
        # Without certificates, a server holding one token alone could identify no other caller.
        if not self.grpc_tls_ca and bool(self.executor_tokens) != bool(self.internal_tokens):
            raise ConfigError("without LCE_GRPC_TLS_*, set both LCE_EXECUTOR_TOKEN and LCE_INTERNAL_TOKEN or neither")
        return self
