"""The REST client: `Client` blocks, `AsyncClient` is the same API for asyncio.

    with Client("http://127.0.0.1:8080", key="...") as lce:          # or LCE_URL / LCE_API_KEY
        python = next(l for l in lce.languages() if l.name == "python")
        session = lce.create_session(python.id, "print(6*7)")
        execution = lce.run(session.session_id, wait=10)           # ends within 10 s: the result
        execution = lce.wait(execution.execution_id)               # else wait for it
        for event in lce.stream(execution.execution_id): ...       # or follow it as it happens

Every error answer raises an LceError (lce_client/errors.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, TypeVar

import httpx

from lce_client import calls
from lce_client.calls import Call, RunOptions
from lce_client.events import StreamFollower
from lce_client.interaction import AsyncInteraction, Interaction
from lce_client.models import Event, Execution, ExecutionSummary, Language, Session, SessionState, SourceFile

T = TypeVar("T")


class Client:
    def __init__(self, url: str | None = None, key: str | None = None, *, timeout: float = calls.DEFAULT_TIMEOUT_S):
        self.url, self.key = calls.target(url, key)
        self._http = httpx.Client(base_url=self.url, headers=calls.auth_headers(self.key), timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        timeout: Any = call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT
        try:
            response = self._http.request(
                call.method, call.path, json=call.body, params=call.params, headers=call.headers, timeout=timeout
            )
        except httpx.TransportError as exc:
            raise calls.unreachable(self.url, exc) from exc
        return call.result(response)

    def languages(self) -> list[Language]:
        return self._send(calls.languages())

    def language(self, language_id: str) -> Language:
        """A language with its template and main file's name."""
        return self._send(calls.language(language_id))

    def create_session(
        self, language_id: str, source_code: str | None = None, files: Iterable[SourceFile] | None = None
    ) -> SessionState:
        return self._send(calls.create_session(language_id, source_code, files))

    def session(self, session_id: str) -> Session:
        return self._send(calls.get_session(session_id))

    def update_session(
        self, session_id: str, source_code: str | None = None, files: Iterable[SourceFile] | None = None
    ) -> SessionState:
        """Saves the source, the other files (replaced as a whole) or both."""
        return self._send(calls.update_session(session_id, source_code, files))

    def close_session(self, session_id: str) -> SessionState:
        return self._send(calls.close_session(session_id))

    def run(
        self,
        session_id: str,
        options: RunOptions | None = None,
        *,
        wait: float | None = None,
        idempotency_key: str | None = None,
    ) -> Execution:
        """Starts a run of the session's program: QUEUED, or with `wait` (seconds, at most 30) its result
        when it ends within that time."""
        return self._send(calls.run(session_id, options or RunOptions(), wait, idempotency_key))

    def executions(self, session_id: str, limit: int = 10) -> list[ExecutionSummary]:
        """The session's runs, newest first."""
        return self._send(calls.list_executions(session_id, limit))

    def execution(self, execution_id: str) -> Execution:
        return self._send(calls.get_execution(execution_id))

    def wait(self, execution_id: str, timeout: float | None = None) -> Execution:
        """The run once it is terminal, or its state when `timeout` seconds have passed (None: no limit).
        Long polls (GET ?wait=N): the answer comes as soon as the run ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            execution = self._send(calls.get_execution(execution_id, _next_wait(deadline)))
            if execution.terminal or _passed(deadline):
                return execution

    def stream(self, execution_id: str, last_event_id: str | None = None) -> Iterator[Event]:
        """The run's events (after `last_event_id`) as they happen, its result last. A broken
        connection is resumed where it broke."""
        follower = StreamFollower(last_event_id)
        while True:
            try:
                with self._http.stream(
                    "GET",
                    calls.stream_path(execution_id),
                    headers=calls.stream_headers(follower.last_event_id),
                    timeout=calls.STREAM_READ_TIMEOUT_S,
                ) as response:
                    if not response.is_success:
                        response.read()
                        calls.json_of(response)
                    for line in response.iter_lines():
                        event = follower.take(line)
                        if event is not None:
                            yield event
                        if follower.done:
                            return
                why = "it ended before the result"
            except httpx.TransportError as exc:
                why = str(exc) or type(exc).__name__
            time.sleep(follower.ended(why))

    def interact(self, execution_id: str) -> Interaction:
        """A WebSocket to an interactive run (created with RunOptions(interactive=True)): send its stdin,
        read its events. Use it as a context manager."""
        encoding = self.execution(execution_id).encoding
        return Interaction.connect(calls.websocket_url(self.url, execution_id), self.key, encoding)


class AsyncClient:
    """`Client` for asyncio: the same methods, awaited; `stream` is an async iterator."""

    def __init__(self, url: str | None = None, key: str | None = None, *, timeout: float = calls.DEFAULT_TIMEOUT_S):
        self.url, self.key = calls.target(url, key)
        self._http = httpx.AsyncClient(base_url=self.url, headers=calls.auth_headers(self.key), timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call[T]) -> T:
        timeout: Any = call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT
        try:
            response = await self._http.request(
                call.method, call.path, json=call.body, params=call.params, headers=call.headers, timeout=timeout
            )
        except httpx.TransportError as exc:
            raise calls.unreachable(self.url, exc) from exc
        return call.result(response)

    async def languages(self) -> list[Language]:
        return await self._send(calls.languages())

    async def language(self, language_id: str) -> Language:
        return await self._send(calls.language(language_id))

    async def create_session(
        self, language_id: str, source_code: str | None = None, files: Iterable[SourceFile] | None = None
    ) -> SessionState:
        return await self._send(calls.create_session(language_id, source_code, files))

    async def session(self, session_id: str) -> Session:
        return await self._send(calls.get_session(session_id))

    async def update_session(
        self, session_id: str, source_code: str | None = None, files: Iterable[SourceFile] | None = None
    ) -> SessionState:
        return await self._send(calls.update_session(session_id, source_code, files))

    async def close_session(self, session_id: str) -> SessionState:
        return await self._send(calls.close_session(session_id))

    async def run(
        self,
        session_id: str,
        options: RunOptions | None = None,
        *,
        wait: float | None = None,
        idempotency_key: str | None = None,
    ) -> Execution:
        return await self._send(calls.run(session_id, options or RunOptions(), wait, idempotency_key))

    async def executions(self, session_id: str, limit: int = 10) -> list[ExecutionSummary]:
        return await self._send(calls.list_executions(session_id, limit))

    async def execution(self, execution_id: str) -> Execution:
        return await self._send(calls.get_execution(execution_id))

    async def wait(self, execution_id: str, timeout: float | None = None) -> Execution:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            execution = await self._send(calls.get_execution(execution_id, _next_wait(deadline)))
            if execution.terminal or _passed(deadline):
                return execution

    async def stream(self, execution_id: str, last_event_id: str | None = None) -> AsyncIterator[Event]:
        follower = StreamFollower(last_event_id)
        while True:
            try:
                async with self._http.stream(
                    "GET",
                    calls.stream_path(execution_id),
                    headers=calls.stream_headers(follower.last_event_id),
                    timeout=calls.STREAM_READ_TIMEOUT_S,
                ) as response:
                    if not response.is_success:
                        await response.aread()
                        calls.json_of(response)
                    async for line in response.aiter_lines():
                        event = follower.take(line)
                        if event is not None:
                            yield event
                        if follower.done:
                            return
                why = "it ended before the result"
            except httpx.TransportError as exc:
                why = str(exc) or type(exc).__name__
            await asyncio.sleep(follower.ended(why))

    async def interact(self, execution_id: str) -> AsyncInteraction:
        """As `Client.interact`: use it as an async context manager."""
        encoding = (await self.execution(execution_id)).encoding
        return await AsyncInteraction.connect(calls.websocket_url(self.url, execution_id), self.key, encoding)


def _next_wait(deadline: float | None) -> float:
    """The next long poll's wait: at most the API's bound, at most what is left."""
    if deadline is None:
        return calls.MAX_WAIT_S
    return min(calls.MAX_WAIT_S, max(0.001, deadline - time.monotonic()))


def _passed(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline
