"""An interactive run's stdin as the client types it: read from its input stream (common/run_input.py).

A thread of the run blocks on the stream and hands each entry to the pump that feeds the program
(executor/process.py) through `take`, waking the pump with a byte on a pipe: the pump never waits on
Redis, and the thread never touches the program. When the input cannot be read (Redis is gone) the
program's stdin is closed, as if the client had closed it: a program waiting for input then ends
instead of waiting out its time limit.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import suppress

import redis.exceptions

from common.run_input import RunInput

log = logging.getLogger(__name__)

_BLOCK_MS = 250  # how long one read waits: also how long the thread may outlive the run


class LiveInput:
    def __init__(self, source: RunInput, execution_id: str) -> None:
        self._source = source
        self._execution_id = execution_id
        self._pending = bytearray()
        self._eof = False
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.wakeup_fd, self._wakeup_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._relay, name="lce-live-input", daemon=True)
        self._thread.start()

    def take(self) -> tuple[bytes, bool]:
        """What came since the last call, and whether stdin is closed after it (called by the pump)."""
        with suppress(BlockingIOError):
            os.read(self.wakeup_fd, 4096)
        with self._lock:
            data, self._pending = bytes(self._pending), bytearray()
            return data, self._eof

    def close(self) -> None:
        """The run is over. The thread finishes its current read and closes its end of the pipe itself,
        so no descriptor is closed under it."""
        self._stopped.set()
        os.close(self.wakeup_fd)

    def _relay(self) -> None:
        after = "0-0"
        try:
            while not self._stopped.is_set() and not self._eof:
                for entry_id, data in self._source.read(self._execution_id, after, block_ms=_BLOCK_MS):
                    after = entry_id
                    self._hand_over(data)
        except redis.exceptions.RedisError as err:
            log.warning("the run's input cannot be read; its stdin is closed", extra={"error": repr(err)})
            self._hand_over(None)
        finally:
            os.close(self._wakeup_write)

    def _hand_over(self, data: bytes | None) -> None:
        with self._lock:
            if data is None:
                self._eof = True
            else:
                self._pending += data
        with suppress(BlockingIOError, BrokenPipeError):
            os.write(self._wakeup_write, b"\1")
