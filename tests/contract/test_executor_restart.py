"""The executor process as a platform runs it: health names its sandbox mode, and a replacement
started after a crash, under the same LCE_EXECUTOR_ID, comes up at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common import healthcheck
from tests.conftest import REPO_ROOT, free_port


def start_executor(
    redis_url: str, health_port: int, work_root: Path, *, metrics_port: int | None = None
) -> subprocess.Popen[bytes]:
    env = {
        "PATH": os.environ["PATH"],
        "LCE_REDIS_URL": redis_url,
        "LCE_EXECUTION_SERVICE_ADDR": f"127.0.0.1:{free_port()}",  # never called: no job is queued
        "LCE_EXECUTOR_HEALTH_LISTEN": f"127.0.0.1:{health_port}",
        "LCE_EXECUTOR_ID": "same-id-every-time",
        "LCE_WORK_ROOT": str(work_root),
        "LCE_SANDBOX": "none",
        "LCE_SANDBOX_ALLOW_UNCONFINED": "1",
        "LCE_METRICS_LISTEN": f"127.0.0.1:{metrics_port}" if metrics_port else "",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "executor"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_serving(addr: str, process: subprocess.Popen[bytes], service: str = "lce.executor") -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the executor exited with {process.returncode} during start-up"
        if healthcheck.check(addr, service, timeout_s=0.5):
            return
        time.sleep(0.05)
    raise AssertionError(f"{service} never became SERVING at {addr}")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_health_names_the_sandbox_mode(redis_url: str, tmp_path: Path, processes: list) -> None:
    port = free_port()
    processes.append(start_executor(redis_url, port, tmp_path))
    wait_serving(f"127.0.0.1:{port}", processes[0], "lce.executor.sandbox.none")
    assert not healthcheck.check(f"127.0.0.1:{port}", "lce.executor.sandbox.bwrap-userns")


def test_metrics_name_the_sandbox_mode(redis_url: str, tmp_path: Path, processes: list) -> None:
    port, metrics_port = free_port(), free_port()
    processes.append(start_executor(redis_url, port, tmp_path, metrics_port=metrics_port))
    wait_serving(f"127.0.0.1:{port}", processes[0])
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert 'lce_executor_sandbox_info{mode="none"} 1.0' in text.splitlines()


def test_a_crashed_executor_is_replaced_under_the_same_id(redis_url: str, tmp_path: Path, processes: list) -> None:
    port = free_port()
    processes.append(start_executor(redis_url, port, tmp_path))
    wait_serving(f"127.0.0.1:{port}", processes[0])
    processes[0].send_signal(signal.SIGKILL)
    processes[0].wait()
    processes.append(start_executor(redis_url, port, tmp_path))
    wait_serving(f"127.0.0.1:{port}", processes[1])
