"""Bounds on what one HTTP request may make a gateway worker hold, and for how long.

- The head (request line and headers): at most MAX_HEAD_BYTES in at most MAX_HEADERS fields,
  complete within HEAD_TIMEOUT_S of the connection's start or of the previous response
  (BoundedHttpToolsProtocol, uvicorn's protocol with the bounds httptools and uvicorn leave out:
  they buffer a head of any size, copying it whole for each piece that arrives, and wait for it
  forever). A head httptools cannot parse is refused in JSON too.
- The body: at most MAX_BODY_BYTES, refused from its Content-Length when declared and while it
  is read otherwise (a chunked body), and complete within BODY_TIMEOUT_S of its head (BodyLimits);
  declared application/json (JsonBodies).
- Its JSON: an object of bounded depth and number of values (bounded_json_object), so that parsing
  it costs time linear in its size with a small constant, and no more memory than its strings
  (json.loads builds a nested document of any shape, at a cost many times its size); strictly
  JSON (no NaN or Infinity, no number beyond a double, no key twice).

A refusal is JSON {"error": ...} like every other error, and closes the connection: what the
client still sends is never read.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any, NoReturn

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.http_errors import HttpError

MIB = 1024 * 1024
# The largest legitimate body: a PATCH whose source_code is 1 MiB (session_service's bound) of
# characters a JSON encoder may write as \u00XX (6 bytes for each byte of source), with room for
# the rest of the object. A larger body cannot hold a source that session_service would accept.
MAX_BODY_BYTES = 6 * MIB + 64 * 1024
# 1 MiB at 300 kbit/s: a slow client is served, one trickling bytes to hold a connection is not.
BODY_TIMEOUT_S = 30.0
# Browsers and proxies keep heads under 8-16 KiB; this API's own headers are short.
MAX_HEAD_BYTES = 32 * 1024
# Browsers send about 20 fields; many small ones cost a parser callback and a list entry each.
MAX_HEADERS = 100
HEAD_TIMEOUT_S = 10.0


def error_response(status: int, message: str) -> tuple[dict[str, Any], bytes]:
    """An ASGI response start (closing the connection) and its JSON body."""
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    return {"type": "http.response.start", "status": status, "headers": headers}, body


class BodyRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _BoundedBody:
    """An ASGI receive that ends a body passing MAX_BODY_BYTES or arriving after `deadline` (loop time)."""

    def __init__(self, receive: Receive, deadline: float) -> None:
        self._receive = receive
        self._deadline = deadline
        self._size = 0
        self._complete = False

    async def __call__(self) -> Message:
        if self._complete:  # what follows the body: the disconnect, whenever it comes
            return await self._receive()
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            raise BodyRefused(408, f"request body not received within {BODY_TIMEOUT_S:.0f} s") from None
        if message["type"] == "http.request":
            self._size += len(message.get("body", b""))
            if self._size > MAX_BODY_BYTES:
                raise _too_large()
            self._complete = not message.get("more_body", False)
        return message


class BodyLimits:
    """ASGI middleware: a request's body is refused past MAX_BODY_BYTES (413) and BODY_TIMEOUT_S (408)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared_over(scope, MAX_BODY_BYTES):
            await _refuse(send, _too_large())
            return
        deadline = asyncio.get_running_loop().time() + BODY_TIMEOUT_S
        response_started = False

        async def tracked_send(message: Message) -> None:
            nonlocal response_started
            response_started = True
            await send(message)

        try:
            await self.app(scope, _BoundedBody(receive, deadline), tracked_send)
        except BodyRefused as refused:
            if response_started:
                raise
            await _refuse(send, refused)


class JsonBodies:
    """ASGI middleware: a request with a body must declare it application/json (else 415, unread).

    A browser sends a body of another type, or of none, to another origin without asking first
    (no CORS preflight); a JSON one only after the preflight, which LCE_CORS_ORIGINS decides."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_body(scope) and not _declared_json(scope):
            await _refuse(send, BodyRefused(415, "request body must be JSON: send Content-Type: application/json"))
            return
        await self.app(scope, receive, send)


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.lstrip(b"0")):
            return True
    return False


def _declared_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.partition(b";")[0].strip().lower() == b"application/json"
    return False


def _too_large() -> BodyRefused:
    return BodyRefused(413, f"request body over {MAX_BODY_BYTES} bytes")


def _declared_over(scope: Scope, max_bytes: int) -> bool:
    """Whether the Content-Length says more than max_bytes (more digits than it has: more, unparsed)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.isdigit() and (len(value) > len(str(max_bytes)) or int(value) > max_bytes)
    return False


