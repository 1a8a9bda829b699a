"""The job contract between execution_service (producer) and executor (consumer).

Jobs travel through RQ as JSON (never pickle: a job payload is data, not code), addressed
to the executor's function by its dotted path so the producer never imports the executor.
The job id is the execution id, which is what makes enqueueing idempotent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rq.serializers import JSONSerializer

JOB_FUNCTION = "executor.jobs.run_execution"
SERIALIZER = JSONSerializer


@dataclass(frozen=True)
class ExecutionJob:
    execution_id: str
    language: str  # a name from common.languages
    source_code: str
    time_limit_ms: int
    memory_limit_mb: int

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ExecutionJob:
        return cls(**{name: payload[name] for name in cls.__dataclass_fields__})

    @property
    def job_timeout_s(self) -> int:
        """How long RQ lets the job run: compile and run limits plus room for reporting."""
        return 120 + 2 * self.time_limit_ms // 1000
