"""The gRPC adapters: proto messages in, domain calls, proto messages out. No rules live here."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from common import logs
from common.errors import InvalidArgument, LceError, Unavailable
from common.grpc_client import deadline
from common.grpc_server import INFRASTRUCTURE_ERRORS
from common.job import Compare, Encoding, Suite, TestCase
from common.outcome import (
    CaseStatus,
    RunOutcome,
    Status,
    case_status_to_proto,
    outcome_from_proto,
    outcome_to_proto,
    status_to_proto,
)
from common.run_events import Kind
from execution_service.change_feed import ChangeFeed
from execution_service.executions import Executions
from execution_service.models import Event, Execution, RunEvent
from lce.execution.v1 import execution_pb2 as pb
from lce.execution.v1 import execution_pb2_grpc as pb_grpc

_ENCODING_TO_PROTO: dict[Encoding, int] = {Encoding.UTF8: pb.ENCODING_UTF8, Encoding.BASE64: pb.ENCODING_BASE64}
_ENCODING_FROM_PROTO: dict[int, Encoding] = {
    pb.ENCODING_UNSPECIFIED: Encoding.UTF8,
    **{value: encoding for encoding, value in _ENCODING_TO_PROTO.items()},
}


class ExecutionServicer(pb_grpc.ExecutionServiceServicer):
    def __init__(self, executions: Executions, changes: ChangeFeed) -> None:
        self.executions = executions
        self.changes = changes
        self._run_watchers = threading.BoundedSemaphore(MAX_RUN_WATCHERS)

    def CreateExecution(
        self, request: pb.CreateExecutionRequest, context: grpc.ServicerContext
    ) -> pb.CreateExecutionResponse:
        encoding = _ENCODING_FROM_PROTO.get(request.encoding)
        if encoding is None:
            raise InvalidArgument(f"unknown encoding {request.encoding}")
        execution = self.executions.create(
            request.session_id,
            _optional(request, "time_limit_ms"),
            _optional(request, "memory_limit_mb"),
            timeout=deadline(context),
            idempotency_key=_optional(request, "idempotency_key"),
            compile_time_limit_ms=_optional(request, "compile_time_limit_ms"),
            compile_memory_limit_mb=_optional(request, "compile_memory_limit_mb"),
            encoding=encoding,
            stdin=request.stdin,
            args=list(request.args),
            interactive=request.interactive,
            suite=_suite(request),
            time_left=context.time_remaining,
        )
        return pb.CreateExecutionResponse(execution=execution_to_proto(execution))

    def GetExecution(self, request: pb.GetExecutionRequest, context: grpc.ServicerContext) -> pb.GetExecutionResponse:
        return pb.GetExecutionResponse(execution=execution_to_proto(self.executions.get(request.execution_id)))

    def ListExecutions(
        self, request: pb.ListExecutionsRequest, context: grpc.ServicerContext
    ) -> pb.ListExecutionsResponse:
        found = self.executions.list_for_session(
            request.session_id,
            request.limit if request.HasField("limit") else None,
            timeout=deadline(context),
        )
        return pb.ListExecutionsResponse(executions=[execution_to_proto(execution) for execution in found])

    def ListExecutionEvents(
        self, request: pb.ListExecutionEventsRequest, context: grpc.ServicerContext
    ) -> pb.ListExecutionEventsResponse:
        events = self.executions.events(request.execution_id)
        return pb.ListExecutionEventsResponse(events=[_event_to_proto(event) for event in events])

    def WatchExecutions(
        self, request: pb.WatchExecutionsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExecutionChange]:
        # A stream is not translated by common.grpc_server's interceptor: its one error is mapped here.
        try:
            watcher = self.changes.watch()
        except Unavailable as err:
            context.abort(grpc.StatusCode.UNAVAILABLE, err.message)
        try:
            # Ends the iteration below when the caller leaves or the server stops; False: already over.
            if not context.add_callback(lambda: self.changes.forget(watcher)):
                return
            yield pb.ExecutionChange()
            yield from watcher
        finally:
            self.changes.forget(watcher)
        context.abort(grpc.StatusCode.UNAVAILABLE, "the change feed was interrupted: changes may have been missed")

    def WatchExecution(self, request: pb.WatchExecutionRequest, context: grpc.ServicerContext) -> Iterator[pb.RunEvent]:
        with self._run_watch(context):
            for event in self.executions.watch(request.execution_id, request.after, context.is_active):
                yield _run_event_to_proto(event)

    def InteractExecution(
        self, requests: Iterator[pb.InteractRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.RunEvent]:
        with self._run_watch(context):
            first = next(requests, None)
            if first is None:
                return
            execution = self.executions.open_interaction(first.execution_id)
            relay = _InputRelay(self.executions, execution.id)
            threading.Thread(target=relay.run, args=(first, requests), name="lce-interact", daemon=True).start()
            for event in self.executions.watch(execution.id, "", lambda: context.is_active() and relay.error is None):
                yield _run_event_to_proto(event)
            if relay.error is not None:
                raise relay.error

    @contextmanager
    def _run_watch(self, context: grpc.ServicerContext) -> Iterator[None]:
        """One of the replica's bounded run watches; a stream's errors are mapped here, since
        common.grpc_server's interceptor translates unary calls only."""
        if not self._run_watchers.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many runs watched on this replica, retry shortly")
        try:
            yield
        except LceError as err:
            context.set_trailing_metadata(err.trailing_metadata())
            context.abort(err.code, err.message)
        except INFRASTRUCTURE_ERRORS:
            context.abort(grpc.StatusCode.UNAVAILABLE, "a dependency of the service is unavailable")
        finally:
            self._run_watchers.release()


