"""The executor against a stand-in ExecutorReportService over a real channel, with real RQ jobs on a real Redis.

Jobs go through the same queue, serializer and job function the execution service uses;
programs run on the real toolchains through the UnconfinedLauncher.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from rq import Queue
from rq.job import Job, JobStatus
from rq.worker import WorkerStatus

from common.grpc_server import RunningServer, start_server
from common.job import JOB_FUNCTION, SERIALIZER, Encoding, ExecutionJob, queue_for
from common.languages import LANGUAGES, by_name
from common.outcome import reason_text_of
from executor import jobs
from executor.compile_cache import CompileCache, is_key
from executor.process import UnconfinedLauncher
from executor.report_client import ReportClient
from executor.settings import ExecutorConfig
from executor.worker import build_worker, in_turn, queue_groups, queue_names
from lce.execution.v1 import execution_pb2 as pb
from lce.execution.v1 import execution_pb2_grpc as pb_grpc
from tests.c_programs import SELF_REWRITING_C, c_printing
from tests.conftest import REPO_ROOT, free_port

QUEUE = "test-executions"
OUTPUT_LIMIT = 64 * 1024


class StandInReports(pb_grpc.ExecutorReportServiceServicer):
    """Records what executors report; answers like the execution service would."""

    def __init__(self, lease_s: int = 10) -> None:
        self.lease_s = lease_s
        self.started: list[pb.ReportStartedRequest] = []
        self.renewals: list[pb.RenewLeaseRequest] = []
        self.results: dict[str, pb.ReportResultRequest] = {}
        self.terminal: set[str] = set()
        self.reject_results = False
        self.unavailable_starts = 0  # the next this many starts are answered UNAVAILABLE
        self.changed = threading.Condition()

    def register(self, server: grpc.Server) -> None:
        pb_grpc.add_ExecutorReportServiceServicer_to_server(self, server)

    def ReportStarted(
        self, request: pb.ReportStartedRequest, context: grpc.ServicerContext
    ) -> pb.ReportStartedResponse:
        with self.changed:
            self.started.append(request)
            self.changed.notify_all()
            if self.unavailable_starts:
                self.unavailable_starts -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "stand-in is restarting")
        return pb.ReportStartedResponse(should_run=request.execution_id not in self.terminal, lease_s=self.lease_s)

    def RenewLease(self, request: pb.RenewLeaseRequest, context: grpc.ServicerContext) -> pb.RenewLeaseResponse:
        with self.changed:
            self.renewals.append(request)
        return pb.RenewLeaseResponse(renewed=True)

    def ReportResult(self, request: pb.ReportResultRequest, context: grpc.ServicerContext) -> pb.ReportResultResponse:
        if self.reject_results:
            context.abort(grpc.StatusCode.INTERNAL, "stand-in refuses results")
        with self.changed:
            self.results[request.execution_id] = request
            self.changed.notify_all()
        return pb.ReportResultResponse(status=request.result.status)

    def wait_for(self, predicate, timeout_s: float = 20) -> None:  # type: ignore[no-untyped-def]
        with self.changed:
            assert self.changed.wait_for(predicate, timeout_s)


@pytest.fixture
def reports() -> Iterator[tuple[StandInReports, RunningServer]]:
    servicer = StandInReports()
    server = start_server("127.0.0.1:0", servicer.register, ["lce.execution.v1.ExecutorReportService"])
    yield servicer, server
    server.stop(1)


class Executor:
    """A worker process's runtime in this test process, processing jobs in burst mode."""

    def __init__(self, redis_url: str, report_port: int, work_root: Path, report_retry_s: float = 10) -> None:
        self.config = ExecutorConfig(
            redis_url=redis_url,
            queue_name=QUEUE,
            execution_service_addr=f"127.0.0.1:{report_port}",
            health_listen_addr="127.0.0.1:0",
            executor_id="contract-test",
            output_limit_bytes=OUTPUT_LIMIT,
            work_root=work_root,
            sandbox_mode="none",
            allow_unconfined=True,
            report_retry_s=report_retry_s,
        )
        self.connection = redis.Redis.from_url(redis_url)
        self.reports = ReportClient(
            self.config.execution_service_addr, self.config.executor_id, report_retry_s=report_retry_s
        )
        jobs.install(
            jobs.Runtime(launcher=UnconfinedLauncher(work_root), reports=self.reports, output_limit_bytes=OUTPUT_LIMIT)
        )

    def enqueue(
        self,
        language: str,
        source: str,
        *,
        time_limit_ms: int = 5000,
        memory_limit_mb: int = 256,
        attempt: int = 1,
        **options: Any,
    ) -> Job:
        job = ExecutionJob(
            execution_id=str(uuid.uuid4()),
            language=language,
            source_code=source,
            time_limit_ms=time_limit_ms,
            memory_limit_mb=memory_limit_mb,
            attempt=attempt,
            **options,
        )
        # A language LCE does not know has no queue of its own: the earlier releases' single queue is
        # the one way such a job still reaches an executor.
        name = queue_for(QUEUE, language) if by_name(language) else QUEUE
        queue = Queue(name, connection=self.connection, serializer=SERIALIZER)
        return queue.enqueue(JOB_FUNCTION, job.to_payload(), job_id=job.job_id, job_timeout=job.job_timeout_s)

    def work(self) -> None:
        # rq installs its SIGINT/SIGTERM handlers on this (pytest's) main thread: put pytest's back.
        saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            build_worker(self.config, self.connection, [language.name for language in LANGUAGES]).work(
                burst=True, logging_level=None
            )
        finally:
            for signum, handler in saved.items():
                signal.signal(signum, handler)

    def close(self) -> None:
        self.reports.close()


@pytest.fixture
def executor(redis_url: str, reports: tuple[StandInReports, RunningServer], tmp_path: Path) -> Iterator[Executor]:
    executor = Executor(redis_url, reports[1].port, tmp_path / "runs")
    yield executor
    executor.close()


def run_one(executor: Executor, reports: StandInReports, language: str, source: str, **options: Any) -> pb.RunResult:
    return report_of_one(executor, reports, language, source, **options).result


def report_of_one(
    executor: Executor, reports: StandInReports, language: str, source: str, **options: Any
) -> pb.ReportResultRequest:
    job = executor.enqueue(language, source, **options)
    executor.work()
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    return reports.results[job.id]


@pytest.mark.parametrize("language", [language.name for language in LANGUAGES])
def test_template_says_hello_in_every_language(
    executor: Executor, reports: tuple[StandInReports, RunningServer], language: str
) -> None:
    servicer = reports[0]
    template = by_name(language)
    assert template is not None
    job = executor.enqueue(language, template.template_code)
    executor.work()

    [started] = servicer.started
    assert (started.execution_id, started.executor_id, started.attempt) == (job.id, "contract-test", 1)
    report = servicer.results[job.id]
    assert (report.executor_id, report.attempt) == ("contract-test", 1)
    result = report.result
    assert (result.status, reason_text_of(result)) == (pb.EXECUTION_STATUS_COMPLETED, ""), result.stderr
    assert result.stdout == "Hello World\n"
    assert result.exit_code == 0
    assert result.sandbox == "none"
    stages = [stage.name for stage in result.stages]
    assert stages == (["compile", "run"] if template.compile else ["run"])
    assert result.execution_time_ms == result.stages[-1].wall_time_ms > 0
    assert job.get_status(refresh=True) == JobStatus.FINISHED


@pytest.mark.parametrize(
    ("language", "source", "message"),
    [
        ("c", "int main(void) { return missing; }\n", "missing"),
        ("java", "public class Main { public static void main(String[] a) { int x = } }\n", "Main.java"),
    ],
)
def test_compile_error(
    executor: Executor, reports: tuple[StandInReports, RunningServer], language: str, source: str, message: str
) -> None:
    result = run_one(executor, reports[0], language, source)
    assert (result.status, reason_text_of(result)) == (pb.EXECUTION_STATUS_FAILED, "compile_error")
    assert message in result.stderr and "error" in result.stderr
    assert result.stdout == ""
    assert [stage.name for stage in result.stages] == ["compile"]
    assert result.stages[0].exit_code != 0


