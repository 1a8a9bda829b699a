"""The next execution, prepared before it arrives: a slot, its fresh work dir and its first sandbox.

The launcher asks for the next one as an execution ends; a thread of its own prepares it while
the worker reports the result and waits for the next job, so a job finds its first stage's
sandbox waiting. The thread lives as long as the launcher: bwrap's --die-with-parent follows
the thread that started it, and would kill a prepared sandbox when a short-lived thread ended.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from executor.sandbox.prespawn import Sandbox
from executor.sandbox.slots import Slot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    slot: Slot
    workdir: Path
    sandbox: Sandbox | None  # the first stage's, waiting


class Preparer:
    """Keeps at most one Prepared execution in the making or ready."""

    def __init__(self, prepare: Callable[[], Prepared], discard: Callable[[Prepared], None]) -> None:
        self._prepare = prepare
        self._discard = discard
        self._lock = threading.Lock()
        self._ready: Future[Prepared] | None = None
        self._requests: queue.SimpleQueue[Future[Prepared] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="lce-sandbox-preparer", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Starts preparing the next execution unless one is already on its way."""
        with self._lock:
            if self._ready is None:
                self._ready = Future()
                self._requests.put(self._ready)

    def take(self) -> Prepared | None:
        """The prepared execution, once ready; None when none was asked for or preparing it failed."""
        with self._lock:
            future, self._ready = self._ready, None
        if future is None:
            return None
        try:
            return future.result()
        except BaseException:
            if not future.done():  # interrupted while waiting (a job timeout): it must not leak
                future.add_done_callback(self._discard_when_ready)
                raise
            log.warning("could not prepare the next execution; preparing it on the job's path", exc_info=True)
            return None

    def close(self) -> None:
        """Stops the thread and discards what it prepared."""
        with self._lock:
            future, self._ready = self._ready, None
        self._requests.put(None)
        self._thread.join()
        if future is not None:
            self._discard_when_ready(future)

    def _serve(self) -> None:
        while (future := self._requests.get()) is not None:
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._prepare())
            except BaseException as exc:
                future.set_exception(exc)

    def _discard_when_ready(self, future: Future[Prepared]) -> None:
        if future.exception() is None:
            self._discard(future.result())