class _InputRelay:
    """Sends what the caller of InteractExecution streams to the run's stdin, on a thread of its own
    while the call's thread sends the run's events back. The caller's side ending closes stdin."""

    def __init__(self, executions: Executions, execution_id: str) -> None:
        self.executions = executions
        self.execution_id = execution_id
        self.error: LceError | None = None  # ends the call, from the call's thread

    def run(self, first: pb.InteractRequest, rest: Iterator[pb.InteractRequest]) -> None:
        token = logs.execution_id.set(self.execution_id)
        try:
            for request in itertools.chain([first], rest):
                if request.stdin:
                    self.executions.send_input(self.execution_id, request.stdin)
                if request.close_stdin:
                    break
        except grpc.RpcError:
            pass  # the caller left: its stdin closes below
        except LceError as err:
            self.error = err
        except INFRASTRUCTURE_ERRORS:
            self.error = Unavailable("the run's input cannot be sent: a dependency is unavailable")
        finally:
            with suppress(*INFRASTRUCTURE_ERRORS):
                self.executions.send_input(self.execution_id, None)
            logs.execution_id.reset(token)


# Per-run watches served at once by one replica, each holding a thread of the service's streams for its life.
MAX_RUN_WATCHERS = 32


class ExecutorReportServicer(pb_grpc.ExecutorReportServiceServicer):
    def __init__(self, executions: Executions) -> None:
        self.executions = executions

    def ReportStarted(
        self, request: pb.ReportStartedRequest, context: grpc.ServicerContext
    ) -> pb.ReportStartedResponse:
        should_run = self.executions.report_started(request.execution_id, request.executor_id, request.attempt)
        return pb.ReportStartedResponse(should_run=should_run, lease_s=int(self.executions.lease.total_seconds()))

    def RenewLease(self, request: pb.RenewLeaseRequest, context: grpc.ServicerContext) -> pb.RenewLeaseResponse:
        renewed = self.executions.renew_lease(request.execution_id, request.executor_id, request.attempt)
        return pb.RenewLeaseResponse(renewed=renewed)

    def ReportResult(self, request: pb.ReportResultRequest, context: grpc.ServicerContext) -> pb.ReportResultResponse:
        status = self.executions.report_result(
            request.execution_id,
            request.executor_id,
            request.attempt,
            _outcome(request.result),
            list(request.warnings),
        )
        return pb.ReportResultResponse(status=status_to_proto(status))


def register(server: grpc.Server, executions: Executions, changes: ChangeFeed) -> None:
    pb_grpc.add_ExecutionServiceServicer_to_server(ExecutionServicer(executions, changes), server)
    pb_grpc.add_ExecutorReportServiceServicer_to_server(ExecutorReportServicer(executions), server)


_COMPARE_FROM_PROTO: dict[int, Compare] = {
    pb.COMPARE_MODE_UNSPECIFIED: Compare.TRIM,
    **{pb.CompareMode.Value(f"COMPARE_MODE_{compare.name}"): compare for compare in Compare},
}


