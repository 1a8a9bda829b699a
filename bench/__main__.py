"""`python -m bench` (`make bench`): measure, write bench/results/<UTC time>-<label>.json and the summary
table bench/results/latest.md, print the whole table.

Environment: LCE_BENCH_LABEL names the step (default "dev"); LCE_BENCH_URL targets a running
deployment instead of starting one; LCE_BENCH_ROUNDS (default 3) repeats every measure, since
the machine is shared and noisy; LCE_BENCH_ENDPOINT_S (default 3) is each endpoint's load time.
`python -m bench.judge` measures only the judge comparison (bench/judge.py).
`python -m bench.capacity` measures the cost of a run for the capacity model (bench/capacity.py);
`make bench` runs it after this.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import bare, cpu, http_load, judge, machine, report, runs
from bench.stack import ADMIN_URL, Target, target
from bench.stats import spread
from common.config import env_int, env_str
from executor.launcher import Launcher
from executor.sandbox import SandboxUnavailable

log = logging.getLogger("bench")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The summary table of the last run; a human copies the one worth keeping to bench/RESULTS.md.
LATEST = RESULTS_DIR / "latest.md"

# Per round. Sized so that three rounds and the stack's start fit in about five minutes on two cores.
# Never-seen runs per language and client path; compiled languages' runs take longer.
NEVER_SEEN_COUNTS = {"python": 20, "javascript": 10, "php": 10, "ruby": 10, "c": 8, "cpp": 5, "go": 3, "java": 3}
E2E_COUNTS = {
    **{f"{language}_{path}": count for language, count in NEVER_SEEN_COUNTS.items() for path in report.PATHS},
    "python_poll100": 8,
    "c_seen": 15,
    "java_seen": 4,
}
BARE_REPEATS = {"python": 8, "javascript": 4, "php": 4, "ruby": 4, "c": 4, "cpp": 2, "go": 2, "java": 2}
BURST_RUNS = 200
BURST_PER_SESSION = 10
PROFILE_RUNS = 20
SLOW_COMPILES = {"go", "java"}


def _workloads() -> dict[str, runs.Workload]:
    """Every language's never-seen hello world by each client path; Python polled every 100 ms; the seen C and Java."""
    found = {}
    for language in report.LANGUAGES:
        hello = bare.program(language).source
        time_limit_ms = 10_000 if language in SLOW_COMPILES else 5000
        for path in report.PATHS:
            name = f"{language}_{path}"
            source = functools.partial(runs.unseen, language, hello)
            found[name] = runs.Workload(name, language, source, time_limit_ms, seen_by=path)
    found["python_poll100"] = runs.Workload("python_poll100", "python", found["python_poll"].source, poll_s=0.1)
    found["c_seen"] = runs.Workload("c_seen", "c", lambda: runs.C_HELLO)
    found["java_seen"] = runs.Workload("java_seen", "java", lambda: runs.JAVA_HELLO, time_limit_ms=10_000)
    return found


