"""One run's events as they happen, in a Redis Stream of its own: the push path for live readers.

execution_service appends each state change (`status`, and `result` once the run is terminal), the
executor appends the program's output as it is written (`stdout`, `stderr`: the chunk's byte offset
in its stream and its text in the run's encoding). A reader (the gateway's /stream) reads the
stream from any entry on and blocks for what follows. The stream is a view for the living: the
database row stays the truth, so an append that fails is logged and dropped, never an error of the
run. Each stream is capped in entries and expires an hour after its last append.
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

KEY_PREFIX = "lce:run-events:"
# Output arrives in chunks of at least OUTPUT_FLUSH_S (executor/live_output.py): a minute-long run
# appends at most a few thousand entries, beside at most 2 x the output cap in bytes.
MAX_ENTRIES = 20_000
EXPIRY_S = 3600
# After a failed append, appends are skipped this long: a Redis that is down costs a run one timeout, not one per entry.
PAUSE_AFTER_FAILURE_S = 5.0


class Kind(StrEnum):
    STATUS = "status"  # fields: status, attempt (and reason when a retry follows a failed attempt)
    STDOUT = "stdout"  # fields: attempt, offset, data
    STDERR = "stderr"
    TEST = "test"  # a suite's case decided: index (from 0), name, status, reason, passed (1 or 0)
    RESULT = "result"  # field: status; the run is terminal, nothing follows


def stream_key(execution_id: str) -> str:
    return f"{KEY_PREFIX}{execution_id}"


_MAX_ENTRY_ID_PART = 2**64 - 1


def is_entry_id(value: str | None) -> bool:
    """A stream entry id as Redis takes it, "<milliseconds>-<sequence>", each part a 64-bit number."""
    if value is None or len(value) > 41:
        return False
    parts = value.partition("-")
    numbers = (parts[0], parts[2])
    well_formed = bool(parts[1]) and all(part.isascii() and part.isdigit() for part in numbers)
    return well_formed and all(int(part) <= _MAX_ENTRY_ID_PART for part in numbers)


_NUMBERS = (b"offset", b"attempt", b"index")


def decode_entry(fields: dict[bytes, bytes]) -> tuple[str, dict[str, str | int | bool]]:
    """A stream entry as appended: its kind and its other fields (offset, attempt, index as numbers;
    passed as a boolean)."""
    decoded: dict[str, str | int | bool] = {}
    for name, value in fields.items():
        text = value.decode()
        if name in _NUMBERS:
            decoded[name.decode()] = int(text)
        elif name == b"passed":
            decoded["passed"] = text == "1"
        else:
            decoded[name.decode()] = text
    kind = decoded.pop("kind")
    return str(kind), decoded


class RunEvents:
    """Appends to runs' event streams."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._paused_until = 0.0

    @classmethod
    def from_url(cls, redis_url: str) -> RunEvents:
        """With a client of its own that fails fast (short timeouts, none of redis-py's retries):
        a Redis that is down or hangs must not hold up a run."""
        client = redis.Redis.from_url(
            redis_url, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        return cls(client)

    def append(self, execution_id: str, kind: Kind, **fields: str | int) -> None:
        if time.monotonic() < self._paused_until:
            return
        key = stream_key(execution_id)
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.xadd(key, {"kind": kind.value, **fields}, maxlen=MAX_ENTRIES, approximate=True)
                pipe.expire(key, EXPIRY_S)
                pipe.execute()
        except redis.exceptions.RedisError as err:
            self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_S
            log.warning("run event not appended; appends paused", extra={"kind": kind.value, "error": repr(err)})

    def start_over(self, execution_id: str, kind: Kind, **fields: str | int) -> None:
        """Replaces the run's events with this one: an operator retried the run after its end, and a
        reader from the start must not stop at the old result."""
        key = stream_key(execution_id)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.xadd(key, {"kind": kind.value, **fields}, maxlen=MAX_ENTRIES, approximate=True)
                pipe.expire(key, EXPIRY_S)
                pipe.execute()
        except redis.exceptions.RedisError as err:
            log.warning("run events not restarted", extra={"kind": kind.value, "error": repr(err)})

    def exists(self, execution_id: str) -> bool:
        return bool(self.client.exists(stream_key(execution_id)))

    def read(self, execution_id: str, after: str, *, block_ms: int, count: int) -> list[tuple[str, dict[bytes, bytes]]]:
        """The entries after `after` (waiting up to block_ms for one): (id, kind and fields). Raises RedisError."""
        found = self.client.xread({stream_key(execution_id): after}, count=count, block=block_ms)
        return [(entry_id.decode(), fields) for entry_id, fields in found[0][1]] if found else []
