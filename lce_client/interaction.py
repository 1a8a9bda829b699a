"""A WebSocket to an interactive run (GET /executions/{id}/interact; gateway/interaction.py): what is
sent goes to the program's stdin, its events come back as `Event`s, the result last, then the server
closes. A message the server refused comes as an `error` event and the run goes on."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from lce_client.calls import auth_headers
from lce_client.errors import LceError, UnreachableError, error_for
from lce_client.events import from_message
from lce_client.models import Event

# A result carries the run's whole output (up to 1 MiB a stream, more as JSON text).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
OPEN_TIMEOUT_S = 10.0
_CLOSE = json.dumps({"type": "close"})


def stdin_message(data: str | bytes, encoding: str | None) -> str:
    """A stdin message: text as it is, bytes as UTF-8 (base64 of them in a base64 run)."""
    raw = data.encode() if isinstance(data, str) else data
    text = base64.b64encode(raw).decode() if encoding == "base64" else raw.decode()
    return json.dumps({"type": "stdin", "data": text})


def handshake_error(exc: Exception, url: str) -> LceError:
    if isinstance(exc, InvalidStatus):
        response = exc.response
        return error_for(response.status_code, response.headers, response.body or b"")
    return UnreachableError(f"cannot open a WebSocket to {url}: {exc}")


def broken(exc: ConnectionClosedError) -> LceError:
    """The socket closed before the result: 1011 when the gateway cannot read the run's events."""
    reason = exc.rcvd.reason if exc.rcvd is not None else ""
    return UnreachableError(f"the run's WebSocket closed before its result ({reason or exc}); GET the execution")


def _options(key: str | None) -> dict[str, Any]:
    return {"additional_headers": auth_headers(key), "max_size": MAX_MESSAGE_BYTES, "open_timeout": OPEN_TIMEOUT_S}


class Interaction:
    def __init__(self, connection: ClientConnection, encoding: str | None) -> None:
        self._connection = connection
        self.encoding = encoding

    @classmethod
    def connect(cls, url: str, key: str | None, encoding: str | None) -> Interaction:
        try:
            # legacy=True: the connection itself, which this class closes (as a context manager too).
            return cls(connect(url, legacy=True, **_options(key)), encoding)
        except (InvalidStatus, OSError, TimeoutError) as exc:
            raise handshake_error(exc, url) from exc

    def __enter__(self) -> Interaction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: str | bytes) -> None:
        """To the program's stdin (64 KiB a message at most)."""
        self._connection.send(stdin_message(data, self.encoding))

    def close_stdin(self) -> None:
        """The program reads end of file once what was sent is read."""
        self._connection.send(_CLOSE)

    def close(self) -> None:
        """Closes the socket (and so the program's stdin); the run goes on."""
        self._connection.close()

    def __iter__(self) -> Iterator[Event]:
        """The run's events until the server closes the socket after the result."""
        try:
            for message in self._connection:
                yield from_message(message)
        except ConnectionClosedOK:
            return
        except ConnectionClosedError as exc:
            raise broken(exc) from exc


class AsyncInteraction:
    def __init__(self, connection: AsyncConnection, encoding: str | None) -> None:
        self._connection = connection
        self.encoding = encoding

    @classmethod
    async def connect(cls, url: str, key: str | None, encoding: str | None) -> AsyncInteraction:
        try:
            return cls(await async_connect(url, **_options(key)), encoding)
        except (InvalidStatus, OSError, TimeoutError) as exc:
            raise handshake_error(exc, url) from exc

    async def __aenter__(self) -> AsyncInteraction:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, data: str | bytes) -> None:
        await self._connection.send(stdin_message(data, self.encoding))

    async def close_stdin(self) -> None:
        await self._connection.send(_CLOSE)

    async def close(self) -> None:
        await self._connection.close()

    async def __aiter__(self) -> AsyncIterator[Event]:
        try:
            async for message in self._connection:
                yield from_message(message)
        except ConnectionClosedOK:
            return
        except ConnectionClosedError as exc:
            raise broken(exc) from exc