WORKLOADS = _workloads()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="bench %(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    # SIGTERM (a timeout, a CI cancel) must unwind like Ctrl-C: the stack, its database and Redis go with us.
    signal.signal(signal.SIGTERM, _interrupt)
    label = env_str("LCE_BENCH_LABEL", "dev")
    rounds = env_int("LCE_BENCH_ROUNDS", 3, minimum=1)
    endpoint_s = env_int("LCE_BENCH_ENDPOINT_S", 3, minimum=1)
    started_at = datetime.now(UTC)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lce-bench-sandbox-") as work_root:
        launcher, sandbox_mode = _launcher(Path(work_root))
        description = machine.describe(sandbox_mode, http_load.load_tool())
        try:
            with target() as system:
                log.info("system under test: %s (%s)", system.url, "own stack" if system.own else "given")
                per_round, profile = _measure(system, launcher, rounds, endpoint_s)
        finally:
            # The launcher keeps the next sandbox prepared, its work dir mounted under work_root.
            if launcher is not None:
                launcher.close()
    description["loadavg_end"] = machine.load_average()
    figures = summarise(per_round)
    result = {
        "label": label,
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - began, 1),
        "target": {"url": system.url, "own_stack": system.own, "executors": 2 if system.own else None},
        "machine": description,
        "settings": {
            "rounds": rounds,
            "endpoint_s": endpoint_s,
            "concurrency": http_load.CONCURRENCY,
            "e2e_counts": E2E_COUNTS,
            "bare_repeats": BARE_REPEATS,
            "burst_runs": BURST_RUNS,
            "judge_cases": judge.CASES,
            "poll_ms": runs.POLL_S * 1000,
        },
        "figures": figures,
        "profile_python": profile,
        "rounds": per_round,
    }
    path = RESULTS_DIR / f"{started_at.strftime('%Y%m%dT%H%M%SZ')}-{label}.json"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    table = report.rows(figures, description["nproc"] or 1)
    LATEST.write_text(report.markdown(table, report.heading(result)))
    print(report.render(table))
    print(f"\n{report.NOTE}\n")
    print(_render_profile(profile))
    print(f"\nload average {description['loadavg_start']} -> {description['loadavg_end']}; written {path}, {LATEST}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _launcher(work_root: Path) -> tuple[Launcher | None, str]:
    try:
        launcher = bare.sandbox_launcher(work_root)
    except SandboxUnavailable as exc:
        log.warning("no sandbox here, bare sandboxed figures are skipped: %s", exc)
        return None, "unavailable"
    return launcher, launcher.mode


def _measure(
    system: Target, launcher: Launcher | None, rounds: int, endpoint_s: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    with httpx.Client(base_url=system.url, timeout=60) as client:
        ids = runs.language_ids(client)
        sessions = runs.Sessions(client, ids, None if system.own else runs.RATE_LIMITED_RUNS_PER_SESSION - 1)
        # First runs pay for cold page caches and lazy connections: not what the figures are about.
        for workload in WORKLOADS.values():
            runs.end_to_end(sessions, workload, 1)
        asyncio.run(judge.measure(system.url, ids["c"]))
        per_round = []
        with _cpu_reader(system) as read_cpu:
            for index in range(rounds):
                log.info("round %d/%d", index + 1, rounds)
                per_round.append(_round(system, client, sessions, ids, launcher, endpoint_s, read_cpu))
        log.info("profile: %d python runs", PROFILE_RUNS)
        _, timed = runs.end_to_end(sessions, WORKLOADS["python_poll"], PROFILE_RUNS)
    return per_round, runs.profile(timed)


@contextmanager
def _cpu_reader(system: Target) -> Iterator[Callable[[], cpu.Reading] | None]:
    """Reads the CPU the stack's processes have used so far; only our own stack's processes can be read."""
    if not system.own or system.database_url is None:
        yield None
        return
    database = system.database_url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        yield functools.partial(cpu.read, system.pids, admin, database)


def _burst(system: Target, python_id: str, read_cpu: Callable[[], cpu.Reading] | None) -> dict[str, Any]:
    """The burst's rates, and the CPU per run each process used meanwhile (own stack only)."""
    before = read_cpu() if read_cpu else None
    throughput = asyncio.run(runs.burst(system.url, python_id, BURST_RUNS, BURST_PER_SESSION))
    if read_cpu and before:
        throughput["cpu_ms_per_run"] = cpu.spent_ms_per_run(before, read_cpu(), BURST_RUNS)
    return throughput


def _round(
    system: Target,
    client: httpx.Client,
    sessions: runs.Sessions,
    ids: dict[str, str],
    launcher: Launcher | None,
    endpoint_s: int,
    read_cpu: Callable[[], cpu.Reading] | None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"bare": {}, "end_to_end": {}, "endpoints": {}}
    terminal_id = ""
    # Each language's bare work just before its runs: the shared machine's load drifts within a round.
    for language, repeats in BARE_REPEATS.items():
        plain, sandboxed = bare.interleaved(launcher, bare.program(language), repeats)
        result["bare"][language] = {"bare": _timing(plain), "sandboxed": _timing(sandboxed) if sandboxed else None}
        for name in (name for name, workload in WORKLOADS.items() if workload.language == language):
            summary, timed = runs.end_to_end(sessions, WORKLOADS[name], E2E_COUNTS[name])
            result["end_to_end"][name] = summary
            terminal_id = terminal_id or timed[-1].body["execution_id"]
    for name, endpoint in _endpoints(client, ids["python"], terminal_id).items():
        result["endpoints"][name] = http_load.measure(system.url, endpoint, endpoint_s).as_dict()
    result["throughput"] = _burst(system, ids["python"], read_cpu)
    result["judge"] = asyncio.run(judge.measure(system.url, ids["c"]))
    log.info(
        "  python never-seen e2e p50 %.1f ms (POST ?wait), burst %.0f runs/s, judge suite x%.1f faster than runs",
        result["end_to_end"]["python_wait"]["p50"],
        result["throughput"]["completions_per_s"],
        result["judge"]["speedup"],
    )
    return result


def _timing(timing: bare.Timing) -> dict[str, list[float]]:
    return {
        "compile": [round(v, 3) for v in timing.compile_ms],
        "run": [round(v, 3) for v in timing.run_ms],
        "total": [round(v, 3) for v in timing.total_ms],
    }


def _endpoints(client: httpx.Client, python_id: str, execution_id: str) -> dict[str, http_load.Endpoint]:
    session_id = runs.create_session(client, python_id)
    return {
        "get_execution": http_load.Endpoint("get_execution", "GET", f"/executions/{execution_id}"),
        "create_session": http_load.Endpoint("create_session", "POST", "/code-sessions", {"language_id": python_id}),
        "update_source": http_load.Endpoint(
            "update_source", "PATCH", f"/code-sessions/{session_id}", {"source_code": runs.PYTHON_HELLO}
        ),
        "get_session": http_load.Endpoint("get_session", "GET", f"/code-sessions/{session_id}"),
    }


def summarise(per_round: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Round figures -> median [range]. Bare timings pool every repeat of every round; the rest take
    one value per round (a percentile of that round's samples), so the range shows round-to-round noise."""
    figures: dict[str, Any] = {"bare": {}, "end_to_end": {}, "endpoints": {}, "throughput": {}}
    for language in BARE_REPEATS:
        figures["bare"][language] = {}
        for part in ("compile", "run", "total"):
            entry = {}
            for kind in ("bare", "sandboxed"):
                pooled = [v for r in per_round if r["bare"][language][kind] for v in r["bare"][language][kind][part]]
                if pooled:
                    entry[kind] = spread(pooled).as_dict()
            figures["bare"][language][part] = entry
    for name in WORKLOADS:
        rounds_of = [r["end_to_end"][name] for r in per_round]
        figures["end_to_end"][name] = {
            pct: spread([r[pct] for r in rounds_of]).as_dict() for pct in ("p50", "p90", "p99")
        }
        figures["end_to_end"][name]["incorrect"] = sum(r["incorrect"] for r in rounds_of)
    for name in per_round[0]["endpoints"]:
        rounds_of = [r["endpoints"][name] for r in per_round]
        figures["endpoints"][name] = {
            k: spread([r[k] for r in rounds_of]).as_dict() for k in ("p50_ms", "p99_ms", "rps")
        }
        figures["endpoints"][name]["errors"] = sum(r["errors"] for r in rounds_of)
    bursts = [r["throughput"] for r in per_round]
    for key in ("completions_per_s", "server_completions_per_s"):
        figures["throughput"][key] = spread([b[key] for b in bursts]).as_dict()
    figures["throughput"]["incorrect"] = sum(b["incorrect"] for b in bursts)
    spent = [b["cpu_ms_per_run"] for b in bursts if "cpu_ms_per_run" in b]
    if spent:
        figures["burst_cpu_ms"] = {name: spread([s[name] for s in spent]).as_dict() for name in spent[0]}
    figures["judge"] = judge.summarise([r["judge"] for r in per_round])
    return figures


def _render_profile(profile: dict[str, Any]) -> str:
    lines = [f"where one python run's time goes (ms, median [min-max] over {PROFILE_RUNS} sequential runs):"]
    for name, meaning in runs.PROFILE_STAGES.items():
        figure = profile.get(name)
        if figure:
            lines.append(f"  {figure['p50']:7.1f} [{figure['min']:.1f}-{figure['max']:.1f}]  {meaning}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
