"""ExecutionService and ExecutorReportService over real gRPC channels, on real PostgreSQL and Redis.

SessionService is a stand-in served over its own real channel; the real pairing is covered by the
integration tests.
"""

from __future__ import annotations

import base64
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import redis
import sqlalchemy.exc
from prometheus_client import REGISTRY
from rq import Queue
from rq.job import Job, JobStatus
from rq.utils import utcformat
from sqlalchemy import select

from common import job as jobs
from common.config import DEFAULT_COMPILE_MEMORY_LIMIT_MB, DEFAULT_COMPILE_TIME_LIMIT_MS
from common.errors import KIND_METADATA_KEY, RETRY_AFTER_METADATA_KEY, Unavailable
from common.executor_registry import ExecutorInfo, ExecutorRegistry
from common.grpc_client import channel
from common.grpc_server import RunningServer, start_server
from common.job import JOB_FUNCTION, SERIALIZER, Compare, ExecutionJob, Lane, Suite, queue_for
from common.languages import LANGUAGES
from common.outcome import reason_text_of
from common.run_events import Kind, RunEvents, stream_key
from execution_service import SERVICE_NAMES, ExecutionService, build_service
from execution_service.change_feed import MAX_WATCHERS, ChangeFeed, Watcher
from execution_service.models import execution_events
from execution_service.reconciler import ENQUEUED, SWEEP_BATCH
from execution_service.servicer import MAX_CARRIED_BYTES
from execution_service.settings import ExecutionServiceConfig
from lce.execution.v1 import execution_pb2 as pb
from lce.execution.v1 import execution_pb2_grpc as pb_grpc
from lce.session.v1 import session_pb2, session_pb2_grpc
from tests.conftest import free_port

QUEUE = "contract-executions"
PYTHON_QUEUE = queue_for(QUEUE, "python")  # the stand-in sessions are Python's unless told
TIMEOUT_S = 5.0


class StandInSessions(session_pb2_grpc.SessionServiceServicer):
    """Just enough SessionService: sessions held in memory, GetSession only."""

    def __init__(self) -> None:
        self.sessions: dict[str, session_pb2.Session] = {}

    def add(self, *, active: bool = True, source_code: str = 'print("hi")\n', language: str = "python") -> str:
        session_id = str(uuid.uuid4())
        status = session_pb2.SESSION_STATUS_ACTIVE if active else session_pb2.SESSION_STATUS_INACTIVE
        self.sessions[session_id] = session_pb2.Session(
            id=session_id,
            status=status,
            source_code=source_code,
            language=session_pb2.Language(
                id=str(uuid.uuid4()),
                name=language,
                file_name="main.py",
                default_time_limit_ms=5000,
                default_memory_mb=256,
            ),
        )
        return session_id

    def GetSession(self, request: Any, context: grpc.ServicerContext) -> session_pb2.GetSessionResponse:
        session = self.sessions.get(request.session_id)
        if session is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such session")
        return session_pb2.GetSessionResponse(session=session)


@pytest.fixture(scope="module")
def sessions() -> Iterator[tuple[StandInSessions, int]]:
    servicer = StandInSessions()
    running = start_server(
        "127.0.0.1:0",
        lambda server: session_pb2_grpc.add_SessionServiceServicer_to_server(servicer, server),
        ["lce.session.v1.SessionService"],
    )
    yield servicer, running.port
    running.stop(0)


@dataclasses.dataclass
class Harness:
    service: ExecutionService
    server: RunningServer
    executions: pb_grpc.ExecutionServiceStub
    reports: pb_grpc.ExecutorReportServiceStub
    sessions: StandInSessions


Factory = Callable[..., Harness]


@pytest.fixture
def make_harness(postgres_url: str, redis_url: str, sessions: tuple[StandInSessions, int]) -> Iterator[Factory]:
    """Builds and serves an execution_service; keyword arguments override its config."""
    servicer, port = sessions
    started: list[tuple[Harness, grpc.Channel]] = []

    def make(**overrides: Any) -> Harness:
        settings: dict[str, Any] = dict(
            listen_addr="127.0.0.1:0",
            database_url=postgres_url,
            redis_url=redis_url,
            queue_name=QUEUE,
            session_service_addr=f"127.0.0.1:{port}",
            runs_per_minute=10,
            failure_streak_limit=5,
            failure_cooldown_s=60,
            lease_s=10,
            retry_backoff_s=(2.0, 4.0, 8.0),
            reconcile_interval_s=0.2,
            idempotency_window_s=24 * 3600,
        )
        service = build_service(ExecutionServiceConfig(**settings | overrides), enqueue_grace_s=0.5)
        server = start_server("127.0.0.1:0", service.register, SERVICE_NAMES)
        client = channel(f"127.0.0.1:{server.port}")
        harness = Harness(
            service,
            server,
            pb_grpc.ExecutionServiceStub(client),
            pb_grpc.ExecutorReportServiceStub(client),
            servicer,
        )
        started.append((harness, client))
        return harness

    yield make
    for harness, client in started:
        client.close()
        harness.server.stop(0)
        harness.service.close()


@pytest.fixture
def harness(make_harness: Factory) -> Harness:
    return make_harness()


def create(harness: Harness, session_id: str, **limits: Any) -> pb.Execution:
    request = pb.CreateExecutionRequest(session_id=session_id, **limits)
    return harness.executions.CreateExecution(request, timeout=TIMEOUT_S).execution


def get(harness: Harness, execution_id: str) -> pb.Execution:
    return harness.executions.GetExecution(
        pb.GetExecutionRequest(execution_id=execution_id), timeout=TIMEOUT_S
    ).execution


def renew(harness: Harness, execution_id: str, executor_id: str = "ex-1", attempt: int = 1) -> bool:
    request = pb.RenewLeaseRequest(execution_id=execution_id, executor_id=executor_id, attempt=attempt)
    return harness.reports.RenewLease(request, timeout=TIMEOUT_S).renewed


def started(harness: Harness, execution_id: str, executor_id: str = "ex-1", attempt: int = 1) -> bool:
    request = pb.ReportStartedRequest(execution_id=execution_id, executor_id=executor_id, attempt=attempt)
    return harness.reports.ReportStarted(request, timeout=TIMEOUT_S).should_run


def result(
    harness: Harness,
    execution_id: str,
    run_result: pb.RunResult,
    executor_id: str = "ex-1",
    attempt: int = 1,
    warnings: list[str] | None = None,
) -> int:
    request = pb.ReportResultRequest(
        execution_id=execution_id, executor_id=executor_id, result=run_result, attempt=attempt, warnings=warnings
    )
    return harness.reports.ReportResult(request, timeout=TIMEOUT_S).status


def run_result(status: int = pb.EXECUTION_STATUS_COMPLETED, stdout: str = "hi\n") -> pb.RunResult:
    failed = status != pb.EXECUTION_STATUS_COMPLETED
    return pb.RunResult(
        status=status,
        reason=pb.REASON_RUNTIME_ERROR if failed else pb.REASON_UNSPECIFIED,
        stdout=stdout,
        stderr="boom\n" if failed else "",
        stdout_truncated=False,
        stderr_truncated=failed,
        exit_code=1 if failed else 0,
        execution_time_ms=42,
        memory_kb=9000,
        stages=[pb.StageMetrics(name="run", cpu_time_ms=30, wall_time_ms=42, memory_kb=9000, exit_code=0)],
        sandbox="bwrap",
    )


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def trailing(err: grpc.RpcError) -> dict[str, str]:
    return dict(err.trailing_metadata() or ())  # type: ignore[attr-defined]


def assert_error(err: grpc.RpcError, code: grpc.StatusCode, kind: str) -> None:
    assert err.code() == code, err.details()  # type: ignore[attr-defined]
    assert trailing(err)[KIND_METADATA_KEY] == kind


def rq_job(redis_url: str, execution_id: str) -> Job:
    return Job.fetch(execution_id, connection=redis.Redis.from_url(redis_url), serializer=SERIALIZER)


