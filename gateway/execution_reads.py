"""Reads of one execution for GET /executions/{id}, kept in memory as far as they may be.

At most one read of an execution is in flight per gateway process: a poll arriving while one is
on its way waits for it instead of calling execution_service again. When the change feed
announces a change of an execution that is being polled, the poll that follows finds its new
state in memory (gateway/execution_cache.py) instead of waiting for a read: the final state
that a finished run's change carries, or else the state read at once on the announcement.

A read may wait for the run to end (`?wait=N`): it is woken by the change feed, by a change of
its execution or by the feed coming back (changes may have been missed while it was away),
never by polling; with the feed away it waits out its time and reads once more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from contextlib import suppress
from typing import Any, NamedTuple, TypeVar

import grpc
from fastapi.responses import JSONResponse

from common import execution_json
from gateway.auth import PRINCIPAL
from gateway.clients import Backends
from gateway.execution_cache import LiveExecutions, TerminalExecutions, Ticket
from gateway.http_errors import HttpError
from lce.execution.v1 import execution_pb2

log = logging.getLogger(__name__)

T = TypeVar("T")

# Reads waiting for their run to end, in one gateway process; past this, a wait answers at once.
MAX_WAITERS = 10_000


class ExecutionReads:
    def __init__(self, backends: Backends, terminal: TerminalExecutions, live: LiveExecutions) -> None:
        self._backends = backends
        self._terminal = terminal
        self._live = live
        self._in_flight: dict[str, tuple[asyncio.Task[_Read], Ticket]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()  # every read and refresh not yet done
        self._waiting: dict[str, set[asyncio.Event]] = {}  # by execution: a wake-up for each waiting read
        self._waiters = 0

    async def read(self, execution_id: str) -> bytes:
        """The answer's JSON body; a failed call raises grpc.aio.AioRpcError, another tenant's execution
        is 404 (an HttpError). Reads are of any tenant's execution, shared by the requests in flight,
        and each request is then told only of its own tenant's."""
        return _owned(await self._read(execution_id), execution_id).answer

    async def read_when_finished(self, execution_id: str, seconds: float) -> tuple[bytes, bool]:
        """The answer as soon as the run is terminal, or else its state after `seconds`; and whether
        it is terminal."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        key = execution_id.lower()
        while True:
            if self._waiters >= MAX_WAITERS:
                read = _owned(await self._read(execution_id), execution_id)
                return read.answer, read.terminal
            # Kept terminal answers hold only while the feed is live (it announces an operator's retry).
            finished = self._terminal.get(key, PRINCIPAL.get().caller.tenant) if self._live.live else None
            if finished is not None:
                return finished, True
            woken = asyncio.Event()  # taken before the read: a change announced during it wakes us
            self._waiting.setdefault(key, set()).add(woken)
            self._waiters += 1
            try:
                read = _owned(await self._read(execution_id), execution_id)
                if read.terminal or loop.time() >= deadline:
                    return read.answer, read.terminal
                with suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), deadline - loop.time())
            finally:
                self._waiters -= 1
                waiting = self._waiting.get(key)
                if waiting is not None:
                    waiting.discard(woken)
                    if not waiting:
                        del self._waiting[key]

    def feed_restarted(self) -> None:
        """The change feed is live again: changes may have been missed meanwhile; every wait looks again."""
        # A terminal run retried by an operator while the feed was away would be answered as it ended.
        self._terminal.clear()
        for waiting in self._waiting.values():
            for woken in waiting:
                woken.set()
        self._waiting.clear()

    async def _read(self, execution_id: str) -> _Read:
        key = execution_id.lower()
        ticket = self._live.ticket()  # before the read: a change announced while it is in flight voids it
        joined = self._in_flight.get(key)
        # Joined only while the feed vouches that nothing changed since that read began: it has stayed
        # up since (same epoch), and a change of this execution takes its read out of _in_flight.
        if joined is not None and self._live.live and joined[1].epoch == ticket.epoch:
            task = joined[0]
        else:
            task = self._start(self._read_and_keep(execution_id, ticket))
            self._in_flight[key] = (task, ticket)
            task.add_done_callback(lambda done: self._forget(key, done))
        # Shielded: a client that goes away must not cancel the read others wait for.
        return await asyncio.shield(task)

    def changed(self, change: execution_pb2.ExecutionChange) -> None:
        """Told by the change feed. A read already in flight may predate the change: later polls
        do not join it. An execution someone polls is kept in its final state when the change
        carries it, or else read again at once."""
        execution_id = change.execution_id
        finished = change.HasField("finished") and execution_json.is_terminal(change.finished)
        if not finished:
            self._terminal.discard(execution_id)  # a terminal run an operator retried
        waiting = self._waiting.pop(execution_id, set())
        in_flight = self._in_flight.pop(execution_id, None)
        polled = self._live.changed(execution_id) or in_flight is not None or bool(waiting)
        if not polled:
            return  # nobody here asks: not worth a read, nor the memory
        if finished:
            self._terminal.put(execution_id, change.finished.tenant, _answer(change.finished))
        else:
            self._start(self._refresh(execution_id))
        for woken in waiting:  # after the above: they find the new state in memory, or its read on its way
            woken.set()

    async def close(self) -> None:
        """Ends what is in flight (at shutdown): nothing is left to finish on a closed event loop."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError, Exception):  # each was answered, or logged, already
                await task

    def _start(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read_and_keep(self, execution_id: str, ticket: Ticket) -> _Read:
        response = await self._backends.any_tenants_executions.GetExecution(
            execution_pb2.GetExecutionRequest(execution_id=execution_id), timeout=self._backends.deadline_s
        )
        execution = response.execution
        read = _Read(_answer(execution), execution_json.is_terminal(execution), execution.tenant)
        # Kept until an operator retries it once terminal (if no retry overtook the read); otherwise for
        # as long as the change feed vouches for it.
        if read.terminal and self._live.vouches(execution.id, ticket):
            self._terminal.put(execution.id, execution.tenant, read.answer)
        else:
            self._live.put(execution.id, execution.tenant, read.answer, ticket)
        return read

    async def _refresh(self, execution_id: str) -> None:
        try:
            await self._read(execution_id)  # of whichever tenant: kept for the polls that follow
        except grpc.aio.AioRpcError as err:
            # The poll that follows reads it itself and answers the error if it persists.
            log.debug("refresh of a changed execution failed", extra={"code": err.code().name})
        except Exception:
            log.exception("refresh of a changed execution failed")

    def _forget(self, key: str, done: asyncio.Task[_Read]) -> None:
        if key in self._in_flight and self._in_flight[key][0] is done:
            del self._in_flight[key]
        if not done.cancelled():
            done.exception()  # retrieved: its waiters, if any are left, raise it; nobody else must log it


class _Read(NamedTuple):
    answer: bytes  # the JSON body
    terminal: bool
    tenant: str


def _owned(read: _Read, execution_id: str) -> _Read:
    """The read, if the execution is the requesting tenant's: another's does not exist for it."""
    if read.tenant != PRINCIPAL.get().caller.tenant:
        raise HttpError(404, f"execution {execution_id.lower()} not found")
    return read


def _answer(execution: execution_pb2.Execution) -> bytes:
    """The JSON body of GET /executions/{id}."""
    return bytes(JSONResponse(execution_json.execution_detail(execution)).body)