async def _refuse(send: Send, refused: BodyRefused) -> None:
    start, body = error_response(refused.status, refused.message)
    await send(start)
    await send({"type": "http.response.body", "body": body})


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a head over MAX_HEAD_BYTES or MAX_HEADERS (431), or slower
    than HEAD_TIMEOUT_S (408). Pass it to uvicorn as http="gateway.request_limits:BoundedHttpToolsProtocol"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Bytes received since the head being awaited began; None while no head is awaited.
        self._head_bytes: int | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._header_count = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A request httptools cannot parse: uvicorn has logged its message, and would answer it in plain text."""
        self._refuse(400, "malformed HTTP request")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._refuse(431, f"request head has more than {MAX_HEADERS} header fields")
            # Stops the parser (its error is answered by send_400_response, which finds the connection
            # closing): nothing of this request reaches the app.
            raise _HeadRefused
        super().on_header(name, value)

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            self._head_bytes += len(data)
        # Parsed first: the piece that ends a head may carry much of its body.
        super().data_received(data)
        if self._head_bytes is not None and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(431, f"request head over {MAX_HEAD_BYTES} bytes")

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # What arrives while the response is on its way (it may stream for long) is the next request's
        # head: counted against the bound too, without the timer.
        if self._head_bytes is None:
            self._head_bytes = 0

    def on_response_complete(self) -> None:
        # A pipelined request starts now: its head is in already.
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._await_head()

    def _await_head(self) -> None:
        self._head_bytes = 0
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_bytes:
            self._refuse(408, f"request head not received within {HEAD_TIMEOUT_S:.0f} s")
        elif not self.transport.is_closing():
            self.transport.close()  # an idle connection: closed, as uvicorn's keep-alive timeout does

    def _refuse(self, status: int, message: str) -> None:
        self._head_bytes = None
        self._stop_head_timer()
        if self.transport.is_closing():
            return
        start, body = error_response(status, message)
        head = [f"HTTP/1.1 {status} {_REASONS[status]}\r\n".encode()]
        head += [name + b": " + value + b"\r\n" for name, value in start["headers"]]
        self.transport.write(b"".join(head) + b"\r\n" + body)
        self.transport.close()


class _HeadRefused(Exception):
    pass


_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: valid JSON syntax, but no double holds it
        raise HttpError(400, f"request body holds a number out of range: {text[:40]}")
    return value


def _not_json_constant(name: str) -> NoReturn:
    raise HttpError(400, f"request body is not valid JSON: {name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_not_json_constant)
_SPACE = re.compile(r"[ \t\n\r]*")
# Every body of this API is an object of scalars, short lists and small objects (a run's args, a test
# suite's cases): deeper or larger structures are refused before they are built.
MAX_JSON_DEPTH = 4
MAX_JSON_VALUES = 10_000


class _NotJson(Exception):
    pass


def bounded_json_object(raw: bytes) -> dict[str, Any]:
    """The JSON object in `raw`, at most MAX_JSON_DEPTH deep and of at most MAX_JSON_VALUES values.

    Containers are walked here, one step per value; strings and numbers are read by json's C scanner:
    the work is linear in the body, and nothing is built beyond the bounds."""
    try:
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        at = _skip_space(text, 0)
        if not text.startswith("{", at):
            raise HttpError(400, "request body must be a JSON object") if at < len(text) else _NotJson
        reader = _BoundedReader(text)
        body, at = reader.value(at, depth=1)
        if _skip_space(text, at) != len(text):
            raise _NotJson
    except (_NotJson, StopIteration, ValueError) as exc:  # ValueError: bad UTF-8, a number over 4300 digits
        raise HttpError(400, "request body is not valid JSON") from exc
    return body  # type: ignore[no-any-return]


class _BoundedReader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.values = 0

    def value(self, at: int, depth: int) -> tuple[Any, int]:
        self.values += 1
        if self.values > MAX_JSON_VALUES:
            raise HttpError(400, f"request body holds more than {MAX_JSON_VALUES} JSON values")
        if self.text.startswith(("[", "{"), at):
            if depth > MAX_JSON_DEPTH:
                raise HttpError(400, f"request body nests deeper than {MAX_JSON_DEPTH} levels")
            return self._object(at, depth) if self.text.startswith("{", at) else self._array(at, depth)
        return _DECODER.scan_once(self.text, at)  # StopIteration where there is no value

    def _object(self, at: int, depth: int) -> tuple[dict[str, Any], int]:
        found: dict[str, Any] = {}
        at = _skip_space(self.text, at + 1)
        if self.text.startswith("}", at):
            return found, at + 1
        while True:
            if not self.text.startswith('"', at):
                raise _NotJson
            key, at = _DECODER.scan_once(self.text, at)
            if key in found:  # json.loads keeps the last; another reader may keep the first
                raise HttpError(400, f"request body repeats the key {json.dumps(key)[:80]}")
            at = _skip_space(self.text, at)
            if not self.text.startswith(":", at):
                raise _NotJson
            found[key], at = self.value(_skip_space(self.text, at + 1), depth + 1)
            at = self._after_item(at, "}")
            if at < 0:
                return found, -at

    def _array(self, at: int, depth: int) -> tuple[list[Any], int]:
        found: list[Any] = []
        at = _skip_space(self.text, at + 1)
        if self.text.startswith("]", at):
            return found, at + 1
        while True:
            item, at = self.value(at, depth + 1)
            found.append(item)
            at = self._after_item(at, "]")
            if at < 0:
                return found, -at

    def _after_item(self, at: int, closing: str) -> int:
        """Past the comma and the space after an item; minus the index past `closing` at the end."""
        at = _skip_space(self.text, at)
        if self.text.startswith(closing, at):
            return -(at + 1)
        if not self.text.startswith(",", at):
            raise _NotJson
        return _skip_space(self.text, at + 1)


def _skip_space(text: str, at: int) -> int:
    return _SPACE.match(text, at).end()  # type: ignore[union-attr]  # a starred class always matches
