"""The executor process: one RQ SimpleWorker on the executions queue, beside a gRPC health server.

SimpleWorker runs each job in this process instead of forking a work horse per job: the
launcher already isolates user code, and the fork cost about 12 ms per job against 4 ms.
It also keeps the one report channel alive across jobs.

Shutdown: rq's own handlers turn the first SIGTERM/SIGINT into a warm shutdown (the current
job finishes and its result is delivered, then the loop ends) and a second one, a second or
more later, into a cold one (SystemExit in the job): that run's lease is no longer renewed,
so execution_service hands it to another executor once the lease expires.
"""

from __future__ import annotations

import logging
import uuid

import redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.worker import WorkerStatus

from common import metrics as common_metrics
from common.config import ExecutorConfig
from common.grpc_server import start_server
from common.job import JOB_FUNCTION, SERIALIZER
from common.run_events import RunEvents
from common.run_input import RunInput
from executor import jobs
from executor import metrics as executor_metrics
from executor.compile_cache import CompileCache
from executor.launcher import Launcher
from executor.report_client import ReportClient

log = logging.getLogger(__name__)

HEALTH_SERVICE_NAME = "lce.executor"
SHUTDOWN_GRACE_S = 5.0


def sandbox_health_name(mode: str) -> str:
    """A health service name that tells probes which confinement this executor uses.

    gRPC health carries no free text, so the mode is named by the service itself:
    `python -m common.healthcheck HOST:PORT lce.executor.sandbox.bwrap-userns` answers SERVING.
    """
    return f"{HEALTH_SERVICE_NAME}.sandbox.{mode}"


class ExecutionWorker(SimpleWorker):
    """rq's SimpleWorker that runs LCE's job function only. rq calls whatever function a job names, as
    the executor (root, outside any sandbox): a job naming anything else is dropped unrun, so write
    access to Redis alone never runs code here."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            function = job.func_name
        except Exception:  # a payload that does not even decode
            function = None
        if function != JOB_FUNCTION:
            log.error("job refused: it names a function other than LCE's", extra={"job_id": job.id})
            job.delete()
            self.set_state(WorkerStatus.IDLE)
            return
        super().execute_job(job, queue)


def build_worker(config: ExecutorConfig, connection: redis.Redis) -> SimpleWorker:
    queue = Queue(config.queue_name, connection=connection, serializer=SERIALIZER)
    # rq keeps a dead worker's registration for minutes and refuses a second worker of the same
    # name: a restarted executor (same LCE_EXECUTOR_ID, or a container reusing its pid) would not
    # start. The id stays in logs and results; the rq name only has to be unique.
    name = f"{config.executor_id}-{uuid.uuid4().hex[:8]}"
    return ExecutionWorker([queue], name=name, connection=connection, serializer=SERIALIZER)


def serve(config: ExecutorConfig, launcher: Launcher) -> None:
    """Takes jobs until told to stop; health says SERVING meanwhile and NOT_SERVING once draining is over."""
    connection = redis.Redis.from_url(config.redis_url)
    connection.ping()  # fail at start, not on the first job, when Redis is unreachable
    reports = ReportClient(
        config.execution_service_addr,
        config.executor_id,
        report_retry_s=config.report_retry_s,
        security=config.grpc_security,
    )
    events = RunEvents.from_url(config.redis_url)
    jobs.install(
        jobs.Runtime(
            launcher=launcher,
            reports=reports,
            output_limit_bytes=config.output_limit_bytes,
            compile_cache=CompileCache.from_config(config),
            events=events,
            inputs=RunInput(events.client),
        )
    )
    executor_metrics.SANDBOX.labels(launcher.mode).set(1)
    common_metrics.serve(config.metrics_listen_addr)  # before health says SERVING: then it is all up
    health = start_server(
        config.health_listen_addr,
        lambda server: None,
        [HEALTH_SERVICE_NAME, sandbox_health_name(launcher.mode)],
        security=config.grpc_security,
    )
    log.info(
        "executor ready",
        extra={"queue": config.queue_name, "sandbox": launcher.mode, "health_port": health.port},
    )
    try:
        build_worker(config, connection).work(logging_level=None)
    finally:
        health.stop(SHUTDOWN_GRACE_S)
        launcher.close()
        reports.close()
        log.info("executor stopped")
