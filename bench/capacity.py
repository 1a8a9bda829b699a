"""`python -m bench.capacity` (part of `make bench`): what one run costs, for the capacity model (docs/capacity.md).

On the bench's own stack (two executors, own PostgreSQL database, private redis-server) it submits, per
round, a burst of runs of one program at once, each client as a real one: POST .../run, then
GET /executions/{id}?wait=30 until the status is terminal. Around each burst it reads:

- CPU-seconds of every process of the stack from /proc (a process, its live descendants and the
  reaped ones it waited for: an executor's figure holds its sandboxes' compiles and runs), and of
  the PostgreSQL backends serving the bench database;
- Redis: commands (INFO commandstats, the bench's own INFO left out) and bytes in and out;
- PostgreSQL: WAL bytes of the bench database's records and of its transactions' commits (read
  with pg_walinspect between two flushed WAL positions, kept by a temporary replication slot: the
  server's other databases write WAL too),
  and per program over all its rounds, once PostgreSQL has flushed its statistics, transactions and
  rows (pg_stat_database; pg_stat_statements is not loaded on the server here);
- the database's growth over all the runs (bytes stored per run).

The stack's idle load (heartbeats, queue polls) is measured first and subtracted. Programs: every
language's hello world (compiled ones twice: with a source the compile cache has seen, and with a
source never seen, so that every run compiles), and a CPU-bound loop of about 100 ms in C and in
Python. Each figure is the median over LCE_BENCH_ROUNDS rounds (default 3); the bare CPU-seconds of
the same programs run directly are measured in the same invocation.

LCE_BENCH_CAPACITY_PROGRAMS (comma-separated names, e.g. "python,c_compiled") measures only those.
Writes bench/results/<UTC time>-<label>-capacity.json and prints the tables of docs/capacity.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from bench import bare, cpu, machine, runs, sizing
from bench.stack import ADMIN_URL, EXECUTORS, Target, own_stack
from common.config import env_int, env_str
from common.languages import LANGUAGES, Language, by_name

log = logging.getLogger("bench")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
IDLE_S = 20.0
# A PostgreSQL backend flushes its statistics at most once a second, and an idle one within 10 s.
PG_STATS_SETTLE_S = 11.0
SESSION_RUNS = 10  # runs per session of a program whose source stays the same
BARE_REPEATS = 3
HELLO = runs.HELLO
PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "tup_fetched")
GROUPS = ("executors", "gateway", "execution_service", "session_service", "redis")
# Fewer runs of the programs that take the better part of a CPU-second each (make bench's time budget).
SLOW_COMPILES = {"cpp", "go", "java"}
SLOW_RUNS = {"java"}

# About 100 ms of one core on this machine. The greeting depends on the loop's result, so that no
# compiler drops the loop; it is always printed (x never ends at 42), so every run's output is checked.
C_CPU = (
    "#include <stdio.h>\n\nint main(void) {\n    unsigned long x = 1;\n"
    "    for (long i = 0; i < 90000000L; i++) x = x * 6364136223846793005UL + 1442695040888963407UL;\n"
    '    printf(x != 42 ? "Hello World\\n" : "unlucky\\n");\n    return 0;\n}\n'
)
PYTHON_CPU = (
    "x = 0\nfor i in range(1_000_000):\n    x = (x * 31 + i) % 1_000_003\n"
    'print("Hello World" if x != -1 else "unlucky")\n'
)


@dataclass(frozen=True)
class Program:
    name: str
    language: Language
    source: Callable[[], str]  # called per run: constant, or never seen before
    runs: int  # per round
    meaning: str


def programs() -> list[Program]:
    found: list[Program] = []
    for language in LANGUAGES:
        hello = language.template_code
        if not language.compile:
            found.append(Program(language.name, language, lambda s=hello: s, 30, "hello world"))
            continue
        cached_runs = 10 if language.name in SLOW_RUNS else 30
        found.append(
            Program(f"{language.name}_cached", language, lambda s=hello: s, cached_runs, "hello world, compile cached")
        )
        found.append(
            Program(
                f"{language.name}_compiled",
                language,
                lambda s=hello, n=language.name: runs.unseen(n, s),
                8 if language.name in SLOW_COMPILES else 20,
                "hello world, every run compiles",
            )
        )
    c, python = by_name("c"), by_name("python")
    assert c is not None and python is not None
    found.append(Program("c_cpu", c, lambda: C_CPU, 20, "~100 ms CPU loop, compile cached"))
    found.append(Program("python_cpu", python, lambda: PYTHON_CPU, 20, "~100 ms CPU loop"))
    return found


# --- what the stack has used so far ---------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    at: float
    cpu_s: dict[str, float]  # per group of GROUPS but postgres
    backend_cpu_s: dict[int, float]  # per PostgreSQL backend of the bench database
    redis_calls: dict[str, int]  # per command
    redis: dict[str, float]  # commands, bytes_in, bytes_out
    wal_lsn: str  # the flushed WAL position
    meter_xacts: int  # the Meter's own transactions on the bench database so far
    pg: dict[str, int]  # PG_COUNTERS of the bench database
    database_bytes: int

    def minus(self, earlier: Snapshot) -> dict[str, float]:
        delta = {"seconds": self.at - earlier.at}
        delta["database_bytes"] = float(self.database_bytes - earlier.database_bytes)
        for group, used in self.cpu_s.items():
            delta[f"cpu_{group}"] = used - earlier.cpu_s.get(group, 0.0)
        delta["cpu_postgres"] = cpu.backends_delta(earlier.backend_cpu_s, self.backend_cpu_s)
        for key, value in self.redis.items():
            delta[f"redis_{key}"] = value - earlier.redis[key]
        for key, value in self.pg.items():
            delta[f"pg_{key}"] = float(value - earlier.pg[key])
        delta["pg_xact_commit"] -= self.meter_xacts - earlier.meter_xacts
        return delta


class Meter:
    """Reads the stack's counters: /proc, Redis INFO, and PostgreSQL from the admin database (reading
    from the bench database would count the reads in its statistics); WAL is read from the bench
    database (pg_walinspect lives there, not in the shared admin database), its reads counted and taken off."""

    def __init__(self, system: Target) -> None:
        assert system.redis_url and system.database_url
        self.pids = system.pids
        self.database = system.database_url.rsplit("/", 1)[1]
        self.redis = redis.Redis.from_url(system.redis_url)
        self.admin = psycopg.connect(ADMIN_URL, autocommit=True)  # a transaction per query: fresh statistics
        bench_url = system.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.bench = psycopg.connect(bench_url, autocommit=True)
        self.bench.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        oid = self.admin.execute("SELECT oid FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
        assert oid is not None
        self.block_pattern = f"% rel %/{oid[0]}/%"
        # Keeps the WAL between two snapshots until it is read: a checkpoint would recycle it otherwise.
        # Temporary: it goes with this connection, and it moves on after every read.
        self.slot = self.database
        self.admin.execute("SELECT pg_create_physical_replication_slot(%s, true, true)", (self.slot,))
        self.xacts = 0

    def close(self) -> None:
        self.redis.close()
        self.admin.close()
        self.bench.close()

    def wal_bytes(self, earlier: Snapshot, later: Snapshot) -> float:
        """WAL written for the bench database between two snapshots: records touching its relations,
        and the other records (commits) of the transactions that wrote those."""
        self.xacts += 1
        row = self.bench.execute(
            "WITH r AS (SELECT xid::text AS xid, record_length, block_ref"
            " FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn)),"
            " ours AS (SELECT DISTINCT xid FROM r WHERE block_ref LIKE %s AND xid <> '0')"
            " SELECT coalesce(sum(record_length), 0) FROM r"
            " WHERE block_ref LIKE %s OR xid IN (SELECT xid FROM ours)",
            (earlier.wal_lsn, later.wal_lsn, self.block_pattern, self.block_pattern),
        ).fetchone()
        assert row is not None
        self.admin.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.slot, later.wal_lsn))
        return float(row[0])

    def delta(self, earlier: Snapshot, later: Snapshot) -> dict[str, float]:
        return {**later.minus(earlier), "wal_bytes": self.wal_bytes(earlier, later)}

    def snapshot(self) -> Snapshot:
        cpu_s = {group: 0.0 for group in GROUPS}
        for name, used in cpu.by_process(self.pids).items():
            group = "executors" if name.startswith("executor") else name
            cpu_s[group] = cpu_s.get(group, 0.0) + used.total_s
        commands = self.redis.info("commandstats")
        stats = self.redis.info("stats")
        row = self.admin.execute(
            f"SELECT pg_current_wal_flush_lsn()::text, pg_database_size(datname), {', '.join(PG_COUNTERS)}"
            " FROM pg_stat_database WHERE datname = %s",
            (self.database,),
        ).fetchone()
        assert row is not None
        return Snapshot(
            at=time.monotonic(),
            cpu_s=cpu_s,
            backend_cpu_s=cpu.postgres_backends(self.admin, self.database),
            redis_calls={
                k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in commands.items() if k != "cmdstat_info"
            },
            redis={
                "commands": float(sum(v["calls"] for k, v in commands.items() if k != "cmdstat_info")),
                "bytes_in": float(stats["total_net_input_bytes"]),
                "bytes_out": float(stats["total_net_output_bytes"]),
            },
            wal_lsn=str(row[0]),
            meter_xacts=self.xacts,
            database_bytes=int(row[1]),
            pg=dict(zip(PG_COUNTERS, (int(v) for v in row[2:]), strict=True)),
        )


# --- bursts -----------------------------------------------------------------------------------


def _limits(count: int) -> httpx.Limits:
    return httpx.Limits(max_connections=count, max_keepalive_connections=count)


async def prepare(base_url: str, program: Program, language_id: str, rounds: int) -> list[list[str]]:
    """Each round's sessions, one per run: created before anything is measured."""
    async with httpx.AsyncClient(base_url=base_url, limits=_limits(program.runs), timeout=120) as client:
        return [
            await _sessions(client, language_id, [program.source() for _ in range(program.runs)]) for _ in range(rounds)
        ]


