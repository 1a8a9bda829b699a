"""GET /executions/{id}/interact: a WebSocket to an interactive run.

Client to server, JSON text messages:
    {"type": "stdin", "data": "..."}   to the program's stdin (base64 of the bytes when the run's encoding is)
    {"type": "close"}                  closes the program's stdin; closing the socket does too
Server to client, one JSON message per event of the run, as /stream gives them:
    {"type": "status" | "stdout" | "stderr", "id": ..., <the event's fields>}
    {"type": "result", "id": ..., "execution": <the body of GET /executions/{id}>}, then the server closes (1000)
    {"type": "error", "status": <HTTP status>, "message": ...} for a message refused; the socket stays open

Input goes straight to the run's input stream and output comes from its event stream (Redis, as for
/stream): no thread and no backend call per message.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from typing import Any

import grpc
import redis.exceptions
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from common.run_input import MAX_CHUNK_BYTES, MAX_INPUT_BYTES, Appended
from gateway.http_errors import HttpError
from gateway.request_limits import bounded_json_object
from gateway.run_stream import RunStreams
from gateway.translate import program_input

# The largest message a client may send: a 64 KiB chunk as JSON text (escaped, or base64) fits.
MAX_MESSAGE_BYTES = 512 * 1024
_CLOSE_NORMAL = 1000
_CLOSE_BROKEN = 1011  # the run's events cannot be read: reconnect, or read GET /executions/{id}
# How long what a departed client sent may take to reach the run's input.
_DRAIN_S = 5.0


class Interaction:
    def __init__(self, websocket: WebSocket, streams: RunStreams, execution: dict[str, Any]) -> None:
        self.websocket = websocket
        self.streams = streams
        self.execution = execution
        self.execution_id: str = execution["execution_id"]
        self._base64 = execution.get("encoding") == "base64"
        self._sending = asyncio.Lock()

    async def serve(self) -> None:
        """Until the run's result is sent or the client leaves; the program's stdin is closed either way."""
        await self.websocket.accept()
        events = asyncio.create_task(self._send_events())
        typed = asyncio.create_task(self._relay_input())
        try:
            await asyncio.wait({events, typed}, return_when=asyncio.FIRST_COMPLETED)
            if events.done() and events.exception() is not None and not typed.done():
                # The client left while its events were being sent: what it sent before it left still
                # reaches the program, before the end of file.
                await asyncio.wait({typed}, timeout=_DRAIN_S)
        finally:
            for task in (events, typed):
                task.cancel()
            with suppress(redis.exceptions.RedisError):
                await self.streams.send_input(self.execution_id, None)
        if typed.done() and not typed.cancelled():
            typed.exception()  # retrieved: a client that left while it was told of an error is no failure
        if events.done() and not events.cancelled() and events.exception() is None:
            with suppress(WebSocketDisconnect, RuntimeError, OSError):  # the client may have left meanwhile
                await self.websocket.close(events.result())

    async def _send_events(self) -> int:
        """Sends the run's events; the close code to end with. Raises ClientDisconnected (an OSError)
        once the client has left."""
        try:
            async for event in self.streams.events(self.execution, None):
                if event.kind:
                    await self._send(event.message())
        except (redis.exceptions.RedisError, grpc.aio.AioRpcError, HttpError):
            await self._send_error(503, "the run's events cannot be read: reconnect, or read GET /executions/{id}")
            return _CLOSE_BROKEN
        return _CLOSE_NORMAL

    async def _relay_input(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                await self._take(message)
            except HttpError as refused:
                await self._send_error(refused.status, refused.message)
            except redis.exceptions.RedisError:
                await self._send_error(503, "the input was not sent: a backend is unavailable, send it again")

    async def _take(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        if text is None:
            raise HttpError(400, 'send JSON text messages: {"type": "stdin", "data": "..."} or {"type": "close"}')
        body = bounded_json_object(text.encode())
        kind = body.get("type")
        if kind == "close":
            await self.streams.send_input(self.execution_id, None)
            return
        if kind != "stdin" or type(body.get("data")) is not str:
            raise HttpError(400, 'a message is {"type": "stdin", "data": "<text>"} or {"type": "close"}')
        data = program_input(body["data"], base64_encoded=self._base64, what="data")
        if len(data) > MAX_CHUNK_BYTES:
            raise HttpError(413, f"a message of input is at most {MAX_CHUNK_BYTES} bytes")
        appended = await self.streams.send_input(self.execution_id, data)
        if appended is Appended.FULL:
            raise HttpError(413, f"an interactive run takes at most {MAX_INPUT_BYTES} bytes of input in all")
        if appended is Appended.CLOSED:
            raise HttpError(409, "the program's stdin is closed")

    async def _send_error(self, status: int, message: str) -> None:
        await self._send(json.dumps({"type": "error", "status": status, "message": message}))

    async def _send(self, text: str) -> None:
        async with self._sending:
            await self.websocket.send_text(text)