def _suite(request: pb.CreateExecutionRequest) -> Suite | None:
    """The request's test suite; None for a plain run, which may not set the suite's options either."""
    compare = _COMPARE_FROM_PROTO.get(request.compare)
    if compare is None:
        raise InvalidArgument(f"unknown compare mode {request.compare}")
    tolerance = _optional(request, "float_tolerance")
    if not request.tests:
        if request.compare or tolerance is not None or request.stop_on_first_failure:
            raise InvalidArgument("compare, float_tolerance and stop_on_first_failure go with tests")
        return None
    cases = tuple(
        TestCase(case.name, case.stdin, tuple(case.args), _optional(case, "expected_output")) for case in request.tests
    )
    return Suite(cases, compare, tolerance, request.stop_on_first_failure)


def _optional(message: Any, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


def _outcome(result: pb.RunResult) -> RunOutcome:
    try:
        return outcome_from_proto(result)
    except ValueError as err:
        raise InvalidArgument(
            f"a result's status must be COMPLETED, FAILED or TIMEOUT with a known reason: {err}"
        ) from err


# Every gateway gets every change: a result rides along only while it is small, as most are.
MAX_CARRIED_BYTES = 16 * 1024


def change_to_proto(execution_id: str, finished: Execution | None) -> pb.ExecutionChange:
    """The announcement of a change (change_feed.py); a finished run's carries its final state unless large."""
    change = pb.ExecutionChange(execution_id=execution_id)
    if finished is not None and _output_chars(finished) <= MAX_CARRIED_BYTES:
        final = execution_to_proto(finished)
        if final.ByteSize() <= MAX_CARRIED_BYTES:
            change.finished.CopyFrom(final)
    return change


def _output_chars(execution: Execution) -> int:
    """At most the outputs' size in bytes: a long output is not copied into a message only to be dropped."""
    outcome = execution.outcome
    return len(outcome.stdout) + len(outcome.stderr) if outcome is not None else 0


def execution_to_proto(execution: Execution) -> pb.Execution:
    message = pb.Execution(
        id=execution.id,
        session_id=execution.session_id,
        status=status_to_proto(execution.status),
        language=execution.language,
        time_limit_ms=execution.time_limit_ms,
        memory_limit_mb=execution.memory_limit_mb,
        created_at=_timestamp(execution.created_at),
        attempt=execution.attempt,
        executor_id=execution.executor_id,
        warnings=execution.warnings,
        compile_time_limit_ms=execution.compile_time_limit_ms,
        compile_memory_limit_mb=execution.compile_memory_limit_mb,
        encoding=_ENCODING_TO_PROTO[execution.encoding],
        interactive=execution.interactive,
        tests_total=len(execution.suite.cases) if execution.suite is not None else 0,
    )
    if execution.started_at is not None:
        message.started_at.CopyFrom(_timestamp(execution.started_at))
    if execution.finished_at is not None:
        message.finished_at.CopyFrom(_timestamp(execution.finished_at))
    if execution.outcome is not None:
        message.result.CopyFrom(outcome_to_proto(execution.outcome))
    return message


def _run_event_to_proto(event: RunEvent) -> pb.RunEvent:
    fields = event.fields
    message = pb.RunEvent(
        id=event.id,
        kind=event.kind,
        attempt=int(fields.get("attempt", 0)),
        reason=str(fields.get("reason", "")),
        offset=int(fields.get("offset", 0)),
        data=str(fields.get("data", "")),
        index=int(fields.get("index", 0)),
        name=str(fields.get("name", "")),
        passed=bool(fields.get("passed", False)),
    )
    if event.kind == Kind.TEST.value:
        message.case_status = case_status_to_proto(CaseStatus(str(fields["status"])))
    elif "status" in fields:
        message.status = status_to_proto(Status(str(fields["status"])))
    if event.execution is not None:
        message.execution.CopyFrom(execution_to_proto(event.execution))
    return message


def _event_to_proto(event: Event) -> pb.ExecutionEvent:
    return pb.ExecutionEvent(
        type=event.type,
        at=_timestamp(event.at),
        attempt=event.attempt,
        executor_id=event.executor_id or "",
        reason=event.reason or "",
    )


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp
