"""Answers GET /executions/{id} for terminal executions from memory, before any routing or backend call.

A terminal execution never changes again (execution_service's transitions are monotonic), so
its serialized answer is final: clients polling for a result, and anyone reading it again,
cost the gateway one dictionary lookup. Each gateway process keeps its own cache, bounded in
bytes (least recently used answers leave first); large answers are not kept.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = "/executions/"
MAX_BYTES = 32 * 1024 * 1024
MAX_ENTRY_BYTES = 256 * 1024


class TerminalExecutions:
    """Serialized answers by canonical execution id, least recently used evicted first."""

    def __init__(self, max_bytes: int = MAX_BYTES, max_entry_bytes: int = MAX_ENTRY_BYTES) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._bytes = 0
        self._answers: OrderedDict[str, bytes] = OrderedDict()

    def get(self, execution_id: str) -> bytes | None:
        answer = self._answers.get(execution_id)
        if answer is not None:
            self._answers.move_to_end(execution_id)
        return answer

    def put(self, execution_id: str, answer: bytes) -> None:
        if len(answer) > self.max_entry_bytes or execution_id in self._answers:
            return
        self._answers[execution_id] = answer
        self._bytes += len(answer)
        while self._bytes > self.max_bytes:
            _, evicted = self._answers.popitem(last=False)
            self._bytes -= len(evicted)


class ServeTerminalExecutions:
    """ASGI middleware: a cached answer leaves at once; everything else goes on to the app."""

    def __init__(self, app: ASGIApp, cache: TerminalExecutions) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = _cached(self.cache, scope)
        if answer is None:
            await self.app(scope, receive, send)
            return
        headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def _cached(cache: TerminalExecutions, scope: Scope) -> bytes | None:
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path: str = scope["path"]
    # Ids are stored in canonical (lowercase) form; an upper-case spelling of one is the same execution.
    return cache.get(path[len(PREFIX) :].lower()) if path.startswith(PREFIX) else None
