"""`make run` as it runs: `python -m devstack` in a process of its own, on this test's ports, data dir,
PostgreSQL database and Redis. A SIGKILLed executor is restarted and every run completes, those
submitted before the kill and after it; a SIGKILLed gateway is restarted; Ctrl-C or SIGTERM stops
everything. A taken port is named in one line, with the variable that moves it, before anything starts."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT, RedisServer, free_port, fresh_database
from tests.integration.conftest import new_session, wait_terminal

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
# Long enough that the kill lands while the executor runs one of them.
PROGRAM = "import time\ntime.sleep(2)\nprint(6 * 7)\n"
RUNS_BEFORE = RUNS_AFTER = 4


def devstack_env(tmp: Path, **lce: str) -> dict[str, str]:
    """The environment `make run` would get: ours without any LCE_* variable, plus this test's."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LCE_")}
    return {
        **inherited,
        "LCE_GATEWAY_PORT": str(free_port()),
        "LCE_SESSION_PORT": str(free_port()),
        "LCE_EXECUTION_PORT": str(free_port()),
        "LCE_EXECUTOR_HEALTH_PORT": str(free_port()),
        "LCE_DATA_DIR": str(tmp / "data"),
        # Not under pytest's tmp dir: that is 0700 root, which the sandbox's slot uids cannot traverse.
        "LCE_WORK_ROOT": f"/tmp/lce-test-runs-{uuid.uuid4().hex[:8]}",
        "LCE_COMPILE_CACHE_DIR": str(tmp / "compile-cache"),
        **lce,
    }


