"""The capacity model's arithmetic (bench/sizing.py) and how bench/capacity.py turns rounds into per-run figures."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench import capacity, sizing

COST = sizing.PerRun(
    executor_cpu_s=0.05,
    executor_busy_s=0.1,
    control_cpu_s=0.02,
    redis_cpu_s=0.001,
    postgres_cpu_s=0.002,
    redis_commands=80,
    redis_bytes=12_000,
    pg_transactions=8,
    pg_rows_written=6,
    wal_bytes=4_000,
    stored_bytes=3_000,
)


def test_a_million_runs_a_day_at_five_times_the_average() -> None:
    sized = sizing.size(COST, sizing.Plan(runs_per_day=864_000, peak_factor=5, utilization=0.5, retention_days=30))
    assert sized.average_runs_per_s == pytest.approx(10)
    assert sized.peak_runs_per_s == pytest.approx(50)
    assert sized.executor_cores == 5  # 50 runs/s x 0.05 CPU-s / 0.5
    assert sized.executors == 10  # 50 runs/s x 0.1 s busy / 0.5
    assert sized.control_cores == 2
    assert sized.redis_ops_per_s == pytest.approx(4_000)
    assert sized.redis_mb_per_s == pytest.approx(0.6)
    assert sized.redis_cores == pytest.approx(0.05)
    assert sized.postgres_cores == pytest.approx(0.1)
    assert sized.pg_transactions_per_s == pytest.approx(400)
    assert sized.pg_rows_written_per_s == pytest.approx(300)
    assert sized.wal_gb_per_day == pytest.approx(3.456)
    assert sized.stored_gb == pytest.approx(864_000 * 3_000 * 30 / 1e9)


def test_cores_round_up_never_down() -> None:
    sized = sizing.size(replace(COST, executor_cpu_s=0.051), sizing.Plan(runs_per_day=864_000, utilization=1.0))
    assert sized.executor_cores == 3  # 50 runs/s x 0.051 CPU-s = 2.55 cores


@pytest.mark.parametrize(
    "plan",
    [
        sizing.Plan(runs_per_day=0),
        sizing.Plan(runs_per_day=1, peak_factor=0.5),
        sizing.Plan(runs_per_day=1, utilization=0),
        sizing.Plan(runs_per_day=1, utilization=1.5),
    ],
)
def test_a_plan_that_means_nothing_is_refused(plan: sizing.Plan) -> None:
    with pytest.raises(ValueError):
        sizing.size(COST, plan)


def test_runs_per_core_is_the_inverse_of_cpu_per_run() -> None:
    assert sizing.runs_per_core_s(0.04) == pytest.approx(25)
    with pytest.raises(ValueError):
        sizing.runs_per_core_s(0)


def test_a_mix_weighs_each_workload_by_its_share() -> None:
    cheap = replace(COST, executor_cpu_s=0.02, redis_commands=70)
    dear = replace(COST, executor_cpu_s=0.5, redis_commands=90)
    mixed = sizing.mix({"cheap": 3, "dear": 1}, {"cheap": cheap, "dear": dear})
    assert mixed.executor_cpu_s == pytest.approx((3 * 0.02 + 0.5) / 4)
    assert mixed.redis_commands == pytest.approx(75)
    assert mixed.wal_bytes == COST.wal_bytes
    with pytest.raises(ValueError):
        sizing.mix({"cheap": 0}, {"cheap": cheap})


def _round(runs: int, wall_s: float, executor_cpu: float) -> dict[str, float]:
    return {
        "runs": runs,
        "wall_s": wall_s,
        "incorrect": 0,
        "cpu_executors": executor_cpu,
        "cpu_gateway": runs * 0.01,
        "cpu_execution_service": runs * 0.005,
        "cpu_session_service": runs * 0.001,
        "cpu_redis": runs * 0.001,
        "cpu_postgres": runs * 0.002,
        "redis_commands": runs * 80,
        "redis_bytes_in": runs * 9_000,
        "redis_bytes_out": runs * 3_000,
        "wal_bytes": runs * 4_000,
    }


def test_summarise_takes_the_median_round_and_the_whole_for_late_statistics() -> None:
    whole = {"pg_xact_commit": 150, "pg_xact_rollback": 10, "pg_tup_inserted": 60, "pg_tup_updated": 50}
    measured = {
        "programs": {
            "python": {
                "meaning": "hello world",
                "runs": 20,
                "bare_cpu_s": 0.01,
                # per-run executor CPU 0.03, 0.05, 0.04 over the three rounds
                "rounds": [_round(10, 1.0, 0.3), _round(10, 2.0, 0.5), _round(10, 0.5, 0.4)],
                "whole": {**whole, "pg_tup_deleted": 10, "pg_tup_fetched": 200},
            }
        },
        "database_bytes_per_run": 3_000.0,
    }
    figures = capacity.summarise(measured)["python"]
    assert figures["executor_cpu_s"] == pytest.approx(0.04)
    assert (figures["executor_cpu_s_low"], figures["executor_cpu_s_high"]) == pytest.approx((0.03, 0.05))
    assert figures["runs_per_core_s"] == pytest.approx(25)
    assert figures["observed_runs_per_s_per_executor"] == pytest.approx(5)  # median 10 runs/s over 2 executors
    assert figures["executor_busy_s"] == pytest.approx(0.2)
    assert figures["control_cpu_s"] == pytest.approx(0.016)
    assert figures["redis_bytes"] == pytest.approx(12_000)
    assert figures["pg_transactions"] == pytest.approx(8)  # (150 + 10) / 20 runs
    assert figures["pg_rows_written"] == pytest.approx(6)
    assert figures["pg_rows_fetched"] == pytest.approx(10)
    cost = capacity.per_run_cost(figures)
    assert cost.stored_bytes == 3_000
    assert cost.executor_busy_s == pytest.approx(0.2)


def test_the_sizing_table_has_a_row_per_volume_and_mix() -> None:
    table = capacity.render_sizing({"a": COST, "b": replace(COST, executor_cpu_s=0.5)}, (1e6, 1e8)).splitlines()
    assert len(table) == 2 + 4
    assert table[0].count("|") == table[1].count("|") == table[2].count("|")
    assert table[2].startswith("| 1,000,000 | a | 11.6 | 58 |")
    assert table[5].startswith("| 100,000,000 | b | 1,157.4 | 5,787 | 4,823 |")  # 5,787 x 0.5 / 0.6, up
