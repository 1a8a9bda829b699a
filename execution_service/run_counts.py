"""How many runs reached each state lately, for /system: counters in Redis in 10-second buckets.

A transition is counted in memory (no Redis round trip on the request path) and a thread adds
what was counted to the bucket of its moment once a second, so every replica's counts meet in
Redis. A bucket is a hash `lce:run-counts:<bucket>` (state -> count) that expires after the
longest window; reading the last 15 minutes is one pipeline of 90 reads. The states: QUEUED (a
run accepted), RETRIED (an attempt queued again), RUNNING, COMPLETED, FAILED, TIMEOUT. A replica
that dies loses at most its last second of counts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "lce:run-counts:"
BUCKET_S = 10
WINDOWS_MIN = (1, 5, 15)
_EXPIRY_S = max(WINDOWS_MIN) * 60 + 2 * BUCKET_S
_MAX_PENDING_BUCKETS = 60  # ten minutes of counts kept while Redis is down, then the oldest go


class RunCounts:
    def __init__(
        self, client: redis.Redis, *, flush_interval_s: float = 1.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.clock = clock
        self.flush_interval_s = flush_interval_s
        self._pending: dict[int, Counter[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-counts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.flush()

    def record(self, state: str) -> None:
        bucket = int(self.clock()) // BUCKET_S
        with self._lock:
            self._pending.setdefault(bucket, Counter())[state] += 1
            if len(self._pending) > _MAX_PENDING_BUCKETS:
                del self._pending[min(self._pending)]

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        pipeline = self.client.pipeline(transaction=False)
        for bucket, counts in pending.items():
            for state, count in counts.items():
                pipeline.hincrby(f"{KEY_PREFIX}{bucket}", state, count)
            pipeline.expire(f"{KEY_PREFIX}{bucket}", _EXPIRY_S)
        try:
            pipeline.execute()
        except redis.RedisError as err:
            log.warning("run counts not written; kept for the next try", extra={"error": repr(err)})
            with self._lock:
                for bucket, counts in pending.items():
                    self._pending.setdefault(bucket, Counter()).update(counts)

    def recent(self, windows_min: Sequence[int] = WINDOWS_MIN) -> dict[int, dict[str, int]]:
        """Per window (minutes): the count of each state reached in it. Raises redis.RedisError."""
        now = int(self.clock()) // BUCKET_S
        longest = max(windows_min) * 60 // BUCKET_S
        pipeline = self.client.pipeline(transaction=False)
        for age in range(longest):
            pipeline.hgetall(f"{KEY_PREFIX}{now - age}")
        buckets = pipeline.execute()
        totals: dict[int, dict[str, int]] = {}
        for window in windows_min:
            counted: Counter[str] = Counter()
            for fields in buckets[: window * 60 // BUCKET_S]:
                counted.update({state.decode(): int(count) for state, count in fields.items()})
            totals[window] = dict(counted)
        return totals

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            self.flush()
