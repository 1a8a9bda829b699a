"""Keeps the process's LiveExecutions told of every change, over ExecutionService.WatchExecutions.

Runs for the life of the gateway process. Whenever the stream is not live (not yet opened,
ended, refused, execution_service away) LiveExecutions keeps nothing, and every poll of an
unfinished execution is read from execution_service as if there were no feed at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress

import grpc

from gateway.execution_cache import LiveExecutions
from lce.execution.v1 import execution_pb2, execution_pb2_grpc

log = logging.getLogger(__name__)

# Every gRPC call carries a deadline: the stream is reopened this often, on whichever replica.
STREAM_S = 300.0
FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0


class ChangeFollower:
    def __init__(
        self,
        executions: execution_pb2_grpc.ExecutionServiceStub,
        live: LiveExecutions,
        changed: Callable[[execution_pb2.ExecutionChange], None],
        restarted: Callable[[], None],
    ) -> None:
        self._executions = executions
        self._live = live
        self._changed = changed  # told each change (gateway/execution_reads.py)
        self._restarted = restarted  # told when the feed is live again: changes may have been missed
        self._stopping = asyncio.Event()
        self._stream: grpc.aio.UnaryStreamCall | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        """Cancels the stream's call rather than the task: its pending read then completes here and
        now, not on the event loop after it closed."""
        self._stopping.set()
        if self._stream is not None:
            self._stream.cancel()
        if self._task is not None:
            await self._task

    async def _follow(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._stopping.is_set():
            self._stream = self._executions.WatchExecutions(execution_pb2.WatchExecutionsRequest(), timeout=STREAM_S)
            try:
                async for change in self._stream:
                    if change.execution_id:
                        self._changed(change)
                    else:
                        self._live.feed_up()
                        self._restarted()
                        backoff = FIRST_BACKOFF_S
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    log.info("change feed interrupted; polls go to execution_service", extra={"code": err.code().name})
            except asyncio.CancelledError:
                if not self._stopping.is_set():
                    raise  # the task itself was cancelled, not the call by stop()
            except Exception:
                # Whatever broke the stream, the follower lives on: polls go to execution_service meanwhile.
                log.exception("change feed failed; following it again")
            finally:
                self._live.feed_down()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)