def children(pid: int) -> dict[int, str]:
    """The live child processes of `pid`, by pid, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # The parent's pid is the second field after the command name, which may hold spaces.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def is_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for whoever reaps orphans is dead)."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]) != "Z"
    except FileNotFoundError:
        return False


class Devstack:
    """`python -m devstack` in the background, its output in a file."""

    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self.log_file = log_file
        self.gateway_url = f"http://127.0.0.1:{env['LCE_GATEWAY_PORT']}"
        with log_file.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devstack"], cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log_file.read_text(errors="replace")

    def devstack_lines(self) -> list[str]:
        return [line for line in self.output().splitlines() if line.startswith("devstack: ")]

    def wait_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "devstack: LCE is up" not in self.output():
            assert self.process.poll() is None, f"devstack exited with {self.process.returncode}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"LCE not up within {START_TIMEOUT_S:.0f} s:\n{self.tail()}"
            time.sleep(0.1)

    def pid_of(self, module: str) -> int:
        (pid,) = [pid for pid, cmdline in children(self.process.pid).items() if cmdline.endswith(f"-m {module}")]
        return pid

    def wait_line(self, pattern: str, timeout_s: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            for line in self.devstack_lines():
                if match := re.fullmatch(pattern, line):
                    return match
            assert time.monotonic() < deadline, f"no line {pattern!r} within {timeout_s:.0f} s:\n{self.tail()}"
            time.sleep(0.05)

    def tail(self) -> str:
        return self.output()[-6000:]

    def stop(self, signum: signal.Signals) -> int:
        self.process.send_signal(signum)
        return self.process.wait(STOP_TIMEOUT_S)

    def kill_all(self) -> None:
        """After a failure: nothing this test started outlives it."""
        survivors = children(self.process.pid)
        self.process.kill()
        self.process.wait()
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def supervised(tmp_path: Path, private_redis: RedisServer) -> Iterator[Devstack]:
    with fresh_database("lce_supervised") as database_url:
        env = devstack_env(
            tmp_path,
            # One executor: runs complete after the kill only if it is started again.
            LCE_EXECUTORS="1",
            LCE_DATABASE_URL=database_url,
            LCE_REDIS_URL=private_redis.url,
            LCE_RUNS_PER_MINUTE="100",
        )
        stack = Devstack(env, tmp_path / "devstack.log")
        try:
            stack.wait_up()
            yield stack
        finally:
            if stack.process.poll() is None:
                print(stack.tail())
                stack.kill_all()


def submit(api: httpx.Client, session_id: str) -> str:
    accepted = api.post(f"/code-sessions/{session_id}/run")
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["execution_id"])


def wait_running(api: httpx.Client, execution_ids: list[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(api.get(f"/executions/{eid}").json()["status"] == "RUNNING" for eid in execution_ids):
            return
        time.sleep(0.05)
    raise AssertionError(f"no run RUNNING within {timeout_s:.0f} s")


def test_a_sigkilled_executor_is_restarted_and_every_run_completes(supervised: Devstack) -> None:
    with httpx.Client(base_url=supervised.gateway_url, timeout=30) as api:
        python = next(lang for lang in api.get("/languages").json()["languages"] if lang["name"] == "python")
        session_id = new_session(api, python["id"], PROGRAM)
        before = [submit(api, session_id) for _ in range(RUNS_BEFORE)]
        wait_running(api, before)

        victim = supervised.pid_of("executor")
        os.kill(victim, signal.SIGKILL)
        after = [submit(api, session_id) for _ in range(RUNS_AFTER)]

        results = {eid: wait_terminal(api, eid, timeout_s=120) for eid in before + after}
    failed = {
        eid: (r["status"], r["stdout"])
        for eid, r in results.items()
        if (r["status"], r["stdout"]) != ("COMPLETED", "42\n")
    }
    assert not failed, f"runs that did not complete with their output: {failed}\n{supervised.tail()}"

    lines = supervised.devstack_lines()
    deaths = [line for line in lines if re.search(r" (exited with code|was killed by) ", line)]
    assert len(deaths) == 1, lines
    assert re.fullmatch(
        r"devstack: executor-1 was killed by SIGKILL after \d+\.\d s up; restarting it in 0\.5 s", deaths[0]
    )
    restarted = supervised.wait_line(r"devstack: restarted executor-1 \(pid (\d+), restart 1\)", timeout_s=0)
    replacement = int(restarted.group(1))
    assert replacement != victim and supervised.pid_of("executor") == replacement


def test_a_sigkilled_gateway_is_restarted_without_its_orphaned_workers(supervised: Devstack) -> None:
    """uvicorn's workers outlive their killed master and keep its port: they must go for a restart to listen."""
    victim = supervised.pid_of("gateway")
    workers = children(victim)
    assert workers, "the gateway runs its workers as child processes"
    os.kill(victim, signal.SIGKILL)
    supervised.wait_line(r"devstack: gateway was killed by SIGKILL after \d+\.\d s up; restarting it in 0\.5 s")
    supervised.wait_line(r"devstack: restarted gateway \(pid \d+, restart 1\)")
    assert not [pid for pid in workers if is_alive(pid)], "the dead gateway's workers live on"
    deadline = time.monotonic() + 60
    while not is_up(supervised.gateway_url):
        assert time.monotonic() < deadline, f"the gateway did not answer again:\n{supervised.tail()}"
        time.sleep(0.1)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_everything(supervised: Devstack, signum: signal.Signals) -> None:
    running = children(supervised.process.pid)
    assert len(running) == 4, running  # session_service, execution_service, the executor, the gateway
    assert supervised.stop(signum) == 0, supervised.tail()
    assert not [pid for pid in running if is_alive(pid)], "processes outlived make run"
    assert supervised.devstack_lines()[-1] == "devstack: stopping"
    assert not [line for line in supervised.output().splitlines() if line.startswith("Traceback")]


def is_up(gateway_url: str) -> bool:
    try:
        return httpx.get(f"{gateway_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_taken_port_is_named_in_one_line_and_nothing_starts(tmp_path: Path, redis_server: RedisServer) -> None:
    """As in issue 14: another program's outgoing connection holds the port execution_service wants."""
    with socket.socket() as outgoing:
        outgoing.bind(("127.0.0.1", 0))
        outgoing.connect(("127.0.0.1", redis_server.port))
        port = outgoing.getsockname()[1]
        env = devstack_env(tmp_path, LCE_EXECUTION_PORT=str(port), LCE_REDIS_URL=redis_server.url)
        finished = subprocess.run(
            [sys.executable, "-m", "devstack"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert finished.returncode == 2, finished.stderr
    assert finished.stdout == ""
    assert finished.stderr.splitlines() == [
        f"devstack: port {port} (execution_service) is taken by another program: set LCE_EXECUTION_PORT to move it"
    ]
    assert not (tmp_path / "data").exists()  # nothing started: no service made its files
