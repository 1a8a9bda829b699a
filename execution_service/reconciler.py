"""Re-enqueues QUEUED executions whose RQ job is missing.

The row is written before the job, so a crash between the two writes, Redis being down at
enqueue time, or Redis restarting empty leaves a QUEUED row with no job. The database is the
source of truth: this sweep finds such rows and queues them again. Every replica may run it;
enqueueing is unique per job id, so two sweeps never queue a run twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from common import logs
from execution_service.executions import job_for, utc_now
from execution_service.job_queue import JobQueue
from execution_service.repository import Repository

log = logging.getLogger(__name__)

SWEEP_BATCH = 200


class Reconciler:
    def __init__(
        self,
        repository: Repository,
        queue: JobQueue,
        *,
        interval_s: float = 5.0,
        min_age_s: float = 5.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.repository = repository
        self.queue = queue
        self.interval_s = interval_s
        # Younger rows are left alone: their creator is probably still enqueueing them.
        self.min_age = timedelta(seconds=min_age_s)
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def sweep(self) -> int:
        """One pass; returns how many runs it enqueued."""
        enqueued = 0
        for execution in self.repository.queued_before(self.clock() - self.min_age, SWEEP_BATCH):
            if self.queue.exists(execution.id) or not self.queue.enqueue(job_for(execution)):
                continue
            token = logs.execution_id.set(execution.id)
            log.info("re-enqueued a queued execution that had no job")
            logs.execution_id.reset(token)
            enqueued += 1
        return enqueued

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep()
            except Exception:
                # A sweep fails while the database or Redis is down; the next one retries, and
                # the thread must outlive the outage.
                log.exception("reconciler sweep failed")
