"""The executor process: one RQ SimpleWorker on the queues of the languages it serves (one queue per
language, common.job.queue_for; taken in turn), beside a gRPC health server and its heartbeat
(executor/heartbeat.py).

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
from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.worker import DequeueStrategy, WorkerStatus

from common import metrics as common_metrics
from common.grpc_server import start_server
from common.job import JOB_FUNCTION, SERIALIZER, Lane, queue_for
from common.languages import LANGUAGES
from common.run_events import RunEvents
from common.run_input import RunInput
from executor import jobs
from executor import metrics as executor_metrics
from executor.compile_cache import CompileCache
from executor.heartbeat import Heartbeat
from executor.launcher import Launcher
from executor.packages import installed_sets
from executor.report_client import ReportClient
from executor.settings import ExecutorConfig

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
    access to Redis alone never runs code here. Its heartbeat counts the job as a busy slot."""

    # Named apart from rq's own Worker.heartbeat (its registration's TTL).
    announcer: Heartbeat | None = None
    # Each queue's group, in the order they are taken (queue_groups): its lane, or the earlier releases' queue.
    groups: dict[str, int] = {}

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
        jobs.send_start(job.args, job.kwargs)
        if self.announcer is None:
            super().execute_job(job, queue)
            return
        with self.announcer.busy():
            super().execute_job(job, queue)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """rq's renewal of the worker's registration, in one round trip: rq sends its three commands one
        by one around every dequeue, and the one after it delays the job's pickup."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        with self.connection.pipeline(transaction=False) as batched:
            super().heartbeat(timeout, batched)
            batched.execute()

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        """rq writes IDLE twice between two jobs (after one, then before waiting for the next): once will do."""
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def reorder_queues(self, reference_queue: Queue) -> None:
        """Round robin within a lane: the queue a job came from goes to the end of its lane, so a busy
        language never starves the others, while every interactive queue stays before every batch
        queue (rq's own round robin would move a batch queue ahead of the interactive ones)."""
        self._ordered_queues = in_turn(self._ordered_queues, reference_queue.name, self.groups)


def in_turn(queues: list[Queue], taken: str, groups: dict[str, int]) -> list[Queue]:
    """The queues after a job was taken from `taken`: that queue last within its group, the groups
    in their order (interactive, batch, then the single queue of earlier releases)."""
    moved = [q for q in queues if q.name != taken] + [q for q in queues if q.name == taken]
    return sorted(moved, key=lambda queue: groups[queue.name])  # stable: each group keeps its order


def queue_groups(config: ExecutorConfig, languages: list[str]) -> dict[str, int]:
    """Each of queue_names' queues -> its group: 0 interactive, 1 batch, 2 the earlier releases' queue."""
    groups = {queue_for(config.queue_name, name, lane): rank for rank, lane in enumerate(Lane) for name in languages}
    return {name: groups.get(name, len(Lane)) for name in queue_names(config, languages)}


def queue_names(config: ExecutorConfig, languages: list[str]) -> list[str]:
    """The queues of these languages, in the order RQ takes them: every interactive queue before any
    batch queue (README "Priority lanes"). An executor serving every language also takes, last, what
    waits in the one queue of releases before the pools (LCE_QUEUE_NAME itself): any job there is for
    it, and the upgrade strands none whichever service is upgraded first."""
    names = [queue_for(config.queue_name, name, lane) for lane in Lane for name in languages]
    every_language = set(languages) >= {language.name for language in LANGUAGES}
    return [*names, config.queue_name] if every_language else names


def build_worker(
    config: ExecutorConfig, connection: redis.Redis, languages: list[str], heartbeat: Heartbeat | None = None
) -> ExecutionWorker:
    queues = [Queue(name, connection=connection, serializer=SERIALIZER) for name in queue_names(config, languages)]
    # rq keeps a dead worker's registration for minutes and refuses a second worker of the same
    # name: a restarted executor (same LCE_EXECUTOR_ID, or a container reusing its pid) would not
    # start. The id stays in logs and results; the rq name only has to be unique.
    name = f"{config.executor_id}-{uuid.uuid4().hex[:8]}"
    worker = ExecutionWorker(queues, name=name, connection=connection, serializer=SERIALIZER)
    worker.announcer = heartbeat
    worker.groups = queue_groups(config, languages)
    return worker


def serve(config: ExecutorConfig, launcher: Launcher, languages: dict[str, str]) -> None:
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
    names = sorted(languages)
    heartbeat = Heartbeat.build(
        connection,
        executor_id=config.executor_id,
        pool=config.pool,
        languages=languages,
        queues=queue_names(config, names),
        sandbox_mode=launcher.mode,
        interval_s=config.heartbeat_s,
        packages={name: dict(found.packages) for name, found in installed_sets(config.packages_dir).items()},
    )
    worker = build_worker(config, connection, names, heartbeat)
    heartbeat.start()
    log.info(
        "executor ready",
        extra={
            "pool": config.pool,
            "languages": languages,
            "queues": heartbeat.info.queues,
            "sandbox": launcher.mode,
            "health_port": health.port,
        },
    )
    try:
        # In turn within each lane (ExecutionWorker.reorder_queues): a busy language's queue never
        # starves the others this executor serves, and interactive runs always come first.
        worker.work(logging_level=None, dequeue_strategy=DequeueStrategy.ROUND_ROBIN)
    finally:
        heartbeat.stop()
        health.stop(SHUTDOWN_GRACE_S)
        launcher.close()
        reports.close()
        log.info("executor stopped")
