"""`python -m bench.sessions`: the session endpoints' cost (issue 15), on a stack of the bench's own.

Per endpoint and round: req/s and latency at the bench's concurrency (bench/http_load.py), and the
CPU each process spent per request meanwhile (gateway, session_service, execution_service and the
bench database's PostgreSQL backends), so a change shows where it saved. Endpoints take turns within
each round, so the machine's other load falls on all of them alike. LCE_BENCH_ROUNDS (default 3)
and LCE_BENCH_ENDPOINT_S (default 5) as in `python -m bench`; writes
bench/results/<UTC time>-<label>-sessions.json.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import http_load, runs
from bench.capacity import _children, _cpu_s, _tree
from bench.stack import ADMIN_URL, Target, own_stack
from common.config import env_int, env_str

log = logging.getLogger("bench.sessions")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROCESSES = ("gateway", "session_service", "execution_service")


def cpu_by_process(system: Target, admin: psycopg.Connection[Any]) -> dict[str, float]:
    """CPU seconds so far of each service's process tree, and of the bench database's backends."""
    children = _children()
    spent = {name: sum(_cpu_s(pid) for pid in _tree(system.pids[name], children)) for name in PROCESSES}
    assert system.database_url
    database = system.database_url.rsplit("/", 1)[1]
    backends = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)).fetchall()
    spent["postgres"] = sum(_cpu_s(pid) for (pid,) in backends)
    return spent


def endpoints(client: httpx.Client) -> dict[str, http_load.Endpoint]:
    ids = runs.language_ids(client)
    session_id = runs.create_session(client, ids["python"])
    execution = runs.timed_run(client, session_id, 5000)
    if not execution.correct:
        raise RuntimeError(f"the run for GET /executions went wrong: {execution.body}")
    return {
        "get_session": http_load.Endpoint("get_session", "GET", f"/code-sessions/{session_id}"),
        "update_source": http_load.Endpoint(
            "update_source", "PATCH", f"/code-sessions/{session_id}", {"source_code": runs.PYTHON_HELLO}
        ),
        "create_session": http_load.Endpoint(
            "create_session", "POST", "/code-sessions", {"language_id": ids["python"]}
        ),
        "get_execution": http_load.Endpoint("get_execution", "GET", f"/executions/{execution.body['execution_id']}"),
    }


def measure_one(
    system: Target, admin: psycopg.Connection[Any], endpoint: http_load.Endpoint, seconds: int
) -> dict[str, float]:
    before = cpu_by_process(system, admin)
    result = http_load.measure(system.url, endpoint, seconds)
    after = cpu_by_process(system, admin)
    figures = result.as_dict()
    for name, spent in after.items():
        # A backend gone meanwhile took its CPU with it; one come meanwhile counts from 0.
        figures[f"cpu_ms_per_request_{name}"] = (spent - before.get(name, 0.0)) * 1000 / max(result.requests, 1)
    return figures


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="bench %(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    label = env_str("LCE_BENCH_LABEL", "dev")
    rounds = env_int("LCE_BENCH_ROUNDS", 3, minimum=1)
    seconds = env_int("LCE_BENCH_ENDPOINT_S", 5, minimum=1)
    started_at = datetime.now(UTC)
    with own_stack() as system, psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        per_round = _rounds(system, admin, rounds, seconds)
    medians = {
        name: {key: statistics.median(r[name][key] for r in per_round) for key in per_round[0][name]}
        for name in per_round[0]
    }
    result = {
        "label": label,
        "started_at": started_at.isoformat(),
        "tool": http_load.load_tool(),
        "rounds": per_round,
        "medians": medians,
    }
    path = runs_path(label, started_at)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(render(medians))
    print(f"written {path}")
    return 0


def _rounds(
    system: Target, admin: psycopg.Connection[Any], rounds: int, seconds: int
) -> list[dict[str, dict[str, float]]]:
    with httpx.Client(base_url=system.url, timeout=60) as client:
        chosen = endpoints(client)
    for endpoint in chosen.values():  # warm: connections, caches
        http_load.measure(system.url, endpoint, 1)
    per_round = []
    for index in range(rounds):
        per_round.append({name: measure_one(system, admin, e, seconds) for name, e in chosen.items()})
        log.info("round %d/%d: %s", index + 1, rounds, _line(per_round[-1]))
    return per_round


def runs_path(label: str, started_at: datetime) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return RESULTS_DIR / f"{started_at.strftime('%Y%m%dT%H%M%SZ')}-{label}-sessions.json"


def _line(figures: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{name} {f['rps']:.0f}/s" for name, f in figures.items())


def render(medians: dict[str, dict[str, float]]) -> str:
    header = f"{'endpoint':16} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}  CPU ms/request: " + " ".join(
        f"{name:>8.8}" for name in (*PROCESSES, "postgres")
    )
    lines = [header]
    for name, f in medians.items():
        cpu = " ".join(f"{f[f'cpu_ms_per_request_{p}']:8.3f}" for p in (*PROCESSES, "postgres"))
        lines.append(f"{name:16} {f['rps']:7.0f} {f['p50_ms']:7.2f} {f['p99_ms']:7.2f}  {' ' * 16}{cpu}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
