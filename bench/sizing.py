"""The capacity model: measured load per run -> what a given number of runs a day needs.

Pure arithmetic, free of I/O, so that tests/unit/test_bench_sizing.py pins it down; bench/capacity.py
feeds it the figures it measured and docs/capacity.md explains it.

  executor cores = peak runs/s x executor CPU-s per run / target utilisation
  executors (processes, one run at a time each) = peak runs/s x seconds an executor spends per run / utilisation
  any other resource at peak = peak runs/s x its amount per run
  storage kept = runs/day x bytes stored per run x retention days
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class PerRun:
    """What one run costs, as measured (bench/capacity.py): medians, background subtracted."""

    executor_cpu_s: float  # the executor process and its sandboxes (compile and run)
    executor_busy_s: float  # wall time an executor is taken per run, at saturation (1 / its runs/s)
    control_cpu_s: float  # gateway + execution_service + session_service
    redis_cpu_s: float
    postgres_cpu_s: float  # the backends serving the database
    redis_commands: float
    redis_bytes: float  # into and out of Redis
    pg_transactions: float
    pg_rows_written: float  # inserted + updated + deleted
    wal_bytes: float
    stored_bytes: float  # growth of the database


@dataclass(frozen=True)
class Plan:
    runs_per_day: float
    peak_factor: float = 5.0  # the busiest hour against the day's average (a lecture hour)
    utilization: float = 0.6  # of an executor core at that peak: headroom for bursts and noisy neighbours
    retention_days: int = 30


@dataclass(frozen=True)
class Sizing:
    average_runs_per_s: float
    peak_runs_per_s: float
    executor_cores: int
    executors: int  # processes (pods in deploy/k8s), one run at a time each
    control_cores: int
    redis_cores: float  # at peak, unrounded: one Redis serves commands on one core
    postgres_cores: float  # at peak, unrounded
    redis_ops_per_s: float  # at peak
    redis_mb_per_s: float  # at peak
    pg_transactions_per_s: float  # at peak
    pg_rows_written_per_s: float  # at peak
    wal_gb_per_day: float
    stored_gb: float  # kept over the retention


def size(per_run: PerRun, plan: Plan) -> Sizing:
    if plan.runs_per_day <= 0 or plan.peak_factor < 1 or not 0 < plan.utilization <= 1:
        raise ValueError(f"not a plan: {plan}")
    average = plan.runs_per_day / SECONDS_PER_DAY
    peak = average * plan.peak_factor
    return Sizing(
        average_runs_per_s=average,
        peak_runs_per_s=peak,
        executor_cores=math.ceil(peak * per_run.executor_cpu_s / plan.utilization),
        executors=math.ceil(peak * per_run.executor_busy_s / plan.utilization),
        control_cores=math.ceil(peak * per_run.control_cpu_s / plan.utilization),
        redis_cores=peak * per_run.redis_cpu_s,
        postgres_cores=peak * per_run.postgres_cpu_s,
        redis_ops_per_s=peak * per_run.redis_commands,
        redis_mb_per_s=peak * per_run.redis_bytes / 1e6,
        pg_transactions_per_s=peak * per_run.pg_transactions,
        pg_rows_written_per_s=peak * per_run.pg_rows_written,
        wal_gb_per_day=plan.runs_per_day * per_run.wal_bytes / 1e9,
        stored_gb=plan.runs_per_day * per_run.stored_bytes * plan.retention_days / 1e9,
    )


def runs_per_core_s(cpu_s_per_run: float) -> float:
    """Runs per second one fully busy executor core completes: the inverse of its CPU-seconds per run."""
    if cpu_s_per_run <= 0:
        raise ValueError(f"CPU-seconds per run must be positive, not {cpu_s_per_run}")
    return 1 / cpu_s_per_run


def mix(shares: dict[str, float], per_run: dict[str, PerRun]) -> PerRun:
    """The weighted average of the workloads' costs (shares need not sum to 1; they are normalised)."""
    total = sum(shares.values())
    if total <= 0 or any(share < 0 for share in shares.values()):
        raise ValueError(f"shares must be non-negative and not all zero: {shares}")
    fields = PerRun.__dataclass_fields__
    weighted = {
        name: sum(getattr(per_run[load], name) * share for load, share in shares.items()) / total for name in fields
    }
    return PerRun(**weighted)
