"""Enqueueing runs as RQ jobs whose id is the execution id."""

from __future__ import annotations

import redis
from rq import Queue
from rq.exceptions import DuplicateJobError
from rq.job import Job

from common.job import JOB_FUNCTION, SERIALIZER, ExecutionJob

# A finished job only needs to outlive the executor's report; the database keeps the result.
RESULT_TTL_S = 3600
# A failed job is kept a day for inspection: it is how an operator sees what the machinery did.
FAILURE_TTL_S = 24 * 3600


class JobQueue:
    def __init__(self, client: redis.Redis, queue_name: str) -> None:
        self.client = client
        self.queue = Queue(queue_name, connection=client, serializer=SERIALIZER)

    def enqueue(self, job: ExecutionJob) -> bool:
        """Queues the run; False when a job of that id already exists (then nothing is queued twice)."""
        try:
            self.queue.enqueue_call(
                func=JOB_FUNCTION,
                kwargs={"payload": job.to_payload()},
                job_id=job.execution_id,
                timeout=job.job_timeout_s,
                result_ttl=RESULT_TTL_S,
                failure_ttl=FAILURE_TTL_S,
                # Checked and written by one Lua script: a reconciler racing the creator cannot double it.
                unique=True,
            )
        except DuplicateJobError:
            return False
        return True

    def exists(self, execution_id: str) -> bool:
        return Job.exists(execution_id, connection=self.client)
