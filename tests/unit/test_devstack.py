"""`make run`: its plan of processes (what each service is handed), the ports it checks before
starting anything, and the supervisor that restarts a process that dies."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.config import ConfigError
from devstack import EXECUTION_PORT, FIRST_EXECUTOR_HEALTH_PORT, SESSION_PORT, Service, Stack, StackConfig
from devstack.__main__ import config_from_env
from devstack.ports import PortClaim, bind_problem, problems, service_claims
from devstack.supervisor import Backoff, BackoffPolicy, Supervisor, describe_exit
from execution_service.settings import ExecutionServiceConfig
from executor.settings import ExecutorConfig
from gateway.settings import GatewayConfig
from session_service.settings import SessionServiceConfig
from tests.conftest import free_port


def metrics_listen(config: StackConfig) -> dict[str, str | None]:
    return {service.name: service.env.get("LCE_METRICS_LISTEN") for service in Stack(config).services}


def test_one_metrics_address_becomes_one_port_per_process_on_the_shared_host() -> None:
    planned = metrics_listen(StackConfig(executors=2, extra_env={"LCE_METRICS_LISTEN": "127.0.0.1:9464"}))
    assert planned == {
        "session_service": "127.0.0.1:9464",
        "execution_service": "127.0.0.1:9465",
        "executor-1": "127.0.0.1:9466",
        "executor-2": "127.0.0.1:9467",
        "gateway": "127.0.0.1:9468",  # every worker process's, added up
    }


def test_port_zero_lets_each_process_pick_its_own() -> None:
    planned = metrics_listen(StackConfig(executors=1, extra_env={"LCE_METRICS_LISTEN": "127.0.0.1:0"}))
    assert set(planned.values()) == {"127.0.0.1:0"}


def test_no_metrics_address_serves_none() -> None:
    assert set(metrics_listen(StackConfig())) == {
        "session_service",
        "execution_service",
        "executor-1",
        "executor-2",
        "gateway",
    }
    assert set(metrics_listen(StackConfig()).values()) == {None}


# --- the ports and the variables that move them ----------------------------------------------


@pytest.fixture
def no_lce_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [name for name in os.environ if name.startswith("LCE_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def planned_claims(config: StackConfig) -> set[tuple[str, int, str]]:
    return {
        (claim.listener, claim.port, claim.variable)
        for service in Stack(config).services
        for claim in service_claims(service)
    }


def test_the_default_ports_lie_below_the_ephemeral_range(no_lce_env: pytest.MonkeyPatch) -> None:
    """Linux hands out 32768-60999 to outgoing connections by default (other systems 49152-65535)."""
    assert planned_claims(config_from_env()) == {
        ("session_service", 7051, "LCE_SESSION_PORT"),
        ("execution_service", 7052, "LCE_EXECUTION_PORT"),
        ("executor-1 health", 7053, "LCE_EXECUTOR_HEALTH_PORT"),
        ("executor-2 health", 7054, "LCE_EXECUTOR_HEALTH_PORT"),
        ("gateway", 8080, "LCE_GATEWAY_PORT"),
    }


def test_services_run_alone_default_to_the_same_ports(no_lce_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_lce_env.setenv("LCE_DATA_DIR", str(tmp_path))  # the SQLite defaults' directory
    session, execution = f"127.0.0.1:{SESSION_PORT}", f"127.0.0.1:{EXECUTION_PORT}"
    assert SessionServiceConfig.from_env().listen_addr == session
    assert ExecutionServiceConfig.from_env().listen_addr == execution
    assert ExecutionServiceConfig.from_env().session_service_addr == session
    executor = ExecutorConfig.from_env()
    assert (executor.execution_service_addr, executor.health_listen_addr) == (
        execution,
        f"127.0.0.1:{FIRST_EXECUTOR_HEALTH_PORT}",
    )
    gateway = GatewayConfig.from_env()
    assert (gateway.session_service_addr, gateway.execution_service_addr) == (session, execution)


def test_each_port_is_moved_by_the_variable_its_message_names(no_lce_env: pytest.MonkeyPatch) -> None:
    for name, value in {
        "LCE_SESSION_PORT": "20001",
        "LCE_EXECUTION_PORT": "20002",
        "LCE_EXECUTOR_HEALTH_PORT": "20010",  # the first of one port per executor
        "LCE_EXECUTORS": "3",
        "LCE_GATEWAY_PORT": "20080",
        "LCE_METRICS_LISTEN": "127.0.0.1:20090",
        "LCE_SESSION_LISTEN": "0.0.0.0:1",  # a service's own variable: make run chooses the address
    }.items():
        no_lce_env.setenv(name, value)
    config = config_from_env()
    assert planned_claims(config) == {
        ("session_service", 20001, "LCE_SESSION_PORT"),
        ("session_service metrics", 20090, "LCE_METRICS_LISTEN"),
        ("execution_service", 20002, "LCE_EXECUTION_PORT"),
        ("execution_service metrics", 20091, "LCE_METRICS_LISTEN"),
        ("executor-1 health", 20010, "LCE_EXECUTOR_HEALTH_PORT"),
        ("executor-1 metrics", 20092, "LCE_METRICS_LISTEN"),
        ("executor-2 health", 20011, "LCE_EXECUTOR_HEALTH_PORT"),
        ("executor-2 metrics", 20093, "LCE_METRICS_LISTEN"),
        ("executor-3 health", 20012, "LCE_EXECUTOR_HEALTH_PORT"),
        ("executor-3 metrics", 20094, "LCE_METRICS_LISTEN"),
        ("gateway", 20080, "LCE_GATEWAY_PORT"),
        ("gateway metrics", 20095, "LCE_METRICS_LISTEN"),
    }
    # They are make run's own: no service reads them.
    handed = {name for service in Stack(config).services for name in service.env}
    assert not handed & {"LCE_SESSION_PORT", "LCE_EXECUTION_PORT", "LCE_EXECUTOR_HEALTH_PORT", "LCE_GATEWAY_PORT"}


def test_the_data_dir_is_one_for_make_run_and_every_service(no_lce_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_lce_env.chdir(tmp_path)
    no_lce_env.setenv("LCE_DATA_DIR", "lce-data")
    config = config_from_env()
    assert config.data_dir == tmp_path / "lce-data"  # where a local redis-server keeps its files
    assert {service.env["LCE_DATA_DIR"] for service in Stack(config).services} == {str(tmp_path / "lce-data")}


@pytest.mark.parametrize("raw", ["abc", "0", "65536"])
def test_a_port_that_is_no_port_is_refused_by_name(no_lce_env: pytest.MonkeyPatch, raw: str) -> None:
    no_lce_env.setenv("LCE_EXECUTION_PORT", raw)
    with pytest.raises(ConfigError, match="LCE_EXECUTION_PORT"):
        config_from_env()


def test_a_port_held_by_another_programs_connection_is_named_with_its_variable() -> None:
    """The case of issue 14: another program's outgoing connection (without SO_REUSEADDR, as most
    clients' are) holds the port a service is about to listen on."""
    with socket.socket() as listener, socket.socket() as outgoing:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        outgoing.bind(("127.0.0.1", 0))
        outgoing.connect(listener.getsockname())
        port = outgoing.getsockname()[1]
        claim = PortClaim("127.0.0.1", port, "execution_service", "LCE_EXECUTION_PORT")
        assert problems([claim]) == [
            f"port {port} (execution_service) is taken by another program: set LCE_EXECUTION_PORT to move it"
        ]