async def burst(base_url: str, session_ids: list[str]) -> tuple[float, int]:
    """(seconds from the first POST to the last terminal status, incorrect results) of one round."""
    async with httpx.AsyncClient(base_url=base_url, limits=_limits(len(session_ids)), timeout=120) as client:
        started = time.perf_counter()
        correct = await asyncio.gather(*(_one_run(client, session_id) for session_id in session_ids))
        return time.perf_counter() - started, correct.count(False)


async def _sessions(client: httpx.AsyncClient, language_id: str, sources: list[str]) -> list[str]:
    """A session per run whose source is its own, else one per SESSION_RUNS runs: created before the clock starts."""
    distinct = len(set(sources)) > 1

    async def create(source: str) -> str:
        answer = await client.post("/code-sessions", json={"language_id": language_id, "source_code": source})
        session_id: str = runs.expect(answer, 201)["session_id"]
        return session_id

    if distinct:
        return list(await asyncio.gather(*(create(source) for source in sources)))
    shared = await asyncio.gather(*(create(sources[0]) for _ in range(-(-len(sources) // SESSION_RUNS))))
    return [shared[index // SESSION_RUNS] for index in range(len(sources))]


async def _one_run(client: httpx.AsyncClient, session_id: str) -> bool:
    """One client: the run, then waits of up to 30 s on the execution until it is terminal; whether it greeted."""
    accepted = runs.expect(await client.post(f"/code-sessions/{session_id}/run", json={"time_limit_ms": 10_000}), 202)
    while True:
        answer = await runs.get(client, f"/executions/{accepted['execution_id']}", params={"wait": 30})
        body = runs.expect(answer, 200)
        if body["status"] in runs.TERMINAL:
            return body["status"] == "COMPLETED" and body["stdout"] == HELLO


# --- the measure ------------------------------------------------------------------------------


def bare_cpu_s(program: Program) -> float:
    """Median CPU-seconds of the program run directly: compiled each time for "_compiled", once before otherwise."""
    prog = bare.Program(program.language, program.source())
    spent = bare.bare_cpu_s(prog, BARE_REPEATS + 1, compile_each_run=program.name.endswith("_compiled"))
    return statistics.median(spent[1:])  # the first warms the page cache


Delta = dict[str, float]


def measure(system: Target, rounds: int) -> dict[str, Any]:
    meter = Meter(system)
    try:
        with httpx.Client(base_url=system.url, timeout=60) as client:
            ids = runs.language_ids(client)
        chosen = {name for name in env_str("LCE_BENCH_CAPACITY_PROGRAMS", "").split(",") if name}
        every = [program for program in programs() if not chosen or program.name in chosen]
        log.info("sessions for %d programs x %d rounds, and a warm-up round of each", len(every), rounds)
        sessions = {p.name: asyncio.run(prepare(system.url, p, ids[p.language.name], rounds + 1)) for p in every}
        for program in every:  # cold caches, lazy connections, and the compile cache filled for "_cached"
            asyncio.run(burst(system.url, sessions[program.name].pop()[:4]))
        time.sleep(PG_STATS_SETTLE_S)
        idle_start = meter.snapshot()
        time.sleep(IDLE_S)
        idle = _rates(meter.delta(idle_start, meter.snapshot()))
        first = meter.snapshot()
        measured = {}
        for program in every:
            measured[program.name] = _program(system, meter, program, sessions[program.name], idle)
        last = meter.snapshot()
    finally:
        meter.close()
    total_runs = sum(entry["runs"] for entry in measured.values())
    calls = {name: (n - first.redis_calls.get(name, 0)) / total_runs for name, n in last.redis_calls.items()}
    return {
        "redis_calls_per_run": dict(sorted(calls.items(), key=lambda item: -item[1])),
        "idle_per_s": idle,
        "programs": measured,
        "database_bytes_per_run": (last.database_bytes - first.database_bytes) / total_runs,
        "runs": total_runs,
    }


def _program(system: Target, meter: Meter, program: Program, sessions: list[list[str]], idle: Delta) -> dict[str, Any]:
    start = meter.snapshot()
    per_round = []
    for session_ids in sessions:
        before = meter.snapshot()
        wall_s, incorrect = asyncio.run(burst(system.url, session_ids))
        per_round.append(
            {
                "runs": len(session_ids),
                "wall_s": wall_s,
                "incorrect": incorrect,
                **_net(meter.delta(before, meter.snapshot()), idle),
            }
        )
    time.sleep(PG_STATS_SETTLE_S)
    whole = _net(meter.snapshot().minus(start), idle)
    runs_done = sum(r["runs"] for r in per_round)
    log.info(
        "  %-16s %.3f executor CPU-s/run, %.1f runs/s, incorrect %d",
        program.name,
        statistics.median(r["cpu_executors"] / r["runs"] for r in per_round),
        statistics.median(r["runs"] / r["wall_s"] for r in per_round),
        sum(r["incorrect"] for r in per_round),
    )
    return {
        "meaning": program.meaning,
        "runs": runs_done,
        "rounds": per_round,
        "whole": whole,
        "bare_cpu_s": bare_cpu_s(program),
    }


def _rates(delta: Delta) -> Delta:
    return {key: value / delta["seconds"] for key, value in delta.items() if key != "seconds"}


def _net(delta: Delta, idle: Delta) -> Delta:
    """The delta less what the idle stack does in the same time."""
    return {
        key: value - idle.get(key, 0.0) * delta["seconds"] if key != "seconds" else value
        for key, value in delta.items()
    }


# --- figures ----------------------------------------------------------------------------------

CONTROL = ("gateway", "execution_service", "session_service")
IDE_MIX = ("python", "javascript", "php", "ruby", "c_compiled", "cpp_compiled", "go_compiled", "java_compiled")


def summarise(measured: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per program, per run: medians over rounds of the per-round figures; the statistics PostgreSQL
    flushes late over all the program's rounds at once; bytes stored over the whole measure."""
    figures = {}
    for name, entry in measured["programs"].items():
        rounds = entry["rounds"]

        def per_run(*keys: str, of: list[dict[str, float]] = rounds) -> float:
            return statistics.median(sum(r[k] for k in keys) / r["runs"] for r in of)

        whole = entry["whole"]
        executor_cpu_s = per_run("cpu_executors")
        figures[name] = {
            "executor_cpu_s": executor_cpu_s,
            "executor_cpu_s_low": min(r["cpu_executors"] / r["runs"] for r in rounds),
            "executor_cpu_s_high": max(r["cpu_executors"] / r["runs"] for r in rounds),
            "bare_cpu_s": entry["bare_cpu_s"],
            "runs_per_core_s": sizing.runs_per_core_s(executor_cpu_s) if executor_cpu_s > 0 else float("nan"),
            "observed_runs_per_s_per_executor": statistics.median(r["runs"] / r["wall_s"] for r in rounds) / EXECUTORS,
            "executor_busy_s": statistics.median(r["wall_s"] * EXECUTORS / r["runs"] for r in rounds),
            "control_cpu_s": per_run(*(f"cpu_{group}" for group in CONTROL)),
            "redis_cpu_s": per_run("cpu_redis"),
            "postgres_cpu_s": per_run("cpu_postgres"),
            "redis_commands": per_run("redis_commands"),
            "redis_bytes": per_run("redis_bytes_in", "redis_bytes_out"),
            # The mean: full-page images after a checkpoint come in bursts, and they are part of the cost.
            "wal_bytes": statistics.mean(r["wal_bytes"] / r["runs"] for r in rounds),
            "pg_transactions": (whole["pg_xact_commit"] + whole["pg_xact_rollback"]) / entry["runs"],
            "pg_rows_written": (whole["pg_tup_inserted"] + whole["pg_tup_updated"] + whole["pg_tup_deleted"])
            / entry["runs"],
            "pg_rows_fetched": whole["pg_tup_fetched"] / entry["runs"],
            "stored_bytes": measured["database_bytes_per_run"],
            "incorrect": float(sum(r["incorrect"] for r in rounds)),
        }
    return figures


def per_run_cost(figures: dict[str, float]) -> sizing.PerRun:
    return sizing.PerRun(**{name: figures[name] for name in sizing.PerRun.__dataclass_fields__})


# (header, figure, format) of the measured table's columns after the program and its executor CPU range
MEASURED_COLUMNS = (
    ("bare CPU-s", "bare_cpu_s", "{:.3f}"),
    ("runs/s per core", "runs_per_core_s", "{:.1f}"),
    ("observed runs/s per executor", "observed_runs_per_s_per_executor", "{:.1f}"),
    ("control plane CPU-s/run", "control_cpu_s", "{:.3f}"),
    ("Redis cmds/run", "redis_commands", "{:.0f}"),
    ("Redis bytes/run", "redis_bytes", "{:.0f}"),
    ("PG xacts/run", "pg_transactions", "{:.1f}"),
    ("PG rows written/run", "pg_rows_written", "{:.1f}"),
    ("WAL bytes/run", "wal_bytes", "{:.0f}"),
)
# (header, attribute of sizing.Sizing, format) of the sizing table's columns after runs/day and mix
SIZING_COLUMNS = (
    ("avg runs/s", "average_runs_per_s", "{:,.1f}"),
    ("peak runs/s", "peak_runs_per_s", "{:,.0f}"),
    ("executor cores", "executor_cores", "{:,}"),
    ("executors", "executors", "{:,}"),
    ("control plane cores", "control_cores", "{:,}"),
    ("Redis ops/s", "redis_ops_per_s", "{:,.0f}"),
    ("Redis cores", "redis_cores", "{:,.2f}"),
    ("PG xacts/s", "pg_transactions_per_s", "{:,.0f}"),
    ("PG rows written/s", "pg_rows_written_per_s", "{:,.0f}"),
    ("PG cores", "postgres_cores", "{:,.1f}"),
    ("WAL GB/day", "wal_gb_per_day", "{:,.1f}"),
    ("stored GB", "stored_gb", "{:,.0f}"),
)


def render_measured(figures: dict[str, dict[str, float]]) -> str:
    header = ["program", "executor CPU-s/run [range]", *(column[0] for column in MEASURED_COLUMNS)]
    rows = [
        [
            name,
            f"{f['executor_cpu_s']:.3f} [{f['executor_cpu_s_low']:.3f}-{f['executor_cpu_s_high']:.3f}]",
            *(form.format(f[key]) for _, key, form in MEASURED_COLUMNS),
        ]
        for name, f in figures.items()
    ]
    return _markdown(header, rows)


def render_sizing(mixes: dict[str, sizing.PerRun], days: Iterable[float]) -> str:
    header = ["runs/day", "mix", *(column[0] for column in SIZING_COLUMNS)]
    rows = []
    for runs_per_day in days:
        for mix_name, cost in mixes.items():
            sized = sizing.size(cost, sizing.Plan(runs_per_day))
            rows.append(
                [
                    f"{runs_per_day:,.0f}",
                    mix_name,
                    *(form.format(getattr(sized, key)) for _, key, form in SIZING_COLUMNS),
                ]
            )
    return _markdown(header, rows)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def mixes(figures: dict[str, dict[str, float]]) -> dict[str, sizing.PerRun]:
    """The workloads the sizing table is worked out for, those of them that were measured."""
    costs = {name: per_run_cost(f) for name, f in figures.items()}
    chosen = {}
    if all(name in costs for name in IDE_MIX):
        chosen["IDE mix"] = sizing.mix(dict.fromkeys(IDE_MIX, 1.0), costs)
    for name, label in (("python", "python hello"), ("python_cpu", "100 ms CPU (python)")):
        if name in costs:
            chosen[label] = costs[name]
    return chosen


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="bench %(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt)
    if os.environ.get("LCE_BENCH_URL"):
        log.info("capacity: skipped, it measures the processes and databases of a stack of its own")
        return 0
    label = env_str("LCE_BENCH_LABEL", "dev")
    rounds = env_int("LCE_BENCH_ROUNDS", 3, minimum=1)
    started_at = datetime.now(UTC)
    description = machine.describe("see the bench's main result", "-")
    with own_stack() as system:
        log.info("capacity: own stack at %s, %d executors, %d rounds", system.url, EXECUTORS, rounds)
        measured = measure(system, rounds)
    description["loadavg_end"] = machine.load_average()
    figures = summarise(measured)
    result = {
        "label": label,
        "started_at": started_at.isoformat(timespec="seconds"),
        "executors": EXECUTORS,
        "machine": description,
        "settings": {
            "rounds": rounds,
            "idle_s": IDLE_S,
            "pg_stats_settle_s": PG_STATS_SETTLE_S,
            "plan": asdict(sizing.Plan(1)),
        },
        "figures": figures,
        "measured": measured,
    }
    path = RESULTS_DIR / f"{started_at.strftime('%Y%m%dT%H%M%SZ')}-{label}-capacity.json"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(render_measured(figures))
    print()
    print(render_sizing(mixes(figures), (1e6, 1e8)))
    print(f"\nload average {description['loadavg_start']} -> {description['loadavg_end']}; written {path}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
