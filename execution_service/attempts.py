"""Attempts of a run: which failures are retried, after how long, and when a run is given up.

Only the machinery's failures are retried, never the program's: a compile error, a non-zero
exit, a timeout or a memory kill is the run's result. Retries are decided here, in
execution_service, with the database as their memory (the row's attempt number, its
RETRIED events, the backoff's end in `not_before`), rather than with RQ's `Retry`:

- the failures to retry include those an executor cannot report (it was SIGKILLed, or it
  could not reach this service), which RQ only notices on its registry cleanup, by default
  every 10 minutes, and which no `on_failure` callback of the dead executor can report;
- RQ keeps its retry count and its scheduled retries in Redis, which may restart empty,
  and `Retry` intervals need a worker running the scheduler;
- the attempt history must be readable with the execution (its RETRIED events).

The reconciler (reconciler.py) enqueues an attempt once its `not_before` has passed.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.outcome import Reason, RunOutcome

INTERNAL_ERROR = Reason.INTERNAL_ERROR.value  # also the start of a failed attempt's reason

# Why an attempt ended without a result (the RETRIED event's reason, and the final stderr).
LEASE_EXPIRED = "lease_expired"  # its executor stopped renewing its lease: killed, or cut off
JOB_LOST = "job_ended_without_start"  # its RQ job ended before the executor could report a start
START_LOST = "start_not_reported"  # an executor took its RQ job but never reported a start: killed, or cut off


@dataclass(frozen=True)
class RetryPolicy:
    backoff_s: tuple[float, ...]  # one wait per retry: (2, 4, 8) is three retries, four attempts in all

    def backoff_before(self, attempt: int) -> float | None:
        """Seconds to wait before starting `attempt` (2 or later) after the previous one failed;
        None when that would exceed the retries allowed, so the run must end instead."""
        retry = attempt - 1
        if not 1 <= retry <= len(self.backoff_s):
            return None
        return self.backoff_s[retry - 1]


def is_infrastructure_failure(outcome: RunOutcome) -> bool:
    """An executor's result that says the machinery, not the program, failed (e.g. the sandbox could not be set up)."""
    return outcome.reason is Reason.INTERNAL_ERROR