def test_a_listening_port_is_taken() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert bind_problem(PortClaim("127.0.0.1", port, "gateway", "LCE_GATEWAY_PORT")) == (
            f"port {port} (gateway) is taken by another program: set LCE_GATEWAY_PORT to move it"
        )


def test_a_port_left_in_time_wait_by_a_previous_run_is_free() -> None:
    """Restarting `make run` at once leaves its servers' closed connections in TIME_WAIT; the
    servers bind over them (SO_REUSEADDR), so the check must not cry wolf."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC and uvicorn listen
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server's side closes first: it is the one left in TIME_WAIT
        client.recv(1)
        client.close()
    with socket.socket() as plain, pytest.raises(OSError) as raised:
        plain.bind(("127.0.0.1", port))  # the premise: the port is in TIME_WAIT
    assert raised.value.errno == errno.EADDRINUSE
    assert bind_problem(PortClaim("127.0.0.1", port, "gateway", "LCE_GATEWAY_PORT")) is None


def test_a_port_wanted_twice_is_named_with_both_variables() -> None:
    port = free_port()
    claims = [
        PortClaim("127.0.0.1", port, "session_service", "LCE_SESSION_PORT"),
        PortClaim("127.0.0.1", port, "gateway", "LCE_GATEWAY_PORT"),
    ]
    assert problems(claims) == [
        f"port {port} is wanted by session_service (LCE_SESSION_PORT) and gateway (LCE_GATEWAY_PORT): move all but one"
    ]


def test_free_ports_have_no_problem() -> None:
    claims = [PortClaim("127.0.0.1", free_port(), f"executor-{n} health", "LCE_EXECUTOR_HEALTH_PORT") for n in (1, 2)]
    assert problems(claims) == []


# --- the supervisor --------------------------------------------------------------------------


def test_backoff_doubles_from_half_a_second_to_thirty() -> None:
    backoff = Backoff()
    assert [backoff.next_delay(uptime_s=1.0) for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_backoff_starts_over_after_a_process_stayed_up() -> None:
    backoff = Backoff(BackoffPolicy(first_s=0.5, max_s=30, reset_after_s=60))
    assert [backoff.next_delay(uptime_s=5.0) for _ in range(4)] == [0.5, 1, 2, 4]
    assert backoff.next_delay(uptime_s=59.0) == 8
    assert backoff.next_delay(uptime_s=60.0) == 0.5
    assert backoff.next_delay(uptime_s=0.1) == 1


@pytest.mark.parametrize(
    ("returncode", "words"),
    [
        (1, "exited with code 1"),
        (0, "exited with code 0"),
        (-signal.SIGKILL, "was killed by SIGKILL"),
        (-signal.SIGSEGV, "was killed by SIGSEGV"),
        (-200, "was killed by signal 200"),
    ],
)
def test_an_exit_is_described_by_code_or_signal(returncode: int, words: str) -> None:
    assert describe_exit(returncode) == words


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeping_stack(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> Iterator[Stack]:
    """A planned stack whose processes are `sleep`s: the supervisor's bookkeeping without the services."""
    stack = Stack(
        StackConfig(
            executors=1,
            gateway_port=free_port(),
            session_port=free_port(),
            execution_port=free_port(),
            executor_health_ports=(free_port(),),
        )
    )
    started: list[subprocess.Popen[bytes]] = []

    def spawn(service: Service) -> None:
        service.process = subprocess.Popen(["sleep", "60"], start_new_session=True)
        service.started_at = clock()
        started.append(service.process)

    monkeypatch.setattr(stack, "spawn", spawn)
    for service in stack.services:
        stack.spawn(service)
    yield stack
    for process in started:
        process.kill()
        process.wait()


