"""The executor's side of ExecutorReportService: one reused channel, a deadline on every call.

Both calls are idempotent, so the channel's service config retries them on UNAVAILABLE
(common.grpc_client). Any other failure raises grpc.RpcError to the job, which RQ then
records as failed.
"""

from __future__ import annotations

import grpc

from common.grpc_client import DEFAULT_DEADLINE_S, channel
from executor.verdicts import StageMetrics, Status, Verdict
from lce.execution.v1 import execution_pb2 as pb
from lce.execution.v1 import execution_pb2_grpc as pb_grpc

_STATUS = {
    Status.COMPLETED: pb.EXECUTION_STATUS_COMPLETED,
    Status.FAILED: pb.EXECUTION_STATUS_FAILED,
    Status.TIMEOUT: pb.EXECUTION_STATUS_TIMEOUT,
}


class ReportClient:
    def __init__(self, addr: str, executor_id: str, *, deadline_s: float = DEFAULT_DEADLINE_S) -> None:
        self.executor_id = executor_id
        self.deadline_s = deadline_s
        self._channel: grpc.Channel = channel(addr)
        self._stub = pb_grpc.ExecutorReportServiceStub(self._channel)

    def started(self, execution_id: str, attempt: int) -> bool:
        """Reports RUNNING; False when the execution is already terminal and must not run."""
        response = self._stub.ReportStarted(
            pb.ReportStartedRequest(execution_id=execution_id, executor_id=self.executor_id, attempt=attempt),
            timeout=self.deadline_s,
        )
        return response.should_run

    def result(self, execution_id: str, verdict: Verdict, *, sandbox: str) -> None:
        self._stub.ReportResult(
            pb.ReportResultRequest(
                execution_id=execution_id,
                executor_id=self.executor_id,
                result=run_result(verdict, sandbox=sandbox),
            ),
            timeout=self.deadline_s,
        )

    def close(self) -> None:
        self._channel.close()


def run_result(verdict: Verdict, *, sandbox: str) -> pb.RunResult:
    return pb.RunResult(
        status=_STATUS[verdict.status],
        reason=verdict.reason,
        stdout=verdict.stdout,
        stderr=verdict.stderr,
        stdout_truncated=verdict.stdout_truncated,
        stderr_truncated=verdict.stderr_truncated,
        exit_code=verdict.exit_code,
        execution_time_ms=verdict.execution_time_ms,
        memory_kb=verdict.memory_kb,
        stages=[_stage(stage) for stage in verdict.stages],
        sandbox=sandbox,
    )


def _stage(stage: StageMetrics) -> pb.StageMetrics:
    return pb.StageMetrics(
        name=stage.name,
        cpu_time_ms=stage.cpu_time_ms,
        wall_time_ms=stage.wall_time_ms,
        memory_kb=stage.memory_kb,
        exit_code=stage.exit_code,
        signal=stage.signal,
    )