def test_runtime_error(executor: Executor, reports: tuple[StandInReports, RunningServer]) -> None:
    result = run_one(executor, reports[0], "python", "print('before')\n1 / 0\n")
    assert (result.status, reason_text_of(result), result.exit_code) == (pb.EXECUTION_STATUS_FAILED, "runtime_error", 1)
    assert result.stdout == "before\n"
    assert "ZeroDivisionError" in result.stderr


def test_verdicts_and_stage_times_are_counted(
    executor: Executor, reports: tuple[StandInReports, RunningServer]
) -> None:
    def sample(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    failed = {"language": "c", "status": "FAILED", "reason": "runtime_error"}
    compiles = {"language": "c", "stage": "compile"}
    before = sample("lce_executor_runs_total", failed), sample("lce_executor_stage_seconds_count", compiles)
    result = run_one(executor, reports[0], "c", f"int main(void) {{ return 3; }} /* {uuid.uuid4()} */\n")
    assert (result.status, reason_text_of(result)) == (pb.EXECUTION_STATUS_FAILED, "runtime_error")
    after = sample("lce_executor_runs_total", failed), sample("lce_executor_stage_seconds_count", compiles)
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


def test_timeout(executor: Executor, reports: tuple[StandInReports, RunningServer]) -> None:
    started = time.monotonic()
    result = run_one(executor, reports[0], "python", "import time\ntime.sleep(30)\n", time_limit_ms=500)
    assert time.monotonic() - started < 10
    assert (result.status, reason_text_of(result)) == (pb.EXECUTION_STATUS_TIMEOUT, "time_limit_exceeded:wall")
    assert not result.HasField("exit_code")
    assert result.stages[-1].signal == "SIGKILL"


def test_busy_loop_times_out(executor: Executor, reports: tuple[StandInReports, RunningServer]) -> None:
    result = run_one(executor, reports[0], "c", "int main(void) { for (;;) {} }\n", time_limit_ms=1000)
    # CPU and wall limits are equal for the run stage: which clock trips first is a race.
    assert result.status == pb.EXECUTION_STATUS_TIMEOUT
    assert reason_text_of(result) in ("time_limit_exceeded:cpu", "time_limit_exceeded:wall")


def test_output_limit(executor: Executor, reports: tuple[StandInReports, RunningServer]) -> None:
    result = run_one(executor, reports[0], "python", "while True:\n    print('spam')\n")
    assert (result.status, reason_text_of(result)) == (pb.EXECUTION_STATUS_FAILED, "output_limit_exceeded")
    assert result.stdout_truncated and len(result.stdout) == OUTPUT_LIMIT
    assert result.stdout.startswith("spam\nspam\n")


def test_base64_carries_the_exact_bytes(executor: Executor, reports: tuple[StandInReports, RunningServer]) -> None:
    source = "import sys\nsys.stdout.buffer.write(bytes(range(256)))\nsys.stderr.buffer.write(b'\\xff')\n"
    result = run_one(executor, reports[0], "python", source, encoding=Encoding.BASE64)
    assert result.status == pb.EXECUTION_STATUS_COMPLETED
    assert base64.b64decode(result.stdout, validate=True) == bytes(range(256))
    assert base64.b64decode(result.stderr, validate=True) == b"\xff"


def test_advice_is_reported_with_the_result(executor: Executor, reports: tuple[StandInReports, RunningServer]) -> None:
    report = report_of_one(executor, reports[0], "python", "while True:\n    pass\n", time_limit_ms=300)
    assert report.result.status == pb.EXECUTION_STATUS_TIMEOUT
    [warning] = report.warnings
    assert warning.startswith("line 1: `while True`") and "may never end" in warning


def test_program_sees_only_its_own_environment(
    executor: Executor, reports: tuple[StandInReports, RunningServer]
) -> None:
    source = "import os\nfor k in sorted(os.environ): print(k, os.environ[k])\n"
    result = run_one(executor, reports[0], "python", source)
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    python = by_name("python")
    assert python is not None
    # LC_CTYPE: Python's own coercion; the language's own: where its libraries are, one BLAS thread.
    assert set(lines) <= {"PATH", "HOME", "LANG", "TMPDIR", "LC_CTYPE", *python.env}
    assert lines["PYTHONPATH"] == "/opt/lce/packages/python"
    assert lines["PATH"] == "/usr/bin:/bin"
    assert lines["HOME"] == lines["TMPDIR"]
    assert not Path(lines["HOME"]).exists()  # the workspace is gone after the run


def test_already_terminal_execution_is_not_run(
    executor: Executor, reports: tuple[StandInReports, RunningServer]
) -> None:
    servicer = reports[0]
    job = executor.enqueue("python", "print('must not run')\n")
    servicer.terminal.add(job.id)
    skipped = REGISTRY.get_sample_value("lce_executor_jobs_skipped_total") or 0.0
    executor.work()
    assert [request.execution_id for request in servicer.started] == [job.id]
    assert servicer.results == {}
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert REGISTRY.get_sample_value("lce_executor_jobs_skipped_total") == skipped + 1


def test_unknown_language_is_an_internal_error(
    executor: Executor, reports: tuple[StandInReports, RunningServer]
) -> None:
    result = run_one(executor, reports[0], "cobol", "DISPLAY 'HI'.\n")
    assert (result.status, reason_text_of(result)) == (pb.EXECUTION_STATUS_FAILED, "internal_error")
    assert "cobol" in result.stderr


def test_failed_report_fails_the_job(executor: Executor, reports: tuple[StandInReports, RunningServer]) -> None:
    reports[0].reject_results = True
    job = executor.enqueue("python", "print(1)\n")
    executor.work()
    assert job.get_status(refresh=True) == JobStatus.FAILED


def test_the_attempt_comes_from_the_payload(executor: Executor, reports: tuple[StandInReports, RunningServer]) -> None:
    servicer = reports[0]
    job = executor.enqueue("python", "print(3)\n", attempt=3)
    execution_id = job.kwargs["payload"]["execution_id"] if job.kwargs else job.args[0]["execution_id"]
    assert job.id == f"{execution_id}_3"
    executor.work()
    assert [(request.execution_id, request.attempt) for request in servicer.started] == [(execution_id, 3)]
    assert servicer.results[execution_id].attempt == 3


def test_the_start_is_reported_once_as_the_job_is_taken(
    executor: Executor, reports: tuple[StandInReports, RunningServer]
) -> None:
    """The report sent at pickup is the job's start: the job takes its answer instead of asking again."""
    servicer = reports[0]
    assert run_one(executor, servicer, "python", "print('once')\n").stdout == "once\n"
    assert len(servicer.started) == 1


def test_a_start_sent_at_pickup_that_failed_is_sent_again(
    executor: Executor, reports: tuple[StandInReports, RunningServer]
) -> None:
    servicer = reports[0]
    servicer.unavailable_starts = 1
    job = executor.enqueue("python", "print('after a retry')\n")
    executor.work()
    assert [request.execution_id for request in servicer.started] == [job.id, job.id]
    assert servicer.results[job.id].result.stdout == "after a retry\n"


def test_the_workers_registration_is_renewed(executor: Executor) -> None:
    worker = build_worker(executor.config, executor.connection, ["python"])
    worker.register_birth()
    try:
        executor.connection.expire(worker.key, 5)
        worker.heartbeat()
        assert executor.connection.ttl(worker.key) > worker.worker_ttl
        assert executor.connection.hget(worker.key, "last_heartbeat") is not None
        for state in (WorkerStatus.BUSY, WorkerStatus.IDLE, WorkerStatus.IDLE):
            worker.set_state(state)
            assert executor.connection.hget(worker.key, "state") == state.encode()
    finally:
        worker.register_death()


def test_the_lease_is_renewed_while_the_program_runs(redis_url: str, tmp_path: Path) -> None:
    servicer = StandInReports(lease_s=2)
    server = start_server("127.0.0.1:0", servicer.register, ["lce.execution.v1.ExecutorReportService"])
    executor = Executor(redis_url, server.port, tmp_path / "runs")
    try:
        job = executor.enqueue("python", "import time\ntime.sleep(2.5)\n")
        executor.work()
    finally:
        executor.close()
        server.stop(0)
    # Every lease / 3 = 0.67 s over 2.5 s: three or four renewals, each for this attempt by this executor.
    assert 3 <= len(servicer.renewals) <= 4
    assert {(r.execution_id, r.executor_id, r.attempt) for r in servicer.renewals} == {(job.id, "contract-test", 1)}
    assert servicer.results[job.id].result.status == pb.EXECUTION_STATUS_COMPLETED


def test_a_result_is_kept_while_execution_service_restarts_and_delivered_after(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    first = StandInReports()
    server = start_server(f"127.0.0.1:{port}", first.register, ["lce.execution.v1.ExecutorReportService"])
    executor = Executor(redis_url, port, tmp_path / "runs", report_retry_s=30)
    restarted = StandInReports()
    restarted_server: list[RunningServer] = []

    def restart_after_the_start() -> None:
        first.wait_for(lambda: len(first.started) == 1)
        server.stop(0)  # down while the program runs and when its result is ready
        time.sleep(3)
        restarted_server.append(
            start_server(f"127.0.0.1:{port}", restarted.register, ["lce.execution.v1.ExecutorReportService"])
        )

    restarter = threading.Thread(target=restart_after_the_start)
    restarter.start()
    try:
        job = executor.enqueue("python", "import time\ntime.sleep(0.5)\nprint('kept')\n")
        executor.work()
        restarter.join()
        assert job.get_status(refresh=True) == JobStatus.FINISHED
        assert restarted.results[job.id].result.stdout == "kept\n"
    finally:
        executor.close()
        for running in restarted_server:
            running.stop(0)


def test_a_report_is_given_up_after_the_configured_time(redis_url: str, tmp_path: Path) -> None:
    executor = Executor(redis_url, free_port(), tmp_path / "runs", report_retry_s=1.5)
    try:
        job = executor.enqueue("python", "print(1)\n")
        started = time.monotonic()
        executor.work()
        # The job fails (its attempt is then retried by execution_service's reconciler); it never hangs.
        assert 1.0 <= time.monotonic() - started < 10
        assert job.get_status(refresh=True) == JobStatus.FAILED
    finally:
        executor.close()


class BrokenLauncher(UnconfinedLauncher):
    """A sandbox that cannot be set up."""

    def workspace(self):  # type: ignore[no-untyped-def]
        raise OSError("cannot create the cgroup")


def test_a_sandbox_set_up_error_is_reported_as_internal_error(
    executor: Executor, reports: tuple[StandInReports, RunningServer], tmp_path: Path
) -> None:
    jobs.install(
        jobs.Runtime(launcher=BrokenLauncher(tmp_path), reports=executor.reports, output_limit_bytes=OUTPUT_LIMIT)
    )
    result = run_one(executor, reports[0], "python", "print(1)\n")
    # internal_error is what execution_service retries (execution_service/attempts.py).
    assert (result.status, reason_text_of(result)) == (pb.EXECUTION_STATUS_FAILED, "internal_error")


# --- the process: python -m executor ---


def health_status(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service="lce.executor"), timeout=1).status


def wait_until_serving(port: int, process: subprocess.Popen[bytes], within_s: float = 20) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the executor exited during start-up"
        try:
            if health_status(port) == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    raise AssertionError("the executor never became healthy")


def test_executor_process_serves_and_shuts_down_warmly_on_sigterm(
    redis_url: str, reports: tuple[StandInReports, RunningServer], tmp_path: Path
) -> None:
    servicer, server = reports
    health_port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "LCE_REDIS_URL": redis_url,
        "LCE_QUEUE_NAME": QUEUE,
        "LCE_EXECUTION_SERVICE_ADDR": f"127.0.0.1:{server.port}",
        "LCE_EXECUTOR_HEALTH_LISTEN": f"127.0.0.1:{health_port}",
        "LCE_EXECUTOR_ID": "process-test",
        "LCE_WORK_ROOT": str(tmp_path / "runs"),
        "LCE_SANDBOX": "none",
        "LCE_SANDBOX_ALLOW_UNCONFINED": "1",
        "LCE_COMPILE_CACHE_DIR": str(tmp_path / "compile-cache"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "executor"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_until_serving(health_port, process)
        queue = Queue(queue_for(QUEUE, "python"), connection=redis.Redis.from_url(redis_url), serializer=SERIALIZER)
        job = ExecutionJob(str(uuid.uuid4()), "python", "import time\ntime.sleep(1)\nprint('done')\n", 5000, 256)
        queue.enqueue(JOB_FUNCTION, job.to_payload(), job_id=job.execution_id, job_timeout=job.job_timeout_s)
        servicer.wait_for(lambda: len(servicer.started) == 1)

        process.send_signal(signal.SIGTERM)  # mid-job: the job must still finish and report
        assert process.wait(20) == 0
        result = servicer.results[job.execution_id].result
        assert (result.status, result.stdout) == (pb.EXECUTION_STATUS_COMPLETED, "done\n")
        assert result.sandbox
        with pytest.raises(grpc.RpcError):
            health_status(health_port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr = process.stderr.read().decode() if process.stderr else ""
    assert "UNCONFINED EXECUTION" in stderr or result.sandbox != "none"
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    finished = [entry for entry in logged if entry["msg"] == "execution finished"]
    assert [entry.get("execution_id") for entry in finished] == [job.execution_id]
    # rq's own per-job lines repeat that one without the id: at INFO they are not written.
    assert not [entry for entry in logged if entry["logger"].startswith("rq") and entry["level"] == "info"]


# --- the compile cache (executor/compile_cache.py) ---


@pytest.fixture
def cached(executor: Executor, tmp_path: Path) -> CompileCache:
    """The executor of these tests, with a compile cache of its own."""
    cache = CompileCache(tmp_path / "compile-cache", 64 * 1024 * 1024)
    jobs.install(
        jobs.Runtime(
            launcher=UnconfinedLauncher(executor.config.work_root),
            reports=executor.reports,
            output_limit_bytes=OUTPUT_LIMIT,
            compile_cache=cache,
        )
    )
    return cache


def cache_entries(cache: CompileCache) -> list[str]:
    return [name for name in os.listdir(cache.root) if is_key(name)]


def stage_names(result: pb.RunResult) -> list[str]:
    return [stage.name for stage in result.stages]


@pytest.mark.parametrize("language", [language.name for language in LANGUAGES if language.compile])
def test_the_second_run_of_the_same_source_skips_the_compile(
    executor: Executor, reports: tuple[StandInReports, RunningServer], cached: CompileCache, language: str
) -> None:
    template = by_name(language)
    assert template is not None
    first = run_one(executor, reports[0], language, template.template_code)
    assert (first.status, first.stdout, stage_names(first)) == (
        pb.EXECUTION_STATUS_COMPLETED,
        "Hello World\n",
        ["compile", "run"],
    )
    assert len(cache_entries(cached)) == 1
    second = run_one(executor, reports[0], language, template.template_code)
    assert (second.status, second.stdout, stage_names(second)) == (
        pb.EXECUTION_STATUS_COMPLETED,
        "Hello World\n",
        ["run"],
    )
    assert second.execution_time_ms == second.stages[0].wall_time_ms


def test_a_different_source_is_never_served_another_ones_binary(
    executor: Executor, reports: tuple[StandInReports, RunningServer], cached: CompileCache
) -> None:
    tag = uuid.uuid4().hex
    sources = {f"A{tag}": c_printing(f"A{tag}"), f"B{tag}": c_printing(f"B{tag}")}  # one byte apart
    for round_ in range(2):
        for text, source in sources.items():
            result = run_one(executor, reports[0], "c", source)
            assert result.stdout == text + "\n"
            assert stage_names(result) == (["compile", "run"] if round_ == 0 else ["run"])
    assert len(cache_entries(cached)) == 2


def test_a_program_that_rewrites_its_binary_does_not_change_the_next_runs(
    executor: Executor, reports: tuple[StandInReports, RunningServer], cached: CompileCache
) -> None:
    tag = uuid.uuid4().hex
    source = SELF_REWRITING_C.replace("TAG", tag)
    expected = f"original {tag}\n"
    for attempt in range(3):
        result = run_one(executor, reports[0], "c", source)
        assert (result.status, result.stdout) == (pb.EXECUTION_STATUS_COMPLETED, expected), result.stderr
        assert stage_names(result) == (["compile", "run"] if attempt == 0 else ["run"])


def test_a_compile_error_is_not_cached(
    executor: Executor, reports: tuple[StandInReports, RunningServer], cached: CompileCache
) -> None:
    for _ in range(2):
        result = run_one(executor, reports[0], "c", "int main(void) { return missing; }\n")
        assert (reason_text_of(result), stage_names(result)) == ("compile_error", ["compile"])
    assert cache_entries(cached) == []


def leave_a_mark(path: str) -> None:
    Path(path).write_text("ran")


def test_a_job_left_in_the_single_queue_of_an_earlier_release_is_run(
    executor: Executor, reports: tuple[StandInReports, RunningServer]
) -> None:
    job = ExecutionJob(str(uuid.uuid4()), "ruby", 'puts "from before the pools"\n', 5000, 256)
    earlier = Queue(QUEUE, connection=executor.connection, serializer=SERIALIZER)
    earlier.enqueue(JOB_FUNCTION, job.to_payload(), job_id=job.job_id, job_timeout=job.job_timeout_s)
    executor.work()
    assert reports[0].results[job.job_id].result.stdout == "from before the pools\n"
    # Only an executor serving every language reads it: any job there may be of any language.
    assert queue_names(executor.config, ["java"]) == [f"{QUEUE}:java", f"{QUEUE}:java:batch"]


def test_every_interactive_queue_comes_before_any_batch_queue(executor: Executor) -> None:
    """RQ takes the first queue that has a job, in this order: an interactive run never waits behind a batch one."""
    names = queue_names(executor.config, ["java", "python"])
    assert names[:4] == [f"{QUEUE}:java", f"{QUEUE}:python", f"{QUEUE}:java:batch", f"{QUEUE}:python:batch"]


def test_taking_a_job_turns_its_lane_only(executor: Executor) -> None:
    """After each job the queue it came from goes last within its lane: languages take turns, lanes never do."""
    every = [language.name for language in LANGUAGES]
    groups = queue_groups(executor.config, every)
    queues = [Queue(name, connection=executor.connection) for name in queue_names(executor.config, every)]
    after_batch = [q.name for q in in_turn(queues, f"{QUEUE}:python:batch", groups)]
    after_interactive = [q.name for q in in_turn(queues, f"{QUEUE}:python", groups)]
    assert after_batch[:8] == [q.name for q in queues[:8]]  # the interactive lane untouched, first
    assert after_batch[8:16] == [*[q.name for q in queues[9:16]], f"{QUEUE}:python:batch"]
    assert after_interactive[:8] == [*[q.name for q in queues[1:8]], f"{QUEUE}:python"]
    assert after_batch[-1] == after_interactive[-1] == QUEUE  # the earlier releases' queue stays last
    # A pool of one language: its interactive queue stays first whichever it took last.
    java = [Queue(name, connection=executor.connection) for name in queue_names(executor.config, ["java"])]
    java_groups = queue_groups(executor.config, ["java"])
    for taken in (f"{QUEUE}:java", f"{QUEUE}:java:batch"):
        assert [q.name for q in in_turn(java, taken, java_groups)] == [f"{QUEUE}:java", f"{QUEUE}:java:batch"]


def test_a_job_naming_any_other_function_is_dropped_unrun(executor: Executor, tmp_path: Path) -> None:
    """rq would call whatever a job names, as root: write access to Redis must not be enough to run code."""
    mark = tmp_path / "mark"
    queue = Queue(queue_for(QUEUE, "python"), connection=executor.connection, serializer=SERIALIZER)
    job = queue.enqueue(f"{__name__}.leave_a_mark", str(mark), job_id="hostile")
    executor.work()
    assert not mark.exists()
    assert not Job.exists(job.id, connection=executor.connection)
