"""execution_service: executions, their queueing, abuse rules and state transitions (gRPC).

`build_service` wires the parts from a config; `python -m execution_service` serves them.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import grpc
import redis
from sqlalchemy import Engine

from common import execution_json
from common.config import ConfigError
from common.db import make_engine
from common.executor_registry import ExecutorRegistry
from common.run_events import RunEvents
from common.run_input import RunInput
from execution_service import servicer
from execution_service.api_keys import ApiKeys
from execution_service.attempts import RetryPolicy
from execution_service.callback_targets import AllowList
from execution_service.change_feed import ChangeFeed
from execution_service.executions import CompileLimits, Executions, utc_now
from execution_service.job_queue import JobQueue
from execution_service.migrations import HISTORY
from execution_service.models import Execution
from execution_service.rate_limit import SlidingWindowLimiter
from execution_service.reconciler import Reconciler
from execution_service.repository import Repository
from execution_service.run_counts import RunCounts
from execution_service.session_client import SessionClient
from execution_service.settings import ExecutionServiceConfig
from execution_service.system import SystemView
from execution_service.webhooks import Webhooks

SERVICE_NAMES = (
    "lce.execution.v1.ExecutionService",
    "lce.execution.v1.ExecutorReportService",
    "lce.execution.v1.AccessService",
)

# Short Redis timeouts: a request must fail over to the reconciler path quickly, never hang.
_REDIS_CONNECT_TIMEOUT_S = 1.0
_REDIS_SOCKET_TIMEOUT_S = 2.0
# The change feed's listener waits on its connection for as long as nothing changes: TCP keepalives
# tell a vanished Redis host from a quiet one within about 10 s (redis-py's own health check pings
# but never waits for the answer).
_LISTENER_KEEPALIVE = {socket.TCP_KEEPIDLE: 4, socket.TCP_KEEPINTVL: 2, socket.TCP_KEEPCNT: 3}


@dataclass
class ExecutionService:
    executions: Executions
    reconciler: Reconciler
    engine: Engine
    redis: redis.Redis
    sessions: SessionClient
    changes: ChangeFeed
    keys: ApiKeys
    system: SystemView
    webhooks: Webhooks

    def register(self, server: grpc.Server) -> None:
        servicer.register(server, self.executions, self.changes, self.keys, self.system)

    def start_background(self) -> None:
        self.reconciler.start()
        self.changes.start()
        self.system.run_counts.start()
        self.webhooks.start()

    def close(self) -> None:
        self.webhooks.stop()
        self.changes.close()
        self.reconciler.stop()
        self.system.run_counts.stop()
        self.sessions.close()
        self.redis.close()
        self.engine.dispose()


def build_service(config: ExecutionServiceConfig, *, enqueue_grace_s: float = 5.0) -> ExecutionService:
    """Checks the schema (migrates the embedded SQLite file) and wires the parts; the reconciler, change
    feed, run counts and webhooks are built but not started (start_background). Raises
    common.migrations.SchemaError on a schema it cannot run on."""
    try:
        allow = AllowList.parse(config.webhooks.allow)
    except ValueError as exc:
        raise ConfigError(f"LCE_CALLBACK_ALLOW: {exc}") from exc
    engine = make_engine(config.database_url)
    HISTORY.prepare(engine)
    repository = Repository(engine)
    client = redis.Redis.from_url(
        config.redis_url,
        socket_connect_timeout=_REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=_REDIS_SOCKET_TIMEOUT_S,
    )
    queue = JobQueue(client, config.queue_name)
    listener = redis.Redis.from_url(
        config.redis_url,
        socket_connect_timeout=_REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=_REDIS_SOCKET_TIMEOUT_S,
        socket_keepalive=True,
        socket_keepalive_options=_LISTENER_KEEPALIVE,
    )
    # The version names the messages' format: replicas of another release never hear each other's.
    changes = ChangeFeed(client, listener, f"{config.queue_name}:execution-changes:v3")
    sessions = SessionClient(config.session_service_addr, config.grpc_security)
    run_events = RunEvents.from_url(config.redis_url)
    run_counts = RunCounts(client)
    executions = Executions(
        repository,
        sessions,
        SlidingWindowLimiter(client, config.runs_per_minute),
        queue,
        failure_streak_limit=config.failure_streak_limit,
        failure_cooldown_s=config.failure_cooldown_s,
        retries=RetryPolicy(config.retry_backoff_s),
        lease_s=config.lease_s,
        idempotency_window_s=config.idempotency_window_s,
        compile_limits=CompileLimits(config.compile_time_limit_ms, config.compile_memory_limit_mb),
        enqueue_grace_s=enqueue_grace_s,
        on_change=lambda execution_id, finished: changed(execution_id, finished),
        run_events=run_events,
        run_input=RunInput(run_events.client),
        run_counts=run_counts,
        callbacks=allow if config.webhooks.secret else None,
    )
    webhooks = Webhooks(
        repository,
        config.webhooks,
        allow,
        lambda execution: execution_json.execution_detail(servicer.execution_to_proto(execution)),
        clock=executions.clock,
    )

    def changed(execution_id: str, finished: Execution | None) -> None:
        changes.publish(servicer.change_to_proto(execution_id, finished))
        if finished is not None and finished.callback_url is not None:
            webhooks.wake()

    reconciler = Reconciler(executions, queue, interval_s=config.reconcile_interval_s)
    system = SystemView(queue, ExecutorRegistry(client), run_counts, utc_now)
    keys = ApiKeys(engine)
    return ExecutionService(executions, reconciler, engine, client, sessions, changes, keys, system, webhooks)
