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

from common import logs, service_auth
from common.errors import InvalidArgument, LceError, PermissionDenied, Unauthenticated, Unavailable
from common.executor_registry import ExecutorInfo
from common.grpc_client import deadline
from common.grpc_server import INFRASTRUCTURE_ERRORS
from common.job import Compare, Encoding, Lane, Suite, TestCase
from common.outcome import (
    CaseStatus,
    Reason,
    RunOutcome,
    Status,
    case_status_to_proto,
    outcome_from_proto,
    outcome_to_proto,
    reason_from_proto,
    status_from_proto,
    status_to_proto,
)
from common.release import VERSION
from common.run_events import Kind
from common.tenancy import ANY_TENANT, caller_from_metadata
from execution_service.api_keys import ApiKey, ApiKeys
from execution_service.change_feed import ChangeFeed
from execution_service.executions import Executions
from execution_service.models import Event, Execution, RunEvent
from execution_service.system import System, SystemView
from lce.execution.v1 import execution_pb2 as pb
from lce.execution.v1 import execution_pb2_grpc as pb_grpc

_ENCODING_TO_PROTO: dict[Encoding, int] = {Encoding.UTF8: pb.ENCODING_UTF8, Encoding.BASE64: pb.ENCODING_BASE64}
_ENCODING_FROM_PROTO: dict[int, Encoding] = {
    pb.ENCODING_UNSPECIFIED: Encoding.UTF8,
    **{value: encoding for encoding, value in _ENCODING_TO_PROTO.items()},
}
_LANE_TO_PROTO: dict[Lane, int] = {lane: pb.Priority.Value(f"PRIORITY_{lane.name}") for lane in Lane}
_LANE_FROM_PROTO: dict[int, Lane | None] = {
    pb.PRIORITY_UNSPECIFIED: None,  # the run's default lane
    **{value: lane for lane, value in _LANE_TO_PROTO.items()},
}


# The callers whose named tenant is believed: the gateway and the services, or anyone where the
# deployment identifies nobody (make run on loopback; common/service_auth.py).
TRUSTED_TO_NAME_A_TENANT = frozenset({*service_auth.INTERNAL_CALLERS, None})


class Callers:
    """Who a call acts for: the tenant, and the API key it was made with.

    A caller with a key of its own sends it (`authorization: Bearer lce_...`); the gateway, which
    authenticated the request's key itself, names its tenant and key in metadata (common/tenancy.py).
    Without either, the call acts for the tenant "" (a deployment without keys). The tenant "*"
    (ANY_TENANT) reads any tenant's executions: the gateway's shared reads, which filter themselves."""

    def __init__(self, keys: ApiKeys) -> None:
        self.keys = keys

    def of(self, context: grpc.ServicerContext) -> tuple[str | None, ApiKey | None]:
        """The tenant (None: any) and the API key of the call."""
        metadata = context.invocation_metadata()
        bearer = next((value for name, value in metadata if name == "authorization"), None)
        if isinstance(bearer, str) and bearer.lower().startswith("bearer "):
            key = self.keys.authenticate(bearer[len("bearer ") :].strip())
            return key.tenant, key
        named = caller_from_metadata(metadata)
        if service_auth.caller() not in TRUSTED_TO_NAME_A_TENANT:
            raise PermissionDenied("only LCE's own services name a tenant")
        if named == ANY_TENANT:
            return None, None
        if named.key_id is None:
            return named.tenant, None
        key = self.keys.by_id(named.key_id)
        if key is None or key.tenant != named.tenant:
            raise Unauthenticated("unknown or revoked API key")
        return key.tenant, key


