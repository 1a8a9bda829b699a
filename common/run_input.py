"""An interactive run's standard input, in a Redis Stream of its own: from the client to the executor.

Whoever talks to the program (the gateway's WebSocket, execution_service's InteractExecution)
appends what the client sends (`data` entries) and, when the client closes stdin, one `eof`. The
executor running the program reads the stream from its first entry, so what was typed before the
program started is not lost, and writes it to the program's stdin as it comes
(executor/live_input.py). One Lua script appends, so that the cap on a run's input and the end of
file hold however many writers there are; its text is shared by the sync and asyncio clients.
"""

from __future__ import annotations

from enum import Enum

import redis

MAX_INPUT_BYTES = 1024 * 1024  # all a run is sent, as for a run's stdin
MAX_CHUNK_BYTES = 64 * 1024  # one message
EXPIRY_S = 3600

# KEYS: the stream, its bookkeeping hash. ARGV: kind ("data" or "eof"), data, MAX_INPUT_BYTES, EXPIRY_S.
# Returns 1 appended, 0 stdin already closed, -1 over the cap (nothing appended then).
APPEND_SCRIPT = """
if redis.call('HGET', KEYS[2], 'closed') then return 0 end
if ARGV[1] == 'eof' then
  redis.call('HSET', KEYS[2], 'closed', '1')
else
  local size = string.len(ARGV[2])
  if redis.call('HINCRBY', KEYS[2], 'bytes', size) > tonumber(ARGV[3]) then
    redis.call('HINCRBY', KEYS[2], 'bytes', -size)
    return -1
  end
end
redis.call('XADD', KEYS[1], '*', 'kind', ARGV[1], 'data', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""


class Appended(Enum):
    OK = 1
    CLOSED = 0  # the client closed stdin before
    FULL = -1  # the run was sent MAX_INPUT_BYTES already


def keys(execution_id: str) -> list[str]:
    """The stream and its bookkeeping, in one hash slot (a Redis Cluster runs the script on one node)."""
    return [f"lce:run-input:{{{execution_id}}}", f"lce:run-input-meta:{{{execution_id}}}"]


def script_args(data: bytes | None) -> list[bytes | str | int]:
    """The script's ARGV for `data`, or for the end of file when data is None."""
    kind = "eof" if data is None else "data"
    return [kind, data or b"", MAX_INPUT_BYTES, EXPIRY_S]


class RunInput:
    """Appends to and reads runs' input streams with a synchronous client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._append = client.register_script(APPEND_SCRIPT)

    def append(self, execution_id: str, data: bytes | None) -> Appended:
        """Appends `data`, or the end of file when None. Raises RedisError."""
        return Appended(self._append(keys=keys(execution_id), args=script_args(data)))

    def read(self, execution_id: str, after: str, *, block_ms: int) -> list[tuple[str, bytes | None]]:
        """The entries after `after` (waiting up to block_ms for one): (id, data, or None for the end of file)."""
        found = self.client.xread({keys(execution_id)[0]: after}, block=block_ms)
        if not found:
            return []
        return [
            (entry_id.decode(), None if fields[b"kind"] == b"eof" else fields[b"data"])
            for entry_id, fields in found[0][1]
        ]
