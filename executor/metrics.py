"""What an executor counts (served by common.metrics at LCE_METRICS_LISTEN): its sandbox mode,
its verdicts and how long their stages took, and the deliveries it was told not to run."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from executor.verdicts import Verdict

# From a C binary's few ms to a long compile or a run at its time limit.
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

SANDBOX = Gauge("lce_executor_sandbox_info", "The confinement this executor runs code in (1 for its mode)", ["mode"])
RUNS = Counter(
    "lce_executor_runs",
    "Executions this executor ran to a verdict, by language, status and reason",
    ["language", "status", "reason"],
)
# A job whose run was over, or whose attempt was no longer the current one, when the executor took it:
# a retry's old delivery, or a job of a run that another executor finished.
SKIPPED = Counter("lce_executor_jobs_skipped", "Jobs taken but not run: their run was over or their attempt stale")
STAGE_SECONDS = Histogram(
    "lce_executor_stage_seconds",
    "Wall time of a compile or run stage, by language",
    ["language", "stage"],
    buckets=_STAGE_BUCKETS,
)


def record(language: str, verdict: Verdict) -> None:
    RUNS.labels(language, verdict.status.value, verdict.reason).inc()
    for stage in verdict.stages:
        STAGE_SECONDS.labels(language, stage.name).observe(stage.wall_time_ms / 1000)
