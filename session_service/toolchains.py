"""The toolchains live executors serve, as session_service's catalogue reports them.

session_service runs no toolchain: each language's versions come from the executors'
announcements (common/executor_registry.py), read at most once a second and kept in memory, so a
session read stays one primary-key query. One caller reads while the others answer from memory, so
no request waits on another's read; while Redis cannot be read the last answer stands, and the next
try comes RETRY_AFTER_FAILURE_S later, so an outage costs sessions nothing but stale versions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import redis

from common.executor_registry import ExecutorRegistry, packages_by_language, versions_by_language

log = logging.getLogger(__name__)

MAX_AGE_S = 1.0
RETRY_AFTER_FAILURE_S = 5.0


class LiveToolchains:
    def __init__(
        self, registry: ExecutorRegistry, *, max_age_s: float = MAX_AGE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.registry = registry
        self.max_age_s = max_age_s
        self.clock = clock
        self._versions: Mapping[str, tuple[str, ...]] = {}
        self._packages: Mapping[str, Mapping[str, str]] = {}
        self._next_read_at: float | None = None  # None: never read
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, redis_url: str) -> LiveToolchains:
        # Short timeouts: a Redis that hangs must not hold up a session read for long.
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=0.5, socket_timeout=0.5)
        return cls(ExecutorRegistry(client))

    def versions(self) -> Mapping[str, tuple[str, ...]]:
        """Language name -> the versions live executors serve it with, the most common first."""
        due = self._next_read_at is None or self.clock() >= self._next_read_at
        if due and self._lock.acquire(blocking=self._next_read_at is None):  # the first read is waited for
            try:
                self._refresh()
            finally:
                self._lock.release()
        return self._versions

    def packages(self) -> Mapping[str, Mapping[str, str]]:
        """Language name -> the libraries its runs may use (package -> version), as of the last read."""
        self.versions()
        return self._packages

    def close(self) -> None:
        self.registry.client.close()

    def _refresh(self) -> None:
        try:
            live = self.registry.live()
            self._versions, self._packages = versions_by_language(live), packages_by_language(live)
            self._next_read_at = self.clock() + self.max_age_s
        except redis.RedisError as err:
            self._next_read_at = self.clock() + RETRY_AFTER_FAILURE_S
            log.warning("executors' toolchains not read; the last ones stand", extra={"error": repr(err)})