def kill(service: Service) -> int:
    assert service.process is not None
    service.process.kill()
    service.process.wait()
    return service.process.pid


def test_a_dead_process_is_restarted_alone_after_its_backoff(
    sleeping_stack: Stack, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devstack")
    supervisor = Supervisor(sleeping_stack, clock=clock)
    executor = sleeping_stack.find("executor-1")
    others = {s.name: s.process for s in sleeping_stack.services if s is not executor}

    clock.now += 12.0
    dead_pid = kill(executor)
    supervisor.tick()
    assert caplog.messages == ["executor-1 was killed by SIGKILL after 12.0 s up; restarting it in 0.5 s"]

    clock.now += 0.4
    supervisor.tick()
    assert executor.process is not None and executor.process.pid == dead_pid  # not yet

    clock.now += 0.1
    supervisor.tick()
    assert executor.process.pid != dead_pid and executor.process.poll() is None
    assert caplog.messages[-1] == f"restarted executor-1 (pid {executor.process.pid}, restart 1)"
    assert {s.name: s.process for s in sleeping_stack.services if s is not executor} == others

    # It dies again at once: the next wait is twice as long.
    clock.now += 1.0
    kill(executor)
    supervisor.tick()
    assert caplog.messages[-1] == "executor-1 was killed by SIGKILL after 1.0 s up; restarting it in 1 s"


def test_a_restart_waits_while_its_port_is_taken(
    sleeping_stack: Stack, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devstack")
    supervisor = Supervisor(sleeping_stack, clock=clock)
    session = sleeping_stack.find("session_service")
    port = sleeping_stack.config.session_port
    dead_pid = kill(session)
    supervisor.tick()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        clock.now += 0.5
        supervisor.tick()
        assert caplog.messages[-1] == (
            f"session_service not restarted: port {port} (session_service) is taken by another program: "
            "set LCE_SESSION_PORT to move it; next attempt in 1 s"
        )
        assert session.process is not None and session.process.pid == dead_pid
    clock.now += 1.0
    supervisor.tick()
    assert session.process.pid != dead_pid and session.process.poll() is None
    assert caplog.messages[-1] == f"restarted session_service (pid {session.process.pid}, restart 1)"


def is_gone(pid: int, timeout_s: float = 5.0) -> bool:
    """Whether `pid` is dead (gone, or a zombie left to whoever reaps orphans) within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def test_what_a_dead_process_leaves_in_its_group_is_killed(sleeping_stack: Stack, clock: FakeClock) -> None:
    """A SIGKILLed gateway leaves its uvicorn workers behind, holding its port: they go with it."""
    gateway = sleeping_stack.find("gateway")
    kill(gateway)
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, start_new_session=True)
    gateway.process = leader
    assert leader.stdout is not None
    with leader.stdout:
        worker = int(leader.stdout.readline())
    try:
        supervisor = Supervisor(sleeping_stack, clock=clock)
        os.kill(leader.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while leader.returncode is None and time.monotonic() < deadline:
            supervisor.tick()
            time.sleep(0.01)
        assert leader.returncode == -signal.SIGKILL
        assert is_gone(worker), "the dead gateway's worker still runs"
    finally:
        leader.kill()  # nothing once reaped
        leader.wait()
        if not is_gone(worker, timeout_s=0):
            os.kill(worker, signal.SIGKILL)