class ExecutionServicer(pb_grpc.ExecutionServiceServicer):
    def __init__(self, executions: Executions, changes: ChangeFeed, callers: Callers, system: SystemView) -> None:
        self.executions = executions
        self.changes = changes
        self.callers = callers
        self.system = system
        self._run_watchers = threading.BoundedSemaphore(MAX_RUN_WATCHERS)

    def _tenant(self, context: grpc.ServicerContext) -> str | None:
        return self.callers.of(context)[0]

    def _own_tenant(self, context: grpc.ServicerContext) -> str:
        """The tenant a call that creates or lists must act for: one, not any."""
        tenant = self._tenant(context)
        if tenant is None:
            raise InvalidArgument("name one tenant to create or list executions")
        return tenant

    def CreateExecution(
        self, request: pb.CreateExecutionRequest, context: grpc.ServicerContext
    ) -> pb.CreateExecutionResponse:
        encoding = _ENCODING_FROM_PROTO.get(request.encoding)
        if encoding is None:
            raise InvalidArgument(f"unknown encoding {request.encoding}")
        if request.priority not in _LANE_FROM_PROTO:
            raise InvalidArgument(f"unknown priority {request.priority}")
        tenant, key = self.callers.of(context)
        if tenant is None:
            raise InvalidArgument("name one tenant to create an execution")
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
            tenant=tenant,
            key=key,
            callback_url=_optional(request, "callback_url"),
            priority=_LANE_FROM_PROTO[request.priority],
            time_left=context.time_remaining,
        )
        return pb.CreateExecutionResponse(execution=execution_to_proto(execution))

    def FindExecutions(
        self, request: pb.FindExecutionsRequest, context: grpc.ServicerContext
    ) -> pb.FindExecutionsResponse:
        self._require_operator(context)
        status = status_from_proto(request.status)
        reason = reason_from_proto(request.reason)
        if (request.status and status is None) or reason is None:
            raise InvalidArgument(f"unknown status {request.status} or reason {request.reason}")
        found, next_page = self.executions.find(
            status,
            None if reason is Reason.NONE else reason,
            request.limit if request.HasField("limit") else None,
            request.page_token,
        )
        return pb.FindExecutionsResponse(
            executions=[execution_to_proto(execution) for execution in found], next_page_token=next_page
        )

    def RetryExecution(
        self, request: pb.RetryExecutionRequest, context: grpc.ServicerContext
    ) -> pb.RetryExecutionResponse:
        operator = self._require_operator(context)
        execution = self.executions.retry_dead_letter(request.execution_id, operator)
        return pb.RetryExecutionResponse(execution=execution_to_proto(execution))

    def _require_operator(self, context: grpc.ServicerContext) -> str:
        """Who operates: an admin key, or (without a key) LCE's own services and a deployment without
        keys, as `Callers.of` admits them. PermissionDenied for any other key."""
        _, key = self.callers.of(context)
        if key is not None and not key.admin:
            raise PermissionDenied("this call needs an admin API key")
        return f"key {key.id}" if key is not None else "an internal caller"

    def GetSystem(self, request: pb.GetSystemRequest, context: grpc.ServicerContext) -> pb.GetSystemResponse:
        self._require_operator(context)
        return system_to_proto(self.system.snapshot())

    def GetExecution(self, request: pb.GetExecutionRequest, context: grpc.ServicerContext) -> pb.GetExecutionResponse:
        execution = self.executions.get(request.execution_id, self._tenant(context))
        return pb.GetExecutionResponse(execution=execution_to_proto(execution))

    def ListExecutions(
        self, request: pb.ListExecutionsRequest, context: grpc.ServicerContext
    ) -> pb.ListExecutionsResponse:
        found = self.executions.list_for_session(
            request.session_id,
            request.limit if request.HasField("limit") else None,
            timeout=deadline(context),
            tenant=self._own_tenant(context),
        )
        return pb.ListExecutionsResponse(executions=[execution_to_proto(execution) for execution in found])

    def ListExecutionEvents(
        self, request: pb.ListExecutionEventsRequest, context: grpc.ServicerContext
    ) -> pb.ListExecutionEventsResponse:
        events = self.executions.events(request.execution_id, self._tenant(context))
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
            tenant = self._tenant(context)
            for event in self.executions.watch(request.execution_id, request.after, context.is_active, tenant):
                yield _run_event_to_proto(event)

    def InteractExecution(
        self, requests: Iterator[pb.InteractRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.RunEvent]:
        with self._run_watch(context):
            first = next(requests, None)
            if first is None:
                return
            execution = self.executions.open_interaction(first.execution_id, self._tenant(context))
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


class AccessServicer(pb_grpc.AccessServiceServicer):
    def __init__(self, keys: ApiKeys) -> None:
        self.keys = keys

    def Authenticate(self, request: pb.AuthenticateRequest, context: grpc.ServicerContext) -> pb.AuthenticateResponse:
        return pb.AuthenticateResponse(key=_key_to_proto(self.keys.authenticate(request.api_key)))

    def ListKeys(self, request: pb.ListKeysRequest, context: grpc.ServicerContext) -> pb.ListKeysResponse:
        return pb.ListKeysResponse(keys=[_key_to_proto(key) for key in self.keys.list()])


def _key_to_proto(key: ApiKey) -> pb.ApiKey:
    message = pb.ApiKey(
        id=key.id,
        tenant=key.tenant,
        name=key.name,
        admin=key.admin,
        runs_per_minute=key.runs_per_minute,
        concurrent_runs=key.concurrent_runs,
        max_time_limit_ms=key.max_time_limit_ms,
        max_memory_limit_mb=key.max_memory_limit_mb,
        created_at=_timestamp(key.created_at),
        max_priority=_LANE_TO_PROTO[key.max_priority],
    )
    if key.revoked_at is not None:
        message.revoked_at.CopyFrom(_timestamp(key.revoked_at))
    return message


def system_to_proto(system: System) -> pb.GetSystemResponse:
    return pb.GetSystemResponse(
        queues=[
            pb.QueueState(
                name=queue.name,
                language=queue.language,
                lane=_LANE_TO_PROTO[queue.lane],
                depth=queue.depth,
                oldest_seconds=queue.oldest_seconds,
            )
            for queue in system.queues
        ],
        executors=[_executor_to_proto(executor) for executor in system.executors],
        runs=[pb.RunCounts(minutes=minutes, by_state=counts) for minutes, counts in system.runs.items()],
        version=VERSION,
    )


def _executor_to_proto(executor: ExecutorInfo) -> pb.ExecutorState:
    started_at = Timestamp()
    started_at.FromNanoseconds(int(executor.started_at * 1e9))
    return pb.ExecutorState(
        executor_id=executor.executor_id,
        pool=executor.pool,
        languages=executor.languages,
        sandbox_mode=executor.sandbox_mode,
        slots_busy=executor.slots_busy,
        slots_total=executor.slots_total,
        host=executor.host,
        pid=executor.pid,
        version=executor.version,
        started_at=started_at,
        queues=executor.queues,
    )


def register(
    server: grpc.Server, executions: Executions, changes: ChangeFeed, keys: ApiKeys, system: SystemView
) -> None:
    pb_grpc.add_ExecutionServiceServicer_to_server(
        ExecutionServicer(executions, changes, Callers(keys), system), server
    )
    pb_grpc.add_ExecutorReportServiceServicer_to_server(ExecutorReportServicer(executions), server)
    pb_grpc.add_AccessServiceServicer_to_server(AccessServicer(keys), server)


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
        tenant=execution.tenant,
        priority=_LANE_TO_PROTO[execution.priority],
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
