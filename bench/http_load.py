"""Per-endpoint load at a fixed concurrency: latency percentiles and requests per second.

Uses wrk when installed (C, one thread: it leaves the 2-core machine's CPU to the system under
test), else 8 loops on one async httpx client (Python: the client then competes with the
gateway for CPU and caps the figures; the result file says which tool measured).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.stats import percentile

CONCURRENCY = 8
WRK_SCRIPT = Path(__file__).with_name("wrk_report.lua")


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int  # transport errors and non-2xx answers
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def load_tool() -> str:
    return "wrk" if shutil.which("wrk") else "httpx"


def measure(base_url: str, endpoint: Endpoint, duration_s: float) -> LoadResult:
    if load_tool() == "wrk":
        return _wrk(base_url, endpoint, duration_s)
    return asyncio.run(_httpx(base_url, endpoint, duration_s))


def _wrk(base_url: str, endpoint: Endpoint, duration_s: float) -> LoadResult:
    env = {
        **os.environ,
        "BENCH_METHOD": endpoint.method,
        "BENCH_BODY": json.dumps(endpoint.body) if endpoint.body is not None else "",
    }
    argv = ["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{max(1, round(duration_s))}s", "-s", str(WRK_SCRIPT)]
    done = subprocess.run([*argv, base_url + endpoint.path], env=env, capture_output=True, text=True, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON "))
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    return LoadResult(
        requests=raw["requests"],
        errors=raw["errors"] + raw["non_2xx"],
        rps=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )


async def _httpx(base_url: str, endpoint: Endpoint, duration_s: float) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        started = time.perf_counter()
        deadline = started + duration_s

        async def loop() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    answer = await client.request(endpoint.method, endpoint.path, json=endpoint.body)
                    if answer.status_code >= 300:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append((time.perf_counter() - sent) * 1000)

        await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return LoadResult(
        requests=len(latencies),
        errors=errors,
        rps=len(latencies) / elapsed,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies),
    )
