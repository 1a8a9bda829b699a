"""GET /executions/{id}/stream: a run's events as Server-Sent Events, read from its event stream.

execution_service and the executor append a run's states and output to a Redis Stream of its own
(common/run_events.py); each open SSE stream reads it with a blocking XREAD on the event loop, no
thread of its own. Every event's id is its stream entry id, so a client that reconnects with
Last-Event-ID gets exactly what followed. A run whose stream is gone (expired an hour after its
last event, or lost with Redis) is replayed from its stored result, with ids 0-1, 0-2, ...
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import redis.asyncio
import redis.exceptions

from common import run_input
from common.run_events import Kind, decode_entry, is_entry_id, stream_key
from common.run_input import Appended
from gateway.execution_reads import ExecutionReads

MAX_STREAMS = 1000  # open at once in one gateway process; past it, 503
MAX_STREAMS_PER_RUN = 64  # of one run, in one gateway process
KEEP_ALIVE_S = 15  # a comment line this often keeps idle streams alive through proxies
# Entries read at a time: each holds at most 64 KiB of output (executor/live_output.py).
_READ_COUNT = 4
# A replayed output is sent in pieces of this many characters.
_REPLAY_CHUNK = 64 * 1024
_TERMINAL = {"COMPLETED", "FAILED", "TIMEOUT"}
_REPLAY_ID_PREFIX = "0-"


class RunStreams:
    def __init__(self, redis_url: str, reads: ExecutionReads) -> None:
        self._client = redis.asyncio.Redis.from_url(
            redis_url,
            max_connections=MAX_STREAMS + 8,
            socket_connect_timeout=3,
            # Longer than a blocking read waits: a quiet stream is not a dead Redis.
            socket_timeout=KEEP_ALIVE_S + 5,
            health_check_interval=30,
        )
        self._reads = reads
        self._append_input = self._client.register_script(run_input.APPEND_SCRIPT)
        self.open = 0
        self._open_by_run: dict[str, int] = {}

    def full(self, execution_id: str) -> bool:
        return self.open >= MAX_STREAMS or self._open_by_run.get(execution_id, 0) >= MAX_STREAMS_PER_RUN

    async def close(self) -> None:
        await self._client.aclose()

    async def events(self, execution: dict[str, Any], last_event_id: str | None) -> AsyncIterator[RunStreamEvent]:
        """The run's events after last_event_id, until its result; `execution` is its state now (GET's body).
        A keep-alive (kind "") comes after each quiet while. Raises RedisError or AioRpcError when the
        stream cannot go on."""
        execution_id = execution["execution_id"]
        self.open += 1
        self._open_by_run[execution_id] = self._open_by_run.get(execution_id, 0) + 1
        try:
            after = last_event_id if is_entry_id(last_event_id) else "0-0"
            if execution["status"] in _TERMINAL and not await self._client.exists(stream_key(execution_id)):
                for event in _replay(execution, after):
                    yield event
                return
            async for event in self._follow(execution_id, after):
                yield event
        finally:
            self.open -= 1
            self._open_by_run[execution_id] -= 1
            if not self._open_by_run[execution_id]:
                del self._open_by_run[execution_id]

    async def sse(self, execution: dict[str, Any], last_event_id: str | None) -> AsyncIterator[bytes]:
        """`events` as Server-Sent Events."""
        try:
            async for event in self.events(execution, last_event_id):
                yield event.sse()
        except (redis.exceptions.RedisError, grpc.aio.AioRpcError):
            # The stream cannot go on; the client reconnects with its Last-Event-ID, or reads GET.
            yield b": stream interrupted, reconnect\n\n"

    async def send_input(self, execution_id: str, data: bytes | None) -> Appended:
        """Appends to an interactive run's stdin (common/run_input.py), or closes it (None). Raises RedisError."""
        return Appended(await self._append_input(keys=run_input.keys(execution_id), args=run_input.script_args(data)))

    async def _follow(self, execution_id: str, after: str) -> AsyncIterator[RunStreamEvent]:
        key = stream_key(execution_id)
        while True:
            found = await self._client.xread({key: after}, count=_READ_COUNT, block=KEEP_ALIVE_S * 1000)
            if not found:
                yield RunStreamEvent("", after, "")
                # Quiet for a while: a run whose result never reached its stream (Redis lost it) ends here.
                answer, finished = await self._reads.read_when_finished(execution_id, 0.001)
                if finished:
                    yield RunStreamEvent("result", after, answer.decode())
                    return
                continue
            for entry_id, fields in found[0][1]:
                after = entry_id.decode()
                kind, data = decode_entry(fields)
                if kind == Kind.RESULT:
                    answer, _ = await self._reads.read_when_finished(execution_id, 5.0)
                    yield RunStreamEvent("result", after, answer.decode())
                    return
                yield RunStreamEvent(kind, after, _json(data))


@dataclass(frozen=True)
class RunStreamEvent:
    kind: str  # status, stdout, stderr or result; "" for a keep-alive
    id: str
    data: str  # JSON: the event's fields; for result, the body of GET /executions/{id}

    def sse(self) -> bytes:
        if not self.kind:
            return b": keep-alive\n\n"
        return f"id: {self.id}\nevent: {self.kind}\ndata: {self.data}\n\n".encode()

    def message(self) -> str:
        """As a WebSocket message: {"type", "id", and the fields}; a result's body under "execution"."""
        if self.kind == "result":  # the body as it is: not parsed again
            return f'{{"type":"result","id":"{self.id}","execution":{self.data}}}'
        return _json({"type": self.kind, "id": self.id, **json.loads(self.data)})


def _replay(execution: dict[str, Any], after: str) -> Iterator[RunStreamEvent]:
    """A finished run's events from its stored result, past the replay id `after` (0-N), made one at a
    time: the output goes in pieces, so a stream holds at most one piece beside the result."""
    seen = int(after.removeprefix(_REPLAY_ID_PREFIX)) if after.startswith(_REPLAY_ID_PREFIX) else 0
    events = _replayed(execution)
    for number, (kind, data) in enumerate(events, 1):
        if number > seen:
            yield RunStreamEvent(kind, f"{_REPLAY_ID_PREFIX}{number}", data())


def _replayed(execution: dict[str, Any]) -> Iterator[tuple[str, Callable[[], str]]]:
    yield "status", lambda: _json({"status": execution["status"]})
    for stream in ("stdout", "stderr"):
        text = execution.get(stream) or ""
        for start in range(0, len(text), _REPLAY_CHUNK):
            piece = text[start : start + _REPLAY_CHUNK]
            # The offset counts bytes, as a live stream's does (in base64, of the decoded bytes).
            offset = _offset_of(text[:start], execution.get("encoding"))
            yield stream, lambda piece=piece, offset=offset: _json({"offset": offset, "data": piece})  # type: ignore[misc]
    for index, case in enumerate(execution.get("tests") or ()):
        verdict = {"index": index, "name": case["name"], "status": case["status"], "passed": case["passed"]}
        yield "test", lambda verdict=verdict, reason=case["reason"] or "": _json({**verdict, "reason": reason})  # type: ignore[misc]
    yield "result", lambda: _json(execution)


def _offset_of(before: str, encoding: str | None) -> int:
    return len(before) // 4 * 3 if encoding == "base64" else len(before.encode())


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