class TestCreateExecution:
    def test_queues_a_snapshot_with_the_languages_defaults(self, harness: Harness) -> None:
        session_id = harness.sessions.add(source_code="print(42)\n")
        execution = create(harness, session_id)
        assert execution.status == pb.EXECUTION_STATUS_QUEUED
        assert uuid.UUID(execution.id)
        assert execution.session_id == session_id
        assert (execution.language, execution.time_limit_ms, execution.memory_limit_mb) == ("python", 5000, 256)
        assert execution.HasField("created_at")
        assert not execution.HasField("started_at")
        assert not execution.HasField("finished_at")
        assert not execution.HasField("result")

    def test_enqueues_an_rq_job_named_after_the_execution(self, harness: Harness, redis_url: str) -> None:
        session_id = harness.sessions.add(source_code="print(42)\n")
        execution = create(harness, session_id, time_limit_ms=2000, memory_limit_mb=64)
        job = rq_job(redis_url, execution.id)
        assert job.func_name == JOB_FUNCTION
        assert job.kwargs == {
            "payload": {
                "execution_id": execution.id,
                "language": "python",
                "source_code": "print(42)\n",
                "time_limit_ms": 2000,
                "memory_limit_mb": 64,
                "attempt": 1,
                "compile_time_limit_ms": DEFAULT_COMPILE_TIME_LIMIT_MS,
                "compile_memory_limit_mb": DEFAULT_COMPILE_MEMORY_LIMIT_MB,
                "encoding": "utf8",
                "stdin": "",
                "args": [],
                "interactive": False,
                "files": [],
                "suite": None,
                "lane": "interactive",
            }
        }
        assert job.timeout == 60 + (2 * DEFAULT_COMPILE_TIME_LIMIT_MS + 2 * 2000) // 1000 + 2 * 600
        assert execution.id in Queue(PYTHON_QUEUE, connection=redis.Redis.from_url(redis_url)).get_job_ids()

    def test_a_later_autosave_does_not_change_the_queued_run(self, harness: Harness, redis_url: str) -> None:
        session_id = harness.sessions.add(source_code="print('before')\n")
        execution = create(harness, session_id)
        harness.sessions.sessions[session_id].source_code = "print('after')\n"
        assert rq_job(redis_url, execution.id).kwargs["payload"]["source_code"] == "print('before')\n"
        stored = harness.service.executions.repository.get(execution.id)
        assert stored is not None and stored.source_code == "print('before')\n"

    @pytest.mark.parametrize("session_id", ["", "nope", "12345678-1234-1234-1234-12345678901"])
    def test_malformed_session_id(self, harness: Harness, session_id: str) -> None:
        err = rpc_error(lambda: create(harness, session_id))
        assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")

    def test_unknown_session(self, harness: Harness) -> None:
        err = rpc_error(lambda: create(harness, str(uuid.uuid4())))
        assert_error(err, grpc.StatusCode.NOT_FOUND, "not_found")

    def test_closed_session(self, harness: Harness) -> None:
        session_id = harness.sessions.add(active=False)
        err = rpc_error(lambda: create(harness, session_id))
        assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "session_closed")

    @pytest.mark.parametrize(
        ("limits", "named"),
        [
            ({"time_limit_ms": 99}, "time_limit_ms must be between 100 and 60000"),
            ({"time_limit_ms": 60001}, "time_limit_ms must be between 100 and 60000"),
            ({"memory_limit_mb": 31}, "memory_limit_mb must be between 32 and 2048"),
            ({"memory_limit_mb": 2049}, "memory_limit_mb must be between 32 and 2048"),
        ],
    )
    def test_limits_out_of_range(self, harness: Harness, limits: dict[str, int], named: str) -> None:
        session_id = harness.sessions.add()
        err = rpc_error(lambda: create(harness, session_id, **limits))
        assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")
        assert named in err.details()  # type: ignore[attr-defined]

    def test_limits_at_the_edges(self, harness: Harness) -> None:
        session_id = harness.sessions.add()
        low = create(harness, session_id, time_limit_ms=100, memory_limit_mb=32)
        high = create(harness, session_id, time_limit_ms=60000, memory_limit_mb=2048)
        assert (low.time_limit_ms, low.memory_limit_mb) == (100, 32)
        assert (high.time_limit_ms, high.memory_limit_mb) == (60000, 2048)

    def test_session_service_down(self, make_harness: Factory) -> None:
        harness = make_harness(session_service_addr=f"127.0.0.1:{free_port()}")
        err = rpc_error(lambda: create(harness, str(uuid.uuid4())))
        assert_error(err, grpc.StatusCode.UNAVAILABLE, "unavailable")

    def test_the_eleventh_run_in_a_minute_is_rate_limited(self, harness: Harness) -> None:
        session_id = harness.sessions.add()
        for _ in range(10):
            create(harness, session_id)
        err = rpc_error(lambda: create(harness, session_id))
        assert_error(err, grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited")
        assert 55 <= int(trailing(err)[RETRY_AFTER_METADATA_KEY]) <= 60
        # Another session is not affected.
        create(harness, harness.sessions.add())

    def test_a_run_the_database_refused_takes_no_slot_of_the_window(
        self, harness: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        session_id = harness.sessions.add()
        repository = harness.service.executions.repository

        def database_down(*args: Any, **kwargs: Any) -> bool:
            raise sqlalchemy.exc.OperationalError("INSERT INTO executions", {}, ConnectionError("server closed"))

        with monkeypatch.context() as patch:
            patch.setattr(repository, "insert_queued", database_down)
            for _ in range(10):
                assert rpc_error(lambda: create(harness, session_id)).code() == grpc.StatusCode.UNAVAILABLE
        for _ in range(10):  # none of the refused ones counted
            create(harness, session_id)
        assert_error(rpc_error(lambda: create(harness, session_id)), grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited")

    def test_five_failures_in_a_row_block_the_session(self, harness: Harness) -> None:
        session_id = harness.sessions.add()
        for status in [pb.EXECUTION_STATUS_FAILED, pb.EXECUTION_STATUS_TIMEOUT] * 2 + [pb.EXECUTION_STATUS_FAILED]:
            result(harness, create(harness, session_id).id, run_result(status))
        err = rpc_error(lambda: create(harness, session_id))
        assert_error(err, grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited")
        assert 58 <= int(trailing(err)[RETRY_AFTER_METADATA_KEY]) <= 60

    def test_a_completed_run_resets_the_failure_streak(self, harness: Harness) -> None:
        session_id = harness.sessions.add()
        statuses = [pb.EXECUTION_STATUS_FAILED] * 4 + [pb.EXECUTION_STATUS_COMPLETED] + [pb.EXECUTION_STATUS_FAILED] * 4
        for status in statuses:
            result(harness, create(harness, session_id).id, run_result(status))
        assert create(harness, session_id).status == pb.EXECUTION_STATUS_QUEUED

    def test_accepted_while_redis_is_down_and_enqueued_once_it_is_back(
        self, make_harness: Factory, redis_url: str
    ) -> None:
        down = make_harness(redis_url=f"redis://127.0.0.1:{free_port()}/0")
        execution = create(down, down.sessions.add())
        assert execution.status == pb.EXECUTION_STATUS_QUEUED
        assert get(down, execution.id).status == pb.EXECUTION_STATUS_QUEUED
        assert not Job.exists(execution.id, connection=redis.Redis.from_url(redis_url))

        # A replica whose Redis is up reconciles the row left without a job.
        up = make_harness()
        up.service.reconciler.start()
        wait_for(lambda: Job.exists(execution.id, connection=redis.Redis.from_url(redis_url)))
        assert rq_job(redis_url, execution.id).kwargs["payload"]["execution_id"] == execution.id


class TestGetExecution:
    def test_found(self, harness: Harness) -> None:
        created = create(harness, harness.sessions.add())
        assert get(harness, created.id) == created

    def test_malformed_id(self, harness: Harness) -> None:
        assert_error(rpc_error(lambda: get(harness, "x")), grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")

    def test_unknown_id(self, harness: Harness) -> None:
        assert_error(rpc_error(lambda: get(harness, str(uuid.uuid4()))), grpc.StatusCode.NOT_FOUND, "not_found")


class TestListExecutions:
    def list(self, harness: Harness, session_id: str, **limit: int) -> list[pb.Execution]:
        request = pb.ListExecutionsRequest(session_id=session_id, **limit)
        return list(harness.executions.ListExecutions(request, timeout=TIMEOUT_S).executions)

    def test_newest_first_ten_by_default(self, make_harness: Factory) -> None:
        harness = make_harness(runs_per_minute=100)
        session_id = harness.sessions.add()
        created = [create(harness, session_id).id for _ in range(12)]
        assert [execution.id for execution in self.list(harness, session_id)] == created[::-1][:10]
        assert [execution.id for execution in self.list(harness, session_id, limit=3)] == created[::-1][:3]
        assert len(self.list(harness, session_id, limit=100)) == 12

    def test_a_listing_leaves_the_outputs_to_get(self, harness: Harness) -> None:
        session_id = harness.sessions.add(source_code="print('hi')\n")
        execution = create(harness, session_id, stdin=b"input")
        started(harness, execution.id)
        result(harness, execution.id, run_result(stdout="x" * 100_000))
        [listed] = self.list(harness, session_id)
        assert (listed.id, listed.status, listed.result.exit_code) == (execution.id, pb.EXECUTION_STATUS_COMPLETED, 0)
        assert (listed.result.stdout, listed.result.stderr) == ("", "")
        assert get(harness, execution.id).result.stdout == "x" * 100_000

    def test_a_session_without_runs_has_an_empty_list(self, harness: Harness) -> None:
        assert self.list(harness, harness.sessions.add()) == []

    def test_only_the_sessions_own_runs(self, harness: Harness) -> None:
        mine, other = harness.sessions.add(), harness.sessions.add()
        create(harness, other)
        assert self.list(harness, mine) == []

    @pytest.mark.parametrize("limit", [0, 101, -1])
    def test_limit_out_of_range(self, harness: Harness, limit: int) -> None:
        session_id = harness.sessions.add()
        err = rpc_error(lambda: self.list(harness, session_id, limit=limit))
        assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")

    def test_unknown_session(self, harness: Harness) -> None:
        err = rpc_error(lambda: self.list(harness, str(uuid.uuid4())))
        assert_error(err, grpc.StatusCode.NOT_FOUND, "not_found")

    def test_malformed_session_id(self, harness: Harness) -> None:
        err = rpc_error(lambda: self.list(harness, "abc"))
        assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")


class TestReportStarted:
    def test_queued_becomes_running(self, harness: Harness) -> None:
        execution_id = create(harness, harness.sessions.add()).id
        assert started(harness, execution_id, "ex-1", 1) is True
        execution = get(harness, execution_id)
        assert execution.status == pb.EXECUTION_STATUS_RUNNING
        assert (execution.attempt, execution.executor_id) == (1, "ex-1")
        assert execution.HasField("started_at")
        assert not execution.HasField("finished_at")
        assert not execution.HasField("result")

    def test_a_repeated_report_changes_nothing(self, harness: Harness) -> None:
        execution_id = create(harness, harness.sessions.add()).id
        started(harness, execution_id)
        before = get(harness, execution_id)
        assert started(harness, execution_id) is True
        assert get(harness, execution_id) == before

    def test_a_stale_or_second_executor_must_not_run_it(self, harness: Harness) -> None:
        execution_id = create(harness, harness.sessions.add()).id
        started(harness, execution_id, "ex-1", 1)
        assert started(harness, execution_id, "ex-2", 1) is False
        assert started(harness, execution_id, "ex-2", 2) is False
        execution = get(harness, execution_id)
        assert (execution.status, execution.attempt, execution.executor_id) == (pb.EXECUTION_STATUS_RUNNING, 1, "ex-1")

    def test_the_start_grants_a_lease_that_the_holder_renews(self, harness: Harness) -> None:
        execution_id = create(harness, harness.sessions.add()).id
        request = pb.ReportStartedRequest(execution_id=execution_id, executor_id="ex-1", attempt=1)
        assert harness.reports.ReportStarted(request, timeout=TIMEOUT_S).lease_s == 10
        assert renew(harness, execution_id, "ex-1", 1) is True
        assert renew(harness, execution_id, "ex-2", 1) is False

    def test_a_terminal_run_must_not_run_again(self, harness: Harness) -> None:
        execution_id = create(harness, harness.sessions.add()).id
        started(harness, execution_id)
        result(harness, execution_id, run_result())
        before = get(harness, execution_id)
        assert started(harness, execution_id, "ex-2", 2) is False
        assert get(harness, execution_id) == before

    def test_unknown_and_malformed(self, harness: Harness) -> None:
        assert_error(rpc_error(lambda: started(harness, str(uuid.uuid4()))), grpc.StatusCode.NOT_FOUND, "not_found")
        assert_error(rpc_error(lambda: started(harness, "x")), grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")


class TestReportResult:
    def test_the_result_is_recorded_in_full(self, harness: Harness) -> None:
        execution_id = create(harness, harness.sessions.add()).id
        started(harness, execution_id)
        sent = run_result(pb.EXECUTION_STATUS_FAILED, stdout="partial")
        assert result(harness, execution_id, sent) == pb.EXECUTION_STATUS_FAILED
        execution = get(harness, execution_id)
        assert execution.status == pb.EXECUTION_STATUS_FAILED
        assert execution.HasField("finished_at") and execution.HasField("started_at")
        assert execution.finished_at.ToDatetime() >= execution.started_at.ToDatetime()
        assert execution.result == sent

    def test_each_transition_is_recorded_once_as_an_event(self, harness: Harness) -> None:
        execution_id = create(harness, harness.sessions.add()).id
        started(harness, execution_id, "ex-1", 1)
        started(harness, execution_id, "ex-1", 1)
        started(harness, execution_id, "ex-2", 1)
        result(harness, execution_id, run_result(), executor_id="ex-1")
        result(harness, execution_id, run_result(), executor_id="ex-1")
        query = (
            select(execution_events.c.type, execution_events.c.attempt, execution_events.c.executor_id)
            .where(execution_events.c.execution_id == execution_id)
            .order_by(execution_events.c.id)
        )
        with harness.service.engine.connect() as conn:
            events = [tuple(row) for row in conn.execute(query)]
        assert events == [("QUEUED", None, None), ("RUNNING", 1, "ex-1"), ("COMPLETED", 1, "ex-1")]

    def test_a_result_without_exit_code_keeps_it_unset(self, harness: Harness) -> None:
        execution_id = create(harness, harness.sessions.add()).id
        sent = run_result(pb.EXECUTION_STATUS_TIMEOUT)
        sent.ClearField("exit_code")
        result(harness, execution_id, sent)
        assert not get(harness, execution_id).result.HasField("exit_code")

    def test_a_repeated_or_late_report_changes_nothing(self, harness: Harness) -> None:
        execution_id = create(harness, harness.sessions.add()).id
        started(harness, execution_id)
        result(harness, execution_id, run_result(pb.EXECUTION_STATUS_COMPLETED))
        final = get(harness, execution_id)
        assert result(harness, execution_id, run_result(pb.EXECUTION_STATUS_COMPLETED)) == pb.EXECUTION_STATUS_COMPLETED
        late = run_result(pb.EXECUTION_STATUS_TIMEOUT, stdout="other")
        assert result(harness, execution_id, late, executor_id="ex-9") == pb.EXECUTION_STATUS_COMPLETED
        assert get(harness, execution_id) == final

    @pytest.mark.parametrize(
        "status", [pb.EXECUTION_STATUS_UNSPECIFIED, pb.EXECUTION_STATUS_QUEUED, pb.EXECUTION_STATUS_RUNNING]
    )
    def test_a_non_terminal_status_is_refused(self, harness: Harness, status: int) -> None:
        execution_id = create(harness, harness.sessions.add()).id
        err = rpc_error(lambda: result(harness, execution_id, run_result(status)))
        assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")
        assert get(harness, execution_id).status == pb.EXECUTION_STATUS_QUEUED

    def test_unknown_and_malformed(self, harness: Harness) -> None:
        err = rpc_error(lambda: result(harness, str(uuid.uuid4()), run_result()))
        assert_error(err, grpc.StatusCode.NOT_FOUND, "not_found")
        err = rpc_error(lambda: result(harness, "x", run_result()))
        assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")


class TestReconciler:
    def test_a_queued_run_whose_job_vanished_is_enqueued_again(self, harness: Harness, redis_url: str) -> None:
        execution = create(harness, harness.sessions.add(source_code="print('again')\n"))
        # Redis lost everything: the row is QUEUED and its job is gone.
        redis.Redis.from_url(redis_url).flushall()
        assert not Job.exists(execution.id, connection=redis.Redis.from_url(redis_url))
        harness.service.reconciler.start()
        wait_for(lambda: Job.exists(execution.id, connection=redis.Redis.from_url(redis_url)))
        assert rq_job(redis_url, execution.id).kwargs["payload"]["source_code"] == "print('again')\n"
        assert execution.id in Queue(PYTHON_QUEUE, connection=redis.Redis.from_url(redis_url)).get_job_ids()

    def test_runs_with_a_job_or_past_queued_are_left_alone(self, harness: Harness, redis_url: str) -> None:
        waiting = create(harness, harness.sessions.add())
        running = create(harness, harness.sessions.add())
        started(harness, running.id)
        redis.Redis.from_url(redis_url).delete(Job.key_for(running.id))
        time.sleep(0.6)
        harness.service.reconciler.sweep()
        assert Job.exists(waiting.id, connection=redis.Redis.from_url(redis_url))
        assert not Job.exists(running.id, connection=redis.Redis.from_url(redis_url))


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def create_with_key(harness: Harness, session_id: str, key: str) -> pb.Execution:
    request = pb.CreateExecutionRequest(session_id=session_id, idempotency_key=key)
    return harness.executions.CreateExecution(request, timeout=TIMEOUT_S).execution


def events(harness: Harness, execution_id: str) -> list[pb.ExecutionEvent]:
    request = pb.ListExecutionEventsRequest(execution_id=execution_id)
    return list(harness.executions.ListExecutionEvents(request, timeout=TIMEOUT_S).events)


def job_exists(redis_url: str, job_id: str) -> bool:
    return Job.exists(job_id, connection=redis.Redis.from_url(redis_url))


class TestIdempotency:
    def test_the_same_key_in_the_same_session_answers_the_same_execution(self, harness: Harness) -> None:
        session_id = harness.sessions.add()
        first = create_with_key(harness, session_id, "req-1")
        started(harness, first.id)
        again = create_with_key(harness, session_id, "req-1")
        assert again.id == first.id
        assert again.status == pb.EXECUTION_STATUS_RUNNING  # the execution as it is now
        assert create_with_key(harness, session_id, "req-2").id != first.id

    def test_keys_are_scoped_to_their_session(self, harness: Harness) -> None:
        one, other = harness.sessions.add(), harness.sessions.add()
        assert create_with_key(harness, one, "shared").id != create_with_key(harness, other, "shared").id

    def test_a_replay_is_answered_even_once_the_session_is_closed(self, harness: Harness) -> None:
        session_id = harness.sessions.add()
        first = create_with_key(harness, session_id, "k")
        harness.sessions.sessions[session_id].status = session_pb2.SESSION_STATUS_INACTIVE
        assert create_with_key(harness, session_id, "k").id == first.id

    @pytest.mark.parametrize("key", ["", "x" * 256, "with space", "é"])
    def test_a_malformed_key_is_refused(self, harness: Harness, key: str) -> None:
        err = rpc_error(lambda: create_with_key(harness, harness.sessions.add(), key))
        assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")

    def test_concurrent_duplicates_make_one_execution_and_take_one_rate_limit_slot(self, harness: Harness) -> None:
        session_id = harness.sessions.add()
        barrier = threading.Barrier(8)

        def send(_: int) -> str:
            barrier.wait()
            return create_with_key(harness, session_id, "burst").id

        with ThreadPoolExecutor(8) as pool:
            ids = set(pool.map(send, range(8)))
        assert len(ids) == 1
        # Nine more runs fit in the window of ten: the eight duplicates counted once.
        for _ in range(9):
            create(harness, session_id)
        assert_error(rpc_error(lambda: create(harness, session_id)), grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited")

    def test_a_key_answers_within_its_window_only(self, make_harness: Factory) -> None:
        harness = make_harness(idempotency_window_s=1)
        session_id = harness.sessions.add()
        first = create_with_key(harness, session_id, "k")
        time.sleep(1.1)
        assert create_with_key(harness, session_id, "k").id != first.id


class TestWarnings:
    def test_a_run_is_queued_without_advice_and_gets_the_executors(self, harness: Harness, redis_url: str) -> None:
        execution = create(harness, harness.sessions.add(source_code="while True:\n    pass\n"))
        assert execution.status == pb.EXECUTION_STATUS_QUEUED and job_exists(redis_url, execution.id)
        assert list(execution.warnings) == []  # worked out by the executor, never on this request path
        started(harness, execution.id)
        advice = ["line 1: `while True` has no break, return or exit in its body and may never end"]
        result(harness, execution.id, run_result(pb.EXECUTION_STATUS_TIMEOUT), warnings=advice)
        assert list(get(harness, execution.id).warnings) == advice

    def test_what_a_peer_reports_is_kept_within_bounds(self, harness: Harness) -> None:
        execution = create(harness, harness.sessions.add())
        started(harness, execution.id)
        result(harness, execution.id, run_result(), warnings=[f"{n}" * 10_000 for n in range(20)])
        kept = list(get(harness, execution.id).warnings)
        assert [warning[0] for warning in kept] == [str(n) for n in range(10)]
        assert {len(warning) for warning in kept} == {500}


class TestCompileLimitsAndEncoding:
    def test_the_deployments_limits_when_none_is_asked(self, harness: Harness, redis_url: str) -> None:
        execution = create(harness, harness.sessions.add())
        assert (execution.compile_time_limit_ms, execution.compile_memory_limit_mb) == (
            DEFAULT_COMPILE_TIME_LIMIT_MS,
            DEFAULT_COMPILE_MEMORY_LIMIT_MB,
        )
        assert execution.encoding == pb.ENCODING_UTF8

    def test_a_run_may_lower_them_and_the_job_carries_them(self, harness: Harness, redis_url: str) -> None:
        execution = create(
            harness,
            harness.sessions.add(),
            compile_time_limit_ms=2000,
            compile_memory_limit_mb=128,
            encoding=pb.ENCODING_BASE64,
        )
        assert (execution.compile_time_limit_ms, execution.compile_memory_limit_mb) == (2000, 128)
        assert execution.encoding == pb.ENCODING_BASE64
        payload = rq_job(redis_url, execution.id).kwargs["payload"]
        assert (payload["compile_time_limit_ms"], payload["compile_memory_limit_mb"]) == (2000, 128)
        assert payload["encoding"] == "base64"
        assert get(harness, execution.id).encoding == pb.ENCODING_BASE64

    @pytest.mark.parametrize(
        "asked",
        [
            {"compile_time_limit_ms": DEFAULT_COMPILE_TIME_LIMIT_MS + 1},
            {"compile_time_limit_ms": 99},
            {"compile_memory_limit_mb": DEFAULT_COMPILE_MEMORY_LIMIT_MB + 1},
            {"compile_memory_limit_mb": 31},
            {"encoding": 7},
        ],
    )
    def test_a_run_may_not_raise_them(self, harness: Harness, asked: dict[str, int]) -> None:
        session_id = harness.sessions.add()
        failure = rpc_error(lambda: create(harness, session_id, **asked))
        assert_error(failure, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")


class TestInput:
    def test_stdin_and_args_are_part_of_the_snapshot(self, harness: Harness, redis_url: str) -> None:
        stdin = bytes(range(256)) * 4096  # 1 MiB exactly: the most allowed
        args = ["a b", "; rm -rf /", "$(id)", "'\"", "x" * 4096, ""]
        execution = create(harness, harness.sessions.add(), stdin=stdin, args=args)
        payload = rq_job(redis_url, execution.id).kwargs["payload"]
        job = ExecutionJob.from_payload(payload)
        assert (job.stdin, job.args) == (stdin, tuple(args))

    def test_stdin_over_1_mib_is_too_large(self, harness: Harness) -> None:
        session_id = harness.sessions.add()
        failure = rpc_error(lambda: create(harness, session_id, stdin=b"x" * (1024 * 1024 + 1)))
        assert_error(failure, grpc.StatusCode.INVALID_ARGUMENT, "payload_too_large")

    @pytest.mark.parametrize("args", [["x"] * 65, ["x" * 4097], ["é" * 2049], ["a\0b"]])
    def test_args_beyond_what_an_argv_holds_are_refused(self, harness: Harness, args: list[str]) -> None:
        session_id = harness.sessions.add()
        failure = rpc_error(lambda: create(harness, session_id, args=args))
        assert_error(failure, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")


def case(name: str = "", stdin: bytes = b"", expected: str | None = None, **fields: Any) -> pb.TestCase:
    return pb.TestCase(name=name, stdin=stdin, expected_output=expected, **fields)


def suite_result(*cases: tuple[int, bool]) -> pb.RunResult:
    """A suite's result: the cases' statuses and whether each passed."""
    reasons = {pb.CASE_STATUS_COMPLETED: pb.REASON_UNSPECIFIED, pb.CASE_STATUS_FAILED: pb.REASON_RUNTIME_ERROR}
    return pb.RunResult(
        status=pb.EXECUTION_STATUS_COMPLETED,
        tests=[
            pb.TestCaseResult(name=f"c{n}", status=status, reason=reasons.get(status, 0), passed=passed)
            for n, (status, passed) in enumerate(cases)
        ],
    )


class TestSuites:
    def test_a_suite_is_part_of_the_snapshot(self, harness: Harness, redis_url: str) -> None:
        cases = [case("one", b"1\n", "2\n", args=["--x"]), case("two", expected=None)]
        request = {"tests": cases, "compare": pb.COMPARE_MODE_TOKENS, "float_tolerance": 0.001}
        execution = create(harness, harness.sessions.add(), stop_on_first_failure=True, **request)
        assert execution.tests_total == 2
        job = ExecutionJob.from_payload(rq_job(redis_url, execution.id).kwargs["payload"])
        assert job.suite == Suite(
            (jobs.TestCase("one", b"1\n", ("--x",), "2\n"), jobs.TestCase("two", b"", (), None)),
            Compare.TOKENS,
            0.001,
            True,
        )

    def test_the_verdicts_are_kept_and_served(self, harness: Harness) -> None:
        execution = create(harness, harness.sessions.add(), tests=[case(), case(), case()])
        started(harness, execution.id)
        reported = suite_result(
            (pb.CASE_STATUS_COMPLETED, True), (pb.CASE_STATUS_COMPLETED, False), (pb.CASE_STATUS_SKIPPED, False)
        )
        assert result(harness, execution.id, reported) == pb.EXECUTION_STATUS_COMPLETED
        served = get(harness, execution.id)
        assert [(c.name, c.status, c.passed) for c in served.result.tests] == [
            ("c0", pb.CASE_STATUS_COMPLETED, True),
            ("c1", pb.CASE_STATUS_COMPLETED, False),
            ("c2", pb.CASE_STATUS_SKIPPED, False),
        ]
        assert served.tests_total == 3

    @pytest.mark.parametrize(
        ("request_fields", "kind"),
        [
            ({"tests": [case()] * 101}, "invalid_argument"),
            ({"tests": [case()], "stdin": b"x"}, "invalid_argument"),
            ({"tests": [case()], "interactive": True}, "invalid_argument"),
            ({"tests": [case(args=["a\0"])]}, "invalid_argument"),
            ({"tests": [case(name="x" * 201)]}, "invalid_argument"),
            ({"tests": [case()], "float_tolerance": 0.1}, "invalid_argument"),  # tolerance without tokens
            ({"tests": [case()], "compare": pb.COMPARE_MODE_TOKENS, "float_tolerance": -1}, "invalid_argument"),
            ({"compare": pb.COMPARE_MODE_EXACT}, "invalid_argument"),  # no tests
            ({"stop_on_first_failure": True}, "invalid_argument"),
            ({"tests": [case(stdin=b"x" * (1024 * 1024 + 1))]}, "payload_too_large"),
            ({"tests": [case(stdin=b"x" * 1024 * 1024)] * 5}, "payload_too_large"),  # 5 MiB in all
        ],
    )
    def test_malformed_suites_are_refused(self, harness: Harness, request_fields: dict[str, Any], kind: str) -> None:
        session_id = harness.sessions.add()
        assert_error(
            rpc_error(lambda: create(harness, session_id, **request_fields)), grpc.StatusCode.INVALID_ARGUMENT, kind
        )

    def test_wrong_answers_do_not_block_the_session_but_crashes_do(self, harness: Harness) -> None:
        wrong = harness.sessions.add()
        for _ in range(6):
            execution = create(harness, wrong, tests=[case(expected="x")])
            result(harness, execution.id, suite_result((pb.CASE_STATUS_COMPLETED, False)))
        assert create(harness, wrong).status == pb.EXECUTION_STATUS_QUEUED
        crashing = harness.sessions.add()
        for _ in range(5):
            execution = create(harness, crashing, tests=[case(), case()])
            result(
                harness, execution.id, suite_result((pb.CASE_STATUS_COMPLETED, True), (pb.CASE_STATUS_FAILED, False))
            )
        assert_error(rpc_error(lambda: create(harness, crashing)), grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited")


class TestTenancy:
    def test_another_tenants_idempotency_key_finds_nothing(self, harness: Harness) -> None:
        session_id = harness.sessions.add()
        as_acme = (("lce-tenant", "acme"),)
        request = pb.CreateExecutionRequest(session_id=session_id, idempotency_key="k-1")
        first = harness.executions.CreateExecution(request, timeout=TIMEOUT_S, metadata=as_acme).execution
        again = harness.executions.CreateExecution(request, timeout=TIMEOUT_S, metadata=as_acme).execution
        assert again.id == first.id and first.tenant == "acme"
        as_globex = (("lce-tenant", "globex"),)
        failure = rpc_error(lambda: harness.executions.CreateExecution(request, timeout=TIMEOUT_S, metadata=as_globex))
        assert_error(failure, grpc.StatusCode.NOT_FOUND, "not_found")
        read = pb.GetExecutionRequest(execution_id=first.id)
        failure = rpc_error(lambda: harness.executions.GetExecution(read, timeout=TIMEOUT_S, metadata=as_globex))
        assert_error(failure, grpc.StatusCode.NOT_FOUND, "not_found")

    def test_another_tenants_runs_are_not_listed(self, harness: Harness) -> None:
        """Told by the runs themselves: this stand-in session_service knows no tenants."""
        session_id = harness.sessions.add()
        as_acme, as_globex = (("lce-tenant", "acme"),), (("lce-tenant", "globex"),)
        request = pb.CreateExecutionRequest(session_id=session_id)
        created = harness.executions.CreateExecution(request, timeout=TIMEOUT_S, metadata=as_acme).execution
        listing = pb.ListExecutionsRequest(session_id=session_id)
        listed = harness.executions.ListExecutions(listing, timeout=TIMEOUT_S, metadata=as_acme).executions
        assert [execution.id for execution in listed] == [created.id]
        failure = rpc_error(lambda: harness.executions.ListExecutions(listing, timeout=TIMEOUT_S, metadata=as_globex))
        assert_error(failure, grpc.StatusCode.NOT_FOUND, "not_found")


class TestSystem:
    def test_queues_executors_and_runs_as_they_are(self, harness: Harness, redis_url: str) -> None:
        first = create(harness, harness.sessions.add(language="ruby"))
        time.sleep(0.2)
        create(harness, harness.sessions.add(language="ruby"))
        create(harness, harness.sessions.add())
        announced = ExecutorInfo("e1", "java", {"java": "17.0.9"}, "bwrap-userns", 1, 1, "h", 7, "0.1.0", 1.7e9)
        ExecutorRegistry(redis.Redis.from_url(redis_url)).announce(announced, ttl_s=30)
        assert started(harness, first.id)
        harness.service.system.run_counts.flush()  # what the service's own thread does every second

        system = harness.executions.GetSystem(pb.GetSystemRequest(), timeout=TIMEOUT_S)
        # The interactive lane's queues (runs without a suite are interactive); each language has a batch one too.
        queues = {queue.language: queue for queue in system.queues if queue.lane == pb.PRIORITY_INTERACTIVE}
        batch = {queue.language: queue for queue in system.queues if queue.lane == pb.PRIORITY_BATCH}
        assert set(queues) == set(batch) == {language.name for language in LANGUAGES}
        assert batch["ruby"].name == queue_for(QUEUE, "ruby", Lane.BATCH) and batch["ruby"].depth == 0
        assert queues["ruby"].name == queue_for(QUEUE, "ruby")
        # The started run's job is still in the list here: no real executor took it.
        assert (queues["ruby"].depth, queues["python"].depth, queues["java"].depth) == (2, 1, 0)
        assert queues["ruby"].oldest_seconds >= 0.2 > queues["python"].oldest_seconds
        assert queues["java"].oldest_seconds == 0
        (executor,) = system.executors
        assert (executor.executor_id, executor.pool, dict(executor.languages)) == ("e1", "java", {"java": "17.0.9"})
        assert (executor.slots_busy, executor.slots_total, executor.sandbox_mode) == (1, 1, "bwrap-userns")
        assert [window.minutes for window in system.runs] == [1, 5, 15]
        assert dict(system.runs[0].by_state) == {"QUEUED": 3, "RUNNING": 1}
        assert system.version

    def test_a_key_that_is_not_an_admin_s_is_refused(self, harness: Harness) -> None:
        user, _ = harness.service.keys.create("acme")
        admin, _ = harness.service.keys.create("ops", admin=True)
        as_user = (("authorization", f"Bearer {user}"),)
        request = pb.GetSystemRequest()
        failure = rpc_error(lambda: harness.executions.GetSystem(request, timeout=TIMEOUT_S, metadata=as_user))
        assert failure.code() == grpc.StatusCode.PERMISSION_DENIED
        as_admin = (("authorization", f"Bearer {admin}"),)
        assert harness.executions.GetSystem(pb.GetSystemRequest(), timeout=TIMEOUT_S, metadata=as_admin).queues


class TestDeadline:
    def test_nothing_is_created_once_the_callers_deadline_is_too_close(self, harness: Harness, redis_url: str) -> None:
        session_id = harness.sessions.add()
        request = pb.CreateExecutionRequest(session_id=session_id)
        failure = rpc_error(lambda: harness.executions.CreateExecution(request, timeout=0.2))
        assert_error(failure, grpc.StatusCode.DEADLINE_EXCEEDED, "deadline_passed")
        listed = harness.executions.ListExecutions(pb.ListExecutionsRequest(session_id=session_id), timeout=TIMEOUT_S)
        assert list(listed.executions) == []
        assert Queue(PYTHON_QUEUE, connection=redis.Redis.from_url(redis_url)).get_job_ids() == []


class TestEvents:
    def test_oldest_first_with_attempts_and_executors(self, harness: Harness) -> None:
        execution_id = create(harness, harness.sessions.add()).id
        started(harness, execution_id, "ex-1", 1)
        result(harness, execution_id, run_result(), executor_id="ex-1")
        found = events(harness, execution_id)
        assert [(e.type, e.attempt if e.HasField("attempt") else None, e.executor_id) for e in found] == [
            ("QUEUED", None, ""),
            ("RUNNING", 1, "ex-1"),
            ("COMPLETED", 1, "ex-1"),
        ]
        times = [e.at.ToDatetime() for e in found]
        assert times == sorted(times)

    def test_unknown_and_malformed(self, harness: Harness) -> None:
        assert_error(rpc_error(lambda: events(harness, str(uuid.uuid4()))), grpc.StatusCode.NOT_FOUND, "not_found")
        assert_error(rpc_error(lambda: events(harness, "x")), grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")


class TestRecovery:
    def test_an_expired_lease_queues_the_next_attempt_as_its_own_job(
        self, make_harness: Factory, redis_url: str
    ) -> None:
        harness = make_harness(lease_s=2, retry_backoff_s=(0.5, 0.5, 0.5))
        execution_id = create(harness, harness.sessions.add()).id
        started(harness, execution_id, "ex-killed", 1)
        taken_back, retried_after_it = reconciled("lease_expired"), retries("lease_expired")
        harness.service.reconciler.start()
        wait_for(lambda: job_exists(redis_url, f"{execution_id}_2"))
        # At least this run's: rows other tests of this shared database left RUNNING may expire meanwhile too.
        assert reconciled("lease_expired") - taken_back >= 1 and retries("lease_expired") - retried_after_it >= 1
        execution = get(harness, execution_id)
        assert (execution.status, execution.attempt) == (pb.EXECUTION_STATUS_QUEUED, 2)
        payload = rq_job(redis_url, f"{execution_id}_2").kwargs["payload"]
        assert (payload["execution_id"], payload["attempt"]) == (execution_id, 2)
        retried = events(harness, execution_id)[-1]
        assert (retried.type, retried.attempt, retried.executor_id, retried.reason) == (
            "RETRIED",
            1,
            "ex-killed",
            "lease_expired",
        )
        # The killed executor's attempt is over: it may neither start again nor renew.
        assert started(harness, execution_id, "ex-killed", 1) is False
        assert renew(harness, execution_id, "ex-killed", 1) is False
        assert started(harness, execution_id, "ex-2", 2) is True

    def test_an_interactive_run_that_started_is_not_retried(self, make_harness: Factory, redis_url: str) -> None:
        harness = make_harness(lease_s=2, retry_backoff_s=(0.2, 0.2, 0.2))
        execution_id = create(harness, harness.sessions.add(), interactive=True).id
        started(harness, execution_id, "ex-killed", 1)
        harness.service.reconciler.start()
        wait_for(lambda: get(harness, execution_id).status == pb.EXECUTION_STATUS_FAILED)
        execution = get(harness, execution_id)
        assert (execution.attempt, reason_text_of(execution.result)) == (1, "internal_error")
        assert "interactive run" in execution.result.stderr and "not retried" in execution.result.stderr
        assert [e.type for e in events(harness, execution_id)] == ["QUEUED", "RUNNING", "FAILED"]
        assert not job_exists(redis_url, f"{execution_id}_2")

    def test_an_interactive_runs_internal_error_after_its_start_is_not_retried(self, make_harness: Factory) -> None:
        harness = make_harness(retry_backoff_s=(0.2, 0.2, 0.2))
        execution_id = create(harness, harness.sessions.add(), interactive=True).id
        started(harness, execution_id)
        failure = pb.RunResult(
            status=pb.EXECUTION_STATUS_FAILED, reason=pb.REASON_INTERNAL_ERROR, stderr="sandbox gone"
        )
        assert result(harness, execution_id, failure) == pb.EXECUTION_STATUS_FAILED

    def test_an_interactive_run_that_never_started_is_retried(self, make_harness: Factory, redis_url: str) -> None:
        harness = make_harness(retry_backoff_s=(0.2, 0.2, 0.2))
        execution_id = create(harness, harness.sessions.add(), interactive=True).id
        rq_job(redis_url, execution_id).set_status(JobStatus.FAILED)  # nobody read its input yet
        harness.service.reconciler.start()
        wait_for(lambda: job_exists(redis_url, f"{execution_id}_2"))
        assert rq_job(redis_url, f"{execution_id}_2").kwargs["payload"]["interactive"] is True

    def test_a_renewed_lease_is_left_alone(self, make_harness: Factory) -> None:
        harness = make_harness(lease_s=2)
        execution_id = create(harness, harness.sessions.add()).id
        started(harness, execution_id, "ex-1", 1)
        harness.service.reconciler.start()
        for _ in range(8):
            time.sleep(0.5)
            assert renew(harness, execution_id, "ex-1", 1) is True
        assert get(harness, execution_id).attempt == 1

    def test_after_the_last_retry_the_run_ends_failed_internal_error(self, make_harness: Factory) -> None:
        harness = make_harness(lease_s=2, retry_backoff_s=(0.2,))
        execution_id = create(harness, harness.sessions.add()).id
        harness.service.reconciler.start()
        started(harness, execution_id, "ex-1", 1)
        wait_for(lambda: get(harness, execution_id).attempt == 2)
        started(harness, execution_id, "ex-2", 2)
        wait_for(lambda: get(harness, execution_id).status == pb.EXECUTION_STATUS_FAILED)
        execution = get(harness, execution_id)
        assert reason_text_of(execution.result) == "internal_error"
        assert [e.type for e in events(harness, execution_id)] == ["QUEUED", "RUNNING", "RETRIED", "RUNNING", "FAILED"]

    def test_an_internal_error_result_is_retried(self, make_harness: Factory, redis_url: str) -> None:
        harness = make_harness(retry_backoff_s=(0.2, 0.2, 0.2))
        execution_id = create(harness, harness.sessions.add()).id
        harness.service.reconciler.start()
        started(harness, execution_id)
        failure = pb.RunResult(
            status=pb.EXECUTION_STATUS_FAILED, reason=pb.REASON_INTERNAL_ERROR, stderr="the sandbox could not be set up"
        )
        assert result(harness, execution_id, failure) == pb.EXECUTION_STATUS_QUEUED
        wait_for(lambda: job_exists(redis_url, f"{execution_id}_2"))

    def test_a_queued_run_whose_job_failed_without_starting_is_retried(
        self, make_harness: Factory, redis_url: str
    ) -> None:
        harness = make_harness(retry_backoff_s=(0.2, 0.2, 0.2))
        execution_id = create(harness, harness.sessions.add()).id
        # The executor took the job but could never report its start; RQ failed the job.
        rq_job(redis_url, execution_id).set_status(JobStatus.FAILED)
        harness.service.reconciler.start()
        wait_for(lambda: job_exists(redis_url, f"{execution_id}_2"))
        retried = events(harness, execution_id)[-1]
        assert (retried.type, retried.attempt, retried.reason) == ("RETRIED", 1, "job_ended_without_start")

    def test_a_queued_run_whose_job_was_taken_but_never_started_is_retried_after_a_lease(
        self, make_harness: Factory, redis_url: str
    ) -> None:
        harness = make_harness(lease_s=2, retry_backoff_s=(0.2, 0.2, 0.2))
        execution_id = create(harness, harness.sessions.add()).id
        # An executor took the job and was killed before its ReportStarted landed: RQ says started.
        taken_at = datetime.now(UTC)
        job = rq_job(redis_url, execution_id)
        job.set_status(JobStatus.STARTED)
        redis.Redis.from_url(redis_url).hset(job.key, "started_at", utcformat(taken_at))
        harness.service.reconciler.start()
        wait_for(lambda: job_exists(redis_url, f"{execution_id}_2"))
        assert datetime.now(UTC) - taken_at >= timedelta(seconds=2), "retried before a lease had passed"
        retried = events(harness, execution_id)[-1]
        assert (retried.type, retried.attempt, retried.reason) == ("RETRIED", 1, "start_not_reported")
        # The lost executor's late start is refused; the next attempt's is taken.
        assert started(harness, execution_id, "ex-lost", 1) is False
        assert started(harness, execution_id, "ex-2", 2) is True

    def test_a_started_job_whose_run_is_running_is_left_to_its_lease(
        self, make_harness: Factory, redis_url: str
    ) -> None:
        harness = make_harness(lease_s=2)
        execution_id = create(harness, harness.sessions.add()).id
        job = rq_job(redis_url, execution_id)
        job.set_status(JobStatus.STARTED)
        redis.Redis.from_url(redis_url).hset(job.key, "started_at", utcformat(datetime.now(UTC) - timedelta(hours=1)))
        started(harness, execution_id, "ex-1", 1)
        harness.service.reconciler.start()
        for _ in range(6):
            time.sleep(0.5)
            assert renew(harness, execution_id, "ex-1", 1) is True
        assert get(harness, execution_id).attempt == 1

    def test_a_backlog_larger_than_a_batch_is_reconciled_in_one_sweep(
        self, make_harness: Factory, redis_url: str
    ) -> None:
        harness = make_harness(runs_per_minute=1000)
        session_id = harness.sessions.add()
        ids = [create(harness, session_id).id for _ in range(SWEEP_BATCH + 20)]
        redis.Redis.from_url(redis_url).flushall()
        time.sleep(0.6)
        enqueued = reconciled(ENQUEUED)
        harness.service.reconciler.sweep()
        assert all(job_exists(redis_url, execution_id) for execution_id in ids)
        # Every job in Redis now is one this sweep enqueued (rows other tests left QUEUED too), each counted once.
        # Rows other tests left QUEUED may be of other languages: every language's queue is counted.
        queued = sum(queue.count for queue in Queue.all(connection=redis.Redis.from_url(redis_url)))
        assert reconciled(ENQUEUED) - enqueued == queued


def reconciled(action: str) -> float:
    """lce_reconciler_actions_total of this process (the harness's reconciler runs in it)."""
    return REGISTRY.get_sample_value("lce_reconciler_actions_total", {"action": action}) or 0.0


def retries(reason: str) -> float:
    return REGISTRY.get_sample_value("lce_execution_retries_total", {"reason": reason}) or 0.0


def watch(harness: Harness) -> Iterator[pb.ExecutionChange]:
    return harness.executions.WatchExecutions(pb.WatchExecutionsRequest(), timeout=TIMEOUT_S)


@contextmanager
def bare_feed(
    redis_url: str, *, publisher: redis.Redis | None = None, max_pending: int = 100, start: bool = True
) -> Iterator[ChangeFeed]:
    """A replica's change feed alone, on the test Redis (or another publisher), closed afterwards."""
    client = redis.Redis.from_url(redis_url)
    feed = ChangeFeed(publisher or client, client, f"{QUEUE}:bare-changes", max_pending=max_pending)
    if start:
        feed.start()
    try:
        yield feed
    finally:
        feed.close()


def watching(feed: ChangeFeed) -> Watcher:
    """A watcher of the feed once it listens."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            return feed.watch()
        except Unavailable:
            assert time.monotonic() < deadline, "the feed never listened"
            time.sleep(0.05)


def change(execution_id: str) -> pb.ExecutionChange:
    return pb.ExecutionChange(execution_id=execution_id)


def forwarded(watcher: Watcher, count: int) -> list[str]:
    """The ids of the next `count` changes the watcher forwards, fewer if it ends first."""
    changes = iter(watcher)
    pool = ThreadPoolExecutor(1)
    try:
        ids = []
        for _ in range(count):
            told = pool.submit(next, changes, None).result(TIMEOUT_S)
            if told is None:
                break
            ids.append(told.execution_id)
        return ids
    finally:
        watcher.end()  # a next() still waiting returns
        pool.shutdown()


def listening(harness: Harness) -> Harness:
    """Starts the harness's change feed and waits until it listens."""
    harness.service.changes.start()
    return until_listening(harness)


def until_listening(harness: Harness) -> Harness:
    """Waits until the change feed listens: a stream is then accepted."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            harness.service.changes.forget(harness.service.changes.watch())
            return harness
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class TestChangeFeed:
    def test_every_transition_reaches_a_stream_served_by_another_replica(self, make_harness: Factory) -> None:
        writer, watched = listening(make_harness()), listening(make_harness())
        stream = watch(watched)
        assert next(stream).execution_id == ""  # live from here on
        execution_id = create(writer, writer.sessions.add()).id
        started(writer, execution_id)
        assert next(stream).execution_id == execution_id
        result(writer, execution_id, run_result())
        change = next(stream)
        assert change.execution_id == execution_id
        assert change.finished == get(writer, execution_id)  # the final state crosses Redis too
        stream.cancel()

    def test_a_finished_run_is_announced_with_its_final_state(self, make_harness: Factory) -> None:
        harness = listening(make_harness())
        execution_id = create(harness, harness.sessions.add()).id
        stream = watch(harness)
        next(stream)
        started(harness, execution_id)
        assert not next(stream).HasField("finished")  # an unfinished state is read by whoever needs it
        result(harness, execution_id, run_result(stdout="42\n"))
        change = next(stream)
        assert change.finished == get(harness, execution_id)
        assert change.finished.result.stdout == "42\n"
        stream.cancel()

    def test_a_large_result_is_announced_without_it(self, make_harness: Factory) -> None:
        harness = listening(make_harness())
        execution_id = create(harness, harness.sessions.add()).id
        started(harness, execution_id)
        stream = watch(harness)
        next(stream)
        result(harness, execution_id, run_result(stdout="x" * (MAX_CARRIED_BYTES + 1)))
        change = next(stream)
        assert change.execution_id == execution_id and not change.HasField("finished")
        stream.cancel()

    def test_an_undecodable_message_on_the_channel_ends_the_streams(
        self, make_harness: Factory, redis_url: str
    ) -> None:
        harness = listening(make_harness())
        stream = watch(harness)
        next(stream)
        redis.Redis.from_url(redis_url).publish(f"{QUEUE}:execution-changes:v3", b"\xff not a change")
        err = rpc_error(lambda: next(stream))
        assert err.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert next(watch(until_listening(harness))).execution_id == ""

    def test_a_replicas_own_streams_hear_its_changes_without_redis_in_between(self, redis_url: str) -> None:
        unreachable = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
        with bare_feed(redis_url, publisher=unreachable) as feed:  # its listener reaches Redis, its publisher never
            watcher = watching(feed)
            feed.publish(change("e1"))
            assert forwarded(watcher, 1) == ["e1"]

    def test_a_replica_forwards_its_own_change_once(self, redis_url: str) -> None:
        with bare_feed(redis_url) as feed:
            watcher = watching(feed)
            feed.publish(change("e1"))
            time.sleep(0.3)  # its echo from Redis is back by now
            feed.publish(change("e2"))
            assert forwarded(watcher, 2) == ["e1", "e2"]

    def test_announcements_a_replica_dropped_end_the_other_replicas_streams(self, redis_url: str) -> None:
        with bare_feed(redis_url) as other, bare_feed(redis_url, max_pending=2, start=False) as backed_up:
            watcher = watching(other)
            for n in range(3):
                backed_up.publish(change(f"e{n}"))  # its publisher is not running: the third is dropped
            backed_up.start()
            assert forwarded(watcher, 3) == []  # the gap came first: the stream ended

    def test_a_draining_replica_still_publishes_what_its_calls_commit(self, redis_url: str) -> None:
        with bare_feed(redis_url) as other, bare_feed(redis_url) as draining:
            watcher = watching(other)
            watching(draining)
            draining.end_streams()
            with pytest.raises(Unavailable):
                draining.watch()
            draining.publish(change("e1"))
            assert forwarded(watcher, 1) == ["e1"]

    def test_a_report_that_changes_nothing_is_not_announced(self, make_harness: Factory) -> None:
        harness = listening(make_harness())
        first, second = create(harness, harness.sessions.add()).id, create(harness, harness.sessions.add()).id
        stream = watch(harness)
        next(stream)
        started(harness, first)
        started(harness, first)  # a repeated start
        started(harness, second)
        assert [next(stream).execution_id, next(stream).execution_id] == [first, second]
        stream.cancel()

    def test_a_retried_attempt_is_announced(self, make_harness: Factory) -> None:
        harness = listening(make_harness())
        execution_id = create(harness, harness.sessions.add()).id
        started(harness, execution_id)
        stream = watch(harness)
        next(stream)
        failed = pb.RunResult(status=pb.EXECUTION_STATUS_FAILED, reason=pb.REASON_INTERNAL_ERROR, stderr="no sandbox")
        result(harness, execution_id, failed)
        change = next(stream)
        assert change.execution_id == execution_id and not change.HasField("finished")
        assert get(harness, execution_id).status == pb.EXECUTION_STATUS_QUEUED  # the next attempt waits
        stream.cancel()

    def test_losing_the_redis_subscription_ends_the_streams_until_it_listens_again(
        self, make_harness: Factory, redis_url: str
    ) -> None:
        harness = listening(make_harness())
        stream = watch(harness)
        next(stream)
        redis.Redis.from_url(redis_url).client_kill_filter(_type="pubsub")
        err = rpc_error(lambda: next(stream))
        assert err.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        until_listening(harness)  # subscribed again after a backoff
        assert next(watch(harness)).execution_id == ""

    def test_a_replica_not_listening_refuses_streams(self, harness: Harness) -> None:
        err = rpc_error(lambda: next(watch(harness)))
        assert err.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]

    def test_closing_the_feed_ends_its_streams_unavailable(self, make_harness: Factory) -> None:
        harness = listening(make_harness())
        stream = watch(harness)
        next(stream)
        harness.service.changes.close()
        err = rpc_error(lambda: next(stream))
        assert err.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]

    def test_streams_beyond_the_bound_are_refused(self, make_harness: Factory) -> None:
        harness = listening(make_harness())
        streams = [watch(harness) for _ in range(MAX_WATCHERS)]
        for stream in streams:
            next(stream)
        err = rpc_error(lambda: next(watch(harness)))
        assert err.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        streams[0].cancel()
        deadline = time.monotonic() + TIMEOUT_S  # the cancelled stream's slot is freed by its callback
        while True:
            try:
                assert next(watch(harness)).execution_id == ""
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        for stream in streams[1:]:
            stream.cancel()


class TestWatchExecution:
    def watch(self, harness: Harness, execution_id: str, after: str = "") -> list[pb.RunEvent]:
        request = pb.WatchExecutionRequest(execution_id=execution_id, after=after)
        return list(harness.executions.WatchExecution(request, timeout=TIMEOUT_S))

    def test_a_runs_states_and_output_then_its_result(self, harness: Harness, redis_url: str) -> None:
        execution = create(harness, harness.sessions.add())
        started(harness, execution.id)
        # As the executor appends the program's output while it runs (executor/live_output.py).
        RunEvents.from_url(redis_url).append(execution.id, Kind.STDOUT, attempt=1, offset=0, data="hi\n")
        result(harness, execution.id, run_result(stdout="hi\n"))
        events = self.watch(harness, execution.id)
        assert [(e.kind, e.status, e.attempt) for e in events] == [
            ("status", pb.EXECUTION_STATUS_QUEUED, 1),
            ("status", pb.EXECUTION_STATUS_RUNNING, 1),
            ("stdout", pb.EXECUTION_STATUS_UNSPECIFIED, 1),
            ("result", pb.EXECUTION_STATUS_COMPLETED, 0),
        ]
        assert (events[2].offset, events[2].data) == (0, "hi\n")
        assert events[3].execution.id == execution.id and events[3].execution.result.stdout == "hi\n"
        # Resumed after an event, it gives exactly what followed.
        assert [e.id for e in self.watch(harness, execution.id, after=events[1].id)] == [e.id for e in events[2:]]

    def test_a_finished_run_whose_stream_is_gone_gives_its_result(self, harness: Harness, redis_url: str) -> None:
        execution = create(harness, harness.sessions.add())
        started(harness, execution.id)
        result(harness, execution.id, run_result())
        redis.Redis.from_url(redis_url).delete(stream_key(execution.id))
        [only] = self.watch(harness, execution.id)
        assert (only.kind, only.execution.status) == ("result", pb.EXECUTION_STATUS_COMPLETED)

    def test_unknown_and_malformed(self, harness: Harness) -> None:
        failure = rpc_error(lambda: self.watch(harness, str(uuid.uuid4())))
        assert_error(failure, grpc.StatusCode.NOT_FOUND, "not_found")
        execution = create(harness, harness.sessions.add())
        failure = rpc_error(lambda: self.watch(harness, execution.id, after="1-2-3"))
        assert_error(failure, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")


def internal_failure(harness: Harness, execution_id: str, attempt: int = 1) -> None:
    """The run's attempt fails in the machinery; with no retry left it ends FAILED internal_error."""
    started(harness, execution_id, "ex-1", attempt)
    failure = pb.RunResult(status=pb.EXECUTION_STATUS_FAILED, reason=pb.REASON_INTERNAL_ERROR, stderr="sandbox gone")
    result(harness, execution_id, failure, attempt=attempt)


def dead_letters(harness: Harness, **fields: Any) -> pb.FindExecutionsResponse:
    request = pb.FindExecutionsRequest(status=pb.EXECUTION_STATUS_FAILED, reason=pb.REASON_INTERNAL_ERROR, **fields)
    return harness.executions.FindExecutions(request, timeout=TIMEOUT_S)


def retry(harness: Harness, execution_id: str, metadata: tuple[tuple[str, str], ...] = ()) -> pb.Execution:
    request = pb.RetryExecutionRequest(execution_id=execution_id)
    return harness.executions.RetryExecution(request, timeout=TIMEOUT_S, metadata=metadata).execution


class TestDeadLetters:
    def test_a_dead_letter_is_listed_retried_as_its_next_attempt_and_runs(
        self, make_harness: Factory, redis_url: str
    ) -> None:
        harness = make_harness(retry_backoff_s=())
        session_id = harness.sessions.add()
        dead = create(harness, session_id).id
        internal_failure(harness, dead)
        fine = create(harness, session_id).id
        started(harness, fine)
        result(harness, fine, run_result())
        assert get(harness, dead).status == pb.EXECUTION_STATUS_FAILED
        listed = [e.id for e in dead_letters(harness, limit=100).executions]  # the database is shared
        assert dead in listed and fine not in listed

        queued = retry(harness, dead)
        assert (queued.status, queued.attempt, queued.HasField("result")) == (pb.EXECUTION_STATUS_QUEUED, 2, False)
        assert not queued.HasField("finished_at")
        assert dead not in [e.id for e in dead_letters(harness, limit=100).executions]
        assert rq_job(redis_url, f"{dead}_2").kwargs["payload"]["attempt"] == 2
        last = events(harness, dead)[-1]
        assert (last.type, last.attempt, last.reason) == ("RETRIED", 1, "operator_retry by an internal caller")

        assert started(harness, dead, "ex-2", 2) is True
        assert result(harness, dead, run_result(), executor_id="ex-2", attempt=2) == pb.EXECUTION_STATUS_COMPLETED
        assert [e.type for e in events(harness, dead)] == [
            "QUEUED",
            "RUNNING",
            "FAILED",
            "RETRIED",
            "RUNNING",
            "COMPLETED",
        ]
        assert get(harness, dead).result.stdout == "hi\n"

    def test_a_programs_own_failure_and_an_unfinished_run_are_not_retried(self, harness: Harness) -> None:
        session_id = harness.sessions.add()
        crashed = create(harness, session_id).id
        started(harness, crashed)
        result(harness, crashed, run_result(pb.EXECUTION_STATUS_FAILED))
        failure = rpc_error(lambda: retry(harness, crashed))
        assert_error(failure, grpc.StatusCode.FAILED_PRECONDITION, "not_retryable")
        assert "runtime_error" in failure.details()  # type: ignore[attr-defined]
        queued = create(harness, session_id).id
        assert_error(rpc_error(lambda: retry(harness, queued)), grpc.StatusCode.FAILED_PRECONDITION, "not_retryable")
        assert [e.type for e in events(harness, crashed)] == ["QUEUED", "RUNNING", "FAILED"]
        unknown = rpc_error(lambda: retry(harness, str(uuid.uuid4())))
        assert_error(unknown, grpc.StatusCode.NOT_FOUND, "not_found")

    def test_an_interactive_dead_letter_is_not_retried(self, make_harness: Factory) -> None:
        harness = make_harness(retry_backoff_s=())
        execution_id = create(harness, harness.sessions.add(), interactive=True).id
        internal_failure(harness, execution_id)
        failure = rpc_error(lambda: retry(harness, execution_id))
        assert_error(failure, grpc.StatusCode.FAILED_PRECONDITION, "not_retryable")

    def test_pages_newest_first_and_a_forged_token_is_refused(self, make_harness: Factory) -> None:
        harness = make_harness(retry_backoff_s=())
        session_id = harness.sessions.add()
        ids = []
        for _ in range(3):
            ids.append(create(harness, session_id).id)
            internal_failure(harness, ids[-1])
        first = dead_letters(harness, limit=2)
        assert [e.id for e in first.executions] == ids[:0:-1] and first.next_page_token
        # The newest first: this test's own, then older ones of the shared database.
        second = dead_letters(harness, limit=2, page_token=first.next_page_token)
        assert second.executions[0].id == ids[0]
        pages, token = 0, second.next_page_token
        while token:  # every page goes on just after the last; the last one says so
            page = dead_letters(harness, limit=2, page_token=token)
            pages, token = pages + 1, page.next_page_token
            assert not set(ids) & {e.id for e in page.executions}
        assert pages < 100
        forged = rpc_error(lambda: dead_letters(harness, page_token="not-a-token"))
        assert_error(forged, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")
        naive = base64.urlsafe_b64encode(f"2026-01-01T00:00:00|{ids[0]}".encode()).decode()
        assert_error(
            rpc_error(lambda: dead_letters(harness, page_token=naive)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_argument",
        )
        # Any status, any reason: every run of every tenant.
        anything = harness.executions.FindExecutions(pb.FindExecutionsRequest(limit=100), timeout=TIMEOUT_S)
        assert {e.id for e in anything.executions} >= set(ids)

    def test_only_an_admin_key_operates(self, make_harness: Factory) -> None:
        harness = make_harness(retry_backoff_s=())
        execution_id = create(harness, harness.sessions.add()).id
        internal_failure(harness, execution_id)
        user_secret, _ = harness.service.keys.create("acme")
        admin_secret, admin = harness.service.keys.create("ops", admin=True)
        as_user = (("authorization", f"Bearer {user_secret}"),)
        request = pb.FindExecutionsRequest(status=pb.EXECUTION_STATUS_FAILED)
        denied = rpc_error(lambda: harness.executions.FindExecutions(request, timeout=TIMEOUT_S, metadata=as_user))
        assert_error(denied, grpc.StatusCode.PERMISSION_DENIED, "permission_denied")
        assert_error(
            rpc_error(lambda: retry(harness, execution_id, as_user)),
            grpc.StatusCode.PERMISSION_DENIED,
            "permission_denied",
        )
        queued = retry(harness, execution_id, (("authorization", f"Bearer {admin_secret}"),))
        assert queued.attempt == 2
        assert events(harness, execution_id)[-1].reason == f"operator_retry by key {admin.id}"
