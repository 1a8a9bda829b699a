"""The gateway's request metrics on a small app of their own: labels are route templates, bounded
methods and the status answered; and the bookkeeping of the worker processes' sample files."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY

from gateway import metrics, samples_dir

REPO = Path(__file__).resolve().parents[2]


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> JSONResponse:
        return JSONResponse({"id": thing_id})

    @app.get("/broken")
    async def broken() -> JSONResponse:
        raise RuntimeError("a bug")

    app.add_middleware(metrics.RequestMetrics)
    return app


APP = _app()


def request(method: str, path: str) -> int:
    async def send() -> int:
        transport = httpx.ASGITransport(app=APP, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return (await client.request(method, path)).status_code

    return asyncio.run(send())


def counted(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("lce_gateway_requests_total", labels) or 0.0


@pytest.mark.parametrize(
    ("method", "path", "labels"),
    [
        ("GET", "/things/1", ("/things/{thing_id}", "GET", "200")),
        ("GET", "/things/another-id", ("/things/{thing_id}", "GET", "200")),  # one series, whatever the id
        ("PATCH", "/things/1", ("/things/{thing_id}", "PATCH", "405")),
        ("GET", "/no/such/route/42", (metrics.UNMATCHED, "GET", "404")),
        ("BREW", "/things/1", ("/things/{thing_id}", "other", "405")),  # methods are a bounded set
        ("GET", "/broken", ("/broken", "GET", "500")),
    ],
)
def test_each_answer_is_counted_by_route_template_method_and_status(
    method: str, path: str, labels: tuple[str, str, str]
) -> None:
    before = counted(*labels)
    assert str(request(method, path)) == labels[2]
    assert counted(*labels) == before + 1


def test_latency_is_observed_once_per_request() -> None:
    labels = {"route": "/things/{thing_id}", "method": "GET"}
    before = REGISTRY.get_sample_value("lce_gateway_request_seconds_count", labels) or 0.0
    request("GET", "/things/7")
    assert REGISTRY.get_sample_value("lce_gateway_request_seconds_count", labels) == before + 1


def test_the_entry_point_leaves_prometheus_client_unimported() -> None:
    """It must set PROMETHEUS_MULTIPROC_DIR before prometheus-client is imported (gateway/__main__.py)."""
    check = "import sys, gateway.__main__; sys.exit('prometheus_client' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], cwd=REPO, check=False).returncode == 0


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_dead_process_s_open_streams_are_forgotten_and_its_counts_kept(tmp_path: Path) -> None:
    dead, living = _dead_pid(), subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for name in (f"gauge_livesum_{dead}.db", f"counter_{dead}.db", f"gauge_livesum_{living.pid}.db"):
            (tmp_path / name).write_bytes(b"")
        metrics.forget_dead_processes(tmp_path)
        assert sorted(path.name for path in tmp_path.iterdir()) == [
            f"counter_{dead}.db",
            f"gauge_livesum_{living.pid}.db",
        ]
    finally:
        living.kill()
        living.wait()
    assert not samples_dir.alive(dead)
