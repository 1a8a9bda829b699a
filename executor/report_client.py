"""The executor's side of ExecutorReportService: one reused channel, a deadline on every call.

Every call is idempotent, so the channel's service config retries it on UNAVAILABLE for a
moment (common.grpc_client). Starts and results are precious beyond that: while
execution_service is unreachable (restarting, its database down) they are retried with
backoff for up to `report_retry_s`, so a result is kept and delivered once the service is
back, and the worker takes no other job meanwhile. A lease renewal is not: the next one is
a few seconds away. Any other failure raises grpc.RpcError to the job.

The channel presents the executor's credentials (its certificate, LCE_EXECUTOR_TOKEN): execution_service
takes reports from executors only (common/service_auth.py).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc

from common.config import GrpcSecurity
from common.grpc_client import DEFAULT_DEADLINE_S, channel
from common.outcome import outcome_to_proto
from executor.verdicts import Verdict
from lce.execution.v1 import execution_pb2 as pb
from lce.execution.v1 import execution_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

# The service is down or overloaded rather than refusing the report: worth another try.
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 2.0

T = TypeVar("T")


@dataclass(frozen=True)
class Start:
    should_run: bool
    lease_s: int


@dataclass(frozen=True)
class _SentStart:
    """A start report sent ahead (ReportClient.send_start), its answer not yet taken."""

    execution_id: str
    attempt: int
    answer: grpc.Future


class ReportClient:
    def __init__(
        self,
        addr: str,
        executor_id: str,
        *,
        report_retry_s: float,
        deadline_s: float = DEFAULT_DEADLINE_S,
        sleep: Callable[[float], None] = time.sleep,
        security: GrpcSecurity | None = None,
    ) -> None:
        """`security`: the executor's settings' (none: plaintext, no token)."""
        self.executor_id = executor_id
        self.report_retry_s = report_retry_s
        self.deadline_s = deadline_s
        self._sleep = sleep
        security = security or GrpcSecurity()
        self._channel: grpc.Channel = channel(addr, security, token=security.executor_token)
        self._stub = pb_grpc.ExecutorReportServiceStub(self._channel)
        self._sent_start: _SentStart | None = None

    def send_start(self, execution_id: str, attempt: int) -> None:
        """Sends the attempt's start report without waiting: `started` then takes its answer."""
        answer = self._stub.ReportStarted.future(self._start_request(execution_id, attempt), timeout=self.deadline_s)
        self._sent_start = _SentStart(execution_id, attempt, answer)

    def started(self, execution_id: str, attempt: int) -> Start:
        """Takes the attempt; should_run is False when it must not run (the run is over, or it is stale).
        The answer to the report send_start sent for this attempt if any; a report that failed is sent
        again and retried like any other (a repeated start is answered the same)."""
        response = self._sent_answer(execution_id, attempt)
        if response is None:
            request = self._start_request(execution_id, attempt)
            response = self._deliver(lambda: self._stub.ReportStarted(request, timeout=self.deadline_s))
        return Start(should_run=response.should_run, lease_s=response.lease_s)

    def _sent_answer(self, execution_id: str, attempt: int) -> pb.ReportStartedResponse | None:
        """The answer to the report send_start sent for this attempt; None when none was, or it failed."""
        sent, self._sent_start = self._sent_start, None
        if sent is None or (sent.execution_id, sent.attempt) != (execution_id, attempt):
            return None
        try:
            return sent.answer.result()
        except grpc.RpcError:
            return None

    def _start_request(self, execution_id: str, attempt: int) -> pb.ReportStartedRequest:
        return pb.ReportStartedRequest(execution_id=execution_id, executor_id=self.executor_id, attempt=attempt)

    def renew(self, execution_id: str, attempt: int) -> bool:
        """Renews the lease once; False when the run was taken from this executor."""
        request = pb.RenewLeaseRequest(execution_id=execution_id, executor_id=self.executor_id, attempt=attempt)
        return bool(self._stub.RenewLease(request, timeout=self.deadline_s).renewed)

    def result(
        self, execution_id: str, attempt: int, verdict: Verdict, *, sandbox: str, warnings: Sequence[str] = ()
    ) -> None:
        request = pb.ReportResultRequest(
            execution_id=execution_id,
            executor_id=self.executor_id,
            attempt=attempt,
            result=outcome_to_proto(dataclasses.replace(verdict, sandbox=sandbox)),
            warnings=warnings,
        )
        self._deliver(lambda: self._stub.ReportResult(request, timeout=self.deadline_s))

    def close(self) -> None:
        self._channel.close()

    def _deliver(self, call: Callable[[], T]) -> T:
        """Makes the call, retrying while the service is unreachable, for up to report_retry_s."""
        give_up_at = time.monotonic() + self.report_retry_s
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                return call()
            except grpc.RpcError as err:
                code = err.code()  # type: ignore[attr-defined]
                if code not in _RETRYABLE or time.monotonic() + backoff > give_up_at:
                    raise
                log.warning("execution_service unreachable; report kept, retrying", extra={"grpc_code": code.name})
            self._sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)
