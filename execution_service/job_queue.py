"""Enqueueing runs as RQ jobs, one per attempt (common.job.job_id), on their language's queue
(common.job.queue_for), and reading what became of them and how long each queue is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import redis
from rq import Queue
from rq.exceptions import DuplicateJobError
from rq.job import Job, JobStatus
from rq.utils import utcparse

from common.job import JOB_FUNCTION, SERIALIZER, ExecutionJob, Lane, queue_for
from common.languages import LANGUAGES

# A finished job only needs to outlive the executor's report; the database keeps the result.
RESULT_TTL_S = 3600
# A failed job is kept a day for inspection: it is how an operator sees what the machinery did.
FAILURE_TTL_S = 24 * 3600

# Job states in which the attempt can no longer report a start: its job is over without one.
ENDED: frozenset[JobStatus] = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED})


@dataclass(frozen=True)
class JobState:
    status: JobStatus
    # When a worker took the job (by that worker's clock); None until then.
    started_at: datetime | None


@dataclass(frozen=True)
class QueueDepth:
    name: str  # the RQ queue's name (its Redis list is rq:queue:<name>)
    language: str
    lane: Lane
    depth: int  # jobs waiting
    oldest_seconds: float  # how long the job at its head has waited; 0 when empty


class JobQueue:
    """Two RQ queues per language, one per lane: `<prefix>:<language>` and `<prefix>:<language>:batch`."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.queues = {
            (language.name, lane): Queue(
                queue_for(prefix, language.name, lane), connection=client, serializer=SERIALIZER
            )
            for lane in Lane
            for language in LANGUAGES
        }

    def enqueue(self, job: ExecutionJob) -> bool:
        """Queues the attempt on its language's queue of its lane; False when its job already exists (then
        nothing is queued twice, whichever queue holds it: RQ's job ids are global)."""
        try:
            self.queues[job.language, job.lane].enqueue_call(
                func=JOB_FUNCTION,
                kwargs={"payload": job.to_payload()},
                job_id=job.job_id,
                timeout=job.job_timeout_s,
                result_ttl=RESULT_TTL_S,
                failure_ttl=FAILURE_TTL_S,
                # Checked and written by one Lua script: a reconciler racing the creator cannot double it.
                unique=True,
            )
        except DuplicateJobError:
            return False
        return True

    def states(self, job_ids: Sequence[str]) -> list[JobState | None]:
        """Each job's RQ status and start (None when there is no such job), in one round trip.

        Reads two fields of RQ's job hash, as Job.get_status does, without loading each
        job's payload (up to a MiB of source code)."""
        pipeline = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipeline.hmget(Job.key_for(job_id), "status", "started_at")
        return [_job_state(status, started_at) for status, started_at in pipeline.execute()]

    def depths(self, now: datetime) -> list[QueueDepth]:
        """Every queue's length and the age of the job at its head, in two round trips."""
        pipeline = self.client.pipeline(transaction=False)
        for queue in self.queues.values():
            pipeline.llen(queue.key)
            pipeline.lindex(queue.key, 0)
        answers = pipeline.execute()
        lengths, heads = answers[0::2], answers[1::2]
        pipeline = self.client.pipeline(transaction=False)
        for head in heads:
            # The head of an empty queue: a job id that is no key, answered None like a job gone meanwhile.
            pipeline.hget(Job.key_for((head or b"-").decode()), "enqueued_at")
        enqueued = pipeline.execute()
        return [
            QueueDepth(queue.name, language, lane, length, _age_s(now, at) if length else 0.0)
            for ((language, lane), queue), length, at in zip(self.queues.items(), lengths, enqueued, strict=True)
        ]


def _age_s(now: datetime, enqueued_at: bytes | None) -> float:
    return 0.0 if enqueued_at is None else max(0.0, (now - utcparse(enqueued_at.decode())).total_seconds())


def _job_state(status: bytes | None, started_at: bytes | None) -> JobState | None:
    if not status:
        return None
    return JobState(JobStatus(status.decode()), utcparse(started_at.decode()) if started_at else None)
