"""Judge mode end to end (issue 11): 100 cases of a C program as one suite, against the same 100 inputs
as 100 separate runs of the same program submitted at once.

Both take a source never seen before (a unique comment), as a new submission to a judge would: the
suite compiles once, the separate runs as often as the compile cache misses. Both are timed from the
first POST until every run is seen terminal, watched the same way (each session's execution list every
runs.BURST_SWEEP_S). The separate runs spread over sessions of at most 10 runs, the documented rate limit.

`python -m bench.judge` measures this alone, on the bench's own stack (or LCE_BENCH_URL).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from typing import Any

import httpx

from bench import report, runs
from bench.stack import target
from bench.stats import spread
from common.config import env_int

log = logging.getLogger("bench")

CASES = 100
SQUARE_C = (
    '#include <stdio.h>\n\nint main(void) {\n    long n;\n    if (scanf("%ld", &n) != 1) return 1;\n'
    '    printf("%ld\\n", n * n);\n    return 0;\n}\n'
)
FIGURES = ("suite_ms", "runs_ms", "speedup")


def unseen_source() -> str:
    return f"/* bench judge {uuid.uuid4().hex} */\n{SQUARE_C}"


def case_input(index: int) -> str:
    return f"{index}\n"


def case_output(index: int) -> str:
    return f"{index * index}\n"


async def measure(base_url: str, c_id: str) -> dict[str, float]:
    """One suite, then the separate runs: milliseconds each from the first POST to the last terminal status."""
    limits = httpx.Limits(max_connections=CASES, max_keepalive_connections=CASES)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        suite_ms, suite_incorrect = await _one_suite(client, c_id)
        runs_ms, runs_incorrect = await _separate_runs(client, c_id)
    return {
        "suite_ms": suite_ms,
        "runs_ms": runs_ms,
        "speedup": runs_ms / suite_ms,
        "incorrect": suite_incorrect + runs_incorrect,
    }


async def _one_suite(client: httpx.AsyncClient, c_id: str) -> tuple[float, int]:
    """(ms, cases not passed)."""
    [session_id] = await _sessions(client, c_id, 1, unseen_source())
    tests = [
        {"name": f"case {index}", "stdin": case_input(index), "expected_output": case_output(index)}
        for index in range(CASES)
    ]
    started = time.perf_counter()
    accepted = runs.expect(await client.post(f"/code-sessions/{session_id}/run", json={"tests": tests}), 202)
    await runs.watch(client, {session_id: {accepted["execution_id"]}}, 1)
    elapsed_ms = (time.perf_counter() - started) * 1000
    body = runs.expect(await runs.get(client, f"/executions/{accepted['execution_id']}"), 200)
    passed = body.get("tests_passed", 0) if body["status"] == "COMPLETED" else 0
    return elapsed_ms, CASES - passed


async def _separate_runs(client: httpx.AsyncClient, c_id: str) -> tuple[float, int]:
    """(ms, runs without the expected output)."""
    per_session = runs.RATE_LIMITED_RUNS_PER_SESSION
    session_ids = await _sessions(client, c_id, -(-CASES // per_session), unseen_source())
    targets = [session_ids[index // per_session] for index in range(CASES)]
    started = time.perf_counter()
    answers = await asyncio.gather(
        *(
            client.post(f"/code-sessions/{session_id}/run", json={"stdin": case_input(index)})
            for index, session_id in enumerate(targets)
        )
    )
    execution_ids = [runs.expect(answer, 202)["execution_id"] for answer in answers]
    pending: dict[str, set[str]] = {session_id: set() for session_id in session_ids}
    for session_id, execution_id in zip(targets, execution_ids, strict=True):
        pending[session_id].add(execution_id)
    await runs.watch(client, pending, per_session)
    elapsed_ms = (time.perf_counter() - started) * 1000
    bodies = await asyncio.gather(*(runs.get(client, f"/executions/{e}") for e in execution_ids))
    details = [runs.expect(body, 200) for body in bodies]
    incorrect = sum(
        not (detail["status"] == "COMPLETED" and detail["stdout"] == case_output(index))
        for index, detail in enumerate(details)
    )
    return elapsed_ms, incorrect


async def _sessions(client: httpx.AsyncClient, c_id: str, count: int, source: str) -> list[str]:
    async def one() -> str:
        answer = await client.post("/code-sessions", json={"language_id": c_id, "source_code": source})
        session_id: str = runs.expect(answer, 201)["session_id"]
        return session_id

    return list(await asyncio.gather(*(one() for _ in range(count))))


def summarise(per_round: list[dict[str, float]]) -> dict[str, Any]:
    """Each figure's median [range] over the rounds, and the incorrect results of all of them."""
    figures: dict[str, Any] = {name: spread([measured[name] for measured in per_round]).as_dict() for name in FIGURES}
    figures["incorrect"] = sum(int(measured["incorrect"]) for measured in per_round)
    figures["cases"] = CASES
    return figures


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="bench %(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    rounds = env_int("LCE_BENCH_ROUNDS", 3, minimum=1)
    with target() as system, httpx.Client(base_url=system.url, timeout=60) as client:
        c_id = runs.language_ids(client)["c"]
        asyncio.run(measure(system.url, c_id))  # warm-up: cold caches and lazy connections
        per_round = []
        for index in range(rounds):
            per_round.append(asyncio.run(measure(system.url, c_id)))
            log.info("round %d/%d: %s", index + 1, rounds, per_round[-1])
    figures = summarise(per_round)
    print(report.render(report.judge_rows({"judge": figures})))
    print(f"incorrect results: {figures['incorrect']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
