"""Keeping the lease on a run alive while the program runs: a small thread renewing it.

execution_service takes a run back from an executor that stops renewing (killed, or cut
off), so renewals come three times per lease: one lost renewal never costs the run. A
renewal answered "not yours" means the run went to a newer attempt; this executor then
stops renewing, and its late result is not taken while that attempt runs.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

import grpc

from executor.report_client import ReportClient

log = logging.getLogger(__name__)

RENEWALS_PER_LEASE = 3


class LeaseKeeper:
    def __init__(self, reports: ReportClient, execution_id: str, attempt: int, lease_s: float) -> None:
        self.reports = reports
        self.execution_id = execution_id
        self.attempt = attempt
        self.interval_s = max(0.5, lease_s / RENEWALS_PER_LEASE)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_stopped, name="lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                renewed = self.reports.renew(self.execution_id, self.attempt)
            except grpc.RpcError as err:
                log.warning("lease not renewed; trying again", extra={"grpc_code": err.code().name})  # type: ignore[attr-defined]
                continue
            if not renewed:
                # The program runs on to its end: its result is still taken unless a newer attempt is running.
                log.warning("lease lost: the run was handed to another attempt", extra={"attempt": self.attempt})
                return
