"""session_service's settings: every LCE_* variable it reads (README "Configuration")."""

from __future__ import annotations

from functools import partial

from common.config import DEFAULT_REDIS_URL, GrpcServerSettings, Tokens, sqlite_url, variable


class SessionServiceConfig(GrpcServerSettings):
    listen_addr: str = variable("LCE_SESSION_LISTEN", "127.0.0.1:7051")
    database_url: str = variable("LCE_DATABASE_URL", default_factory=partial(sqlite_url, "session"))
    metrics_listen_addr: str = variable("LCE_METRICS_LISTEN", "")  # host:port of /metrics; empty: not served
    # Read only: the executors' announcements (common/executor_registry.py), for the languages' versions.
    redis_url: str = variable("LCE_REDIS_URL", DEFAULT_REDIS_URL)
    # Its callers', the gateway's and execution_service's.
    internal_tokens: Tokens = variable("LCE_INTERNAL_TOKEN", ())
