"""Keeps every accepted run moving, with the database as the source of truth. Two sweeps:

- QUEUED rows that are due (their creator's grace or their retry's backoff is over): a row
  whose attempt has no job (a crash between row and job, Redis down at enqueue time, Redis
  restarted empty, a retry waiting for its backoff) is enqueued; a row whose job ended without
  ever reporting a start (the executor could not reach this service) lost that attempt, which
  is retried or given up like any failure of the machinery (attempts.py); so is a row whose job
  an executor took longer than a lease ago without its start ever landing (the executor died
  between taking the job and reporting: RQ itself would notice only at the job's timeout).
- RUNNING rows whose lease expired: the executor was killed or cut off; the attempt is lost.

Every replica may run it: enqueueing is unique per attempt's job id and every transition is a
conditional update on the attempt, so two sweeps never act twice. Both queries are indexed
(models.py) and the due rows are paged through, so a backlog costs a few reads per sweep.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from prometheus_client import Counter
from rq.job import JobStatus

from common import logs
from common.job import job_id
from common.outcome import UNFINISHED, Status
from execution_service.attempts import JOB_LOST, LEASE_EXPIRED, START_LOST
from execution_service.executions import Executions, job_for, utc_now
from execution_service.job_queue import ENDED, JobQueue, JobState
from execution_service.models import AttemptRef
from execution_service.settings import ExecutionServiceConfig

log = logging.getLogger(__name__)

SWEEP_BATCH = 200
# The most due QUEUED rows one sweep looks at; the next sweep goes on from the oldest again.
SWEEP_MAX_ROWS = 10_000
QUEUED_ONLY = frozenset({Status.QUEUED})

ENQUEUED = "enqueued_missing_job"
# What this replica's sweeps changed: an attempt enqueued (ENQUEUED), or ended for the reason of
# attempts.py (then retried or given up, as lce_execution_retries and lce_executions_finished say).
ACTIONS = Counter("lce_reconciler_actions", "Attempts the reconciler enqueued or ended, by action", ["action"])


class Reconciler:
    def __init__(
        self,
        executions: Executions,
        queue: JobQueue,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.executions = executions
        self.repository = executions.repository
        self.queue = queue
        self.interval_s = interval_s
        self.clock = clock
        # Leases are judged only after this service has been able to receive renewals for a whole
        # lease: after a restart, or a database outage, executors that were renewing in vain get
        # one lease to reach it again before their runs are taken from them.
        self._renewable_since: datetime | None = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def sweep(self) -> int:
        """One pass of both sweeps; returns how many attempts it enqueued or ended."""
        return self.enqueue_due() + self.recover_expired_leases()

    def enqueue_due(self) -> int:
        acted = 0
        after: AttemptRef | None = None
        for _ in range(SWEEP_MAX_ROWS // SWEEP_BATCH):
            now = self.clock()
            due = self.repository.due_queued(now, after, SWEEP_BATCH)
            states = self.queue.states([job_id(ref.execution_id, ref.attempt) for ref in due])
            for ref, state in zip(due, states, strict=True):
                if state is None:
                    acted += self._enqueue(ref)
                elif state.status in ENDED:
                    self._end_attempt(ref, JOB_LOST)
                    acted += 1
                elif self._start_lost(state, now):
                    # Only while still QUEUED: a start landing meanwhile makes the attempt live after all.
                    self._end_attempt(ref, START_LOST, allowed=QUEUED_ONLY)
                    acted += 1
            if len(due) < SWEEP_BATCH:
                break
            after = due[-1]
        return acted

    def recover_expired_leases(self) -> int:
        now = self.clock()
        if not self._judging_leases(now):
            return 0
        expired = self.repository.expired_leases(now, SWEEP_BATCH)
        for ref in expired:
            self._end_attempt(ref, LEASE_EXPIRED)
        return len(expired)

    def _end_attempt(self, ref: AttemptRef, reason: str, *, allowed: frozenset[Status] = UNFINISHED) -> None:
        if self.executions.end_attempt(ref.execution_id, ref.attempt, ref.executor_id, reason, allowed=allowed):
            ACTIONS.labels(reason).inc()

    def _judging_leases(self, now: datetime) -> bool:
        if self._renewable_since is None:
            self._renewable_since = now
        return now - self._renewable_since >= self.executions.lease

    def _start_lost(self, state: JobState, now: datetime) -> bool:
        """A job taken over a lease ago whose row is still QUEUED: its executor's start never landed.
        An executor that is only cut off retries its report meanwhile; it is refused once the
        attempt is over, so the attempt runs once. Judged like leases, never right after an outage."""
        if state.status != JobStatus.STARTED or state.started_at is None:
            return False
        return now - state.started_at > self.executions.lease and self._judging_leases(now)

    def _enqueue(self, ref: AttemptRef) -> int:
        execution = self.repository.get(ref.execution_id)
        if execution is None or execution.attempt != ref.attempt or not self.queue.enqueue(job_for(execution)):
            return 0
        ACTIONS.labels(ENQUEUED).inc()
        token = logs.execution_id.set(execution.id)
        log.info("enqueued an attempt that had no job", extra={"attempt": execution.attempt})
        logs.execution_id.reset(token)
        return 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep()
            except Exception:
                # A sweep fails while the database or Redis is down; the next one retries, and
                # the thread must outlive the outage. Renewals failed meanwhile, too.
                log.exception("reconciler sweep failed")
                self._renewable_since = None


def lease_recovery_bound(config: ExecutionServiceConfig) -> float:
    """Seconds after an executor dies within which its run is queued again: the lease runs out, a sweep
    notices, the retry's backoff passes, a sweep enqueues it (then an idle executor takes it)."""
    first_backoff_s = config.retry_backoff_s[0] if config.retry_backoff_s else 0.0
    return config.lease_s + first_backoff_s + 2 * config.reconcile_interval_s
