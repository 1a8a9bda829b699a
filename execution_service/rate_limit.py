"""Runs per minute per session: a sliding window kept in Redis, shared by every replica.

Each session has a sorted set of its accepted runs scored by acceptance time. One Lua script
drops the entries that left the window, counts the rest and admits or refuses, so two replicas
admitting runs of one session at the same moment cannot both take the last slot. Time comes
from the Redis server, not from the replicas, whose clocks may disagree.
"""

from __future__ import annotations

import math

import redis

from common.errors import RateLimited

KEY_PREFIX = "lce:runs-window:"

# Returns 0 when admitted, else the milliseconds until the oldest entry leaves the window.
_ADMIT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tonumber(oldest[2]) + window - now
"""


class SlidingWindowLimiter:
    def __init__(self, client: redis.Redis, limit: int, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_ms = int(window_s * 1000)
        self.client = client
        self._admit = client.register_script(_ADMIT_SCRIPT)

    def admit(self, session_id: str, run_id: str, *, limit: int | None = None, per: str = "session") -> None:
        """Counts the run against the window of its session (or of another subject, with its own
        limit), or raises RateLimited without counting it."""
        limit = self.limit if limit is None else limit
        wait_ms = int(self._admit(keys=[KEY_PREFIX + session_id], args=[limit, self.window_ms, run_id]))
        if wait_ms > 0:
            raise RateLimited(
                f"at most {limit} runs per {self.window_ms // 1000} s per {per}",
                retry_after_s=math.ceil(wait_ms / 1000),
            )

    def release(self, session_id: str, run_id: str) -> None:
        """Gives back the slot `admit` took for a run that was not created after all."""
        self.client.zrem(KEY_PREFIX + session_id, run_id)
