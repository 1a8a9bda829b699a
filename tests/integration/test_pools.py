"""Pools of executors per language, on a stack of its own: a Python executor (pool default) and a
Java-only one (pool java), on a Redis database of their own, with session_service started where no
program can run at all.

The executors' versions reach GET /languages through their heartbeats; each language's runs go to
its own queue, so the Java pool never gets a Python run; a run of a language no executor serves is
accepted and waits, visible in /system and the metrics, and runs once an executor for it starts."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from common.job import Lane, queue_for
from common.languages import by_name, detect_version
from devstack import Service, Stack
from tests.conftest import RedisServer, free_port, fresh_database
from tests.integration.conftest import TERMINAL, stack_config

pytestmark = pytest.mark.integration

QUEUE = "lce-pools"
HEARTBEAT_S = 0.5
JAVA_SLEEPER = "public class Main { public static void main(String[] a) throws Exception { Thread.sleep(3000); } }\n"


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive free ports (make run's metrics take consecutive ones)."""
    for _ in range(50):
        first = free_port()
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no consecutive free ports")


class Pools:
    def __init__(self, stack: Stack, redis_url: str, metrics_port: int) -> None:
        self.stack = stack
        self.redis_url = redis_url
        # session_service takes the first metrics port, execution_service the next.
        self.metrics_url = f"http://127.0.0.1:{metrics_port + 1}/metrics"
        self.api = httpx.Client(base_url=stack.config.gateway_url, timeout=30)

    def language_id(self, name: str) -> str:
        language = by_name(name)
        assert language is not None
        return language.id

    def post_run(self, language: str, source: str | None = None) -> str:
        body: dict[str, Any] = {"language_id": self.language_id(language)}
        if source is not None:
            body["source_code"] = source
        created = self.api.post("/code-sessions", json=body)
        assert created.status_code == 201, created.text
        accepted = self.api.post(f"/code-sessions/{created.json()['session_id']}/run")
        assert accepted.status_code == 202, accepted.text
        return str(accepted.json()["execution_id"])

    def finished(self, execution_id: str) -> dict[str, Any]:
        answer = self.api.get(f"/executions/{execution_id}", params={"wait": 30}).json()
        assert answer["status"] in TERMINAL, answer
        return answer  # type: ignore[no-any-return]

    def executor_of(self, execution_id: str) -> str:
        events = self.api.get(f"/executions/{execution_id}/events").json()["events"]
        return next(event["executor_id"] for event in events if event["type"] == "RUNNING")

    def languages(self) -> dict[str, dict[str, Any]]:
        return {language["name"]: language for language in self.api.get("/languages").json()["languages"]}

    def system(self) -> dict[str, Any]:
        answer = self.api.get("/system")
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def metric(self, name: str, **labels: str) -> float | None:
        text = httpx.get(self.metrics_url, timeout=10).text
        wanted = ",".join(f'{label}="{value}"' for label, value in sorted(labels.items()))
        for line in text.splitlines():
            match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
            if match and ",".join(sorted(match.group(1).split(","))) == wanted:
                return float(match.group(2))
        return None

    def start_executor(self, number: int, **env: str) -> Service:
        service = self.stack.executor(number, free_port(), LCE_EXECUTOR_HEARTBEAT_S=str(HEARTBEAT_S), **env)
        self.stack.services.append(service)
        self.stack.start_service(service)
        return service


def eventually(check: Callable[[], Any], timeout_s: float = 10) -> Any:
    """The first truthy answer of `check`, polled; fails after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = check()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"not so after {timeout_s} s: {answer!r}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def pools(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pools]:
    tmp: Path = tmp_path_factory.mktemp("pools")
    own_redis = redis_server.url.rsplit("/", 1)[0] + "/9"
    metrics_port = consecutive_free_ports(4)
    with fresh_database("lce_pools") as database_url:
        config = stack_config(
            tmp,
            database_url=database_url,
            redis_url=own_redis,
            LCE_QUEUE_NAME=QUEUE,
            LCE_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
            LCE_EXECUTOR_HEARTBEAT_S=str(HEARTBEAT_S),
        )
        config.executor_env = (
            {"LCE_EXECUTOR_LANGUAGES": "python"},
            {"LCE_EXECUTOR_LANGUAGES": "java", "LCE_EXECUTOR_POOL": "java"},
        )
        stack = Stack(config)
        # session_service where no program can start, and no toolchain is on PATH either.
        session_service = stack.find("session_service")
        stack.migrate(session_service)  # the schema step as a deployment runs it, before the service
        session_service.module = "tests.integration.session_service_without_programs"
        session_service.env["PATH"] = str(tmp / "empty-path")
        stack.start()
        pools = Pools(stack, own_redis, metrics_port)
        try:
            yield pools
        finally:
            pools.api.close()
            stack.stop()


def test_session_service_runs_no_toolchain_yet_reports_the_executors_versions(pools: Pools) -> None:
    languages = pools.languages()
    for name in ("python", "java"):
        version = detect_version(by_name(name))  # type: ignore[arg-type]
        assert (languages[name]["version"], languages[name]["versions"], languages[name]["available"]) == (
            version,
            [version],
            True,
        )
    for name in ("javascript", "c", "cpp", "go", "php", "ruby"):
        assert (languages[name]["version"], languages[name]["versions"], languages[name]["available"]) == (
            "unavailable",
            [],
            False,
        )
    detail = pools.api.get(f"/languages/{pools.language_id('java')}").json()
    assert (detail["available"], detail["versions"]) == (True, languages["java"]["versions"])
    assert pools.stack.find("session_service").process.poll() is None  # type: ignore[union-attr]


def test_each_pool_gets_only_its_languages_runs(pools: Pools) -> None:
    python_runs = [pools.post_run("python", f"print({n})\n") for n in range(6)]
    java_runs = [pools.post_run("java") for _ in range(2)]
    for number, execution_id in enumerate(python_runs):
        assert pools.finished(execution_id)["stdout"] == f"{number}\n"
        assert pools.executor_of(execution_id) == "executor-1"
    for execution_id in java_runs:
        assert pools.finished(execution_id)["stdout"] == "Hello World\n"
        assert pools.executor_of(execution_id) == "executor-2"


def test_system_shows_the_executors_and_the_runs_they_did(pools: Pools) -> None:
    pools.finished(pools.post_run("python", "print('counted')\n"))
    system = eventually(lambda: (s := pools.system())["runs"][0]["by_state"].get("COMPLETED") and s)
    executors = {executor["id"]: executor for executor in system["executors"]}
    assert set(executors) == {"executor-1", "executor-2"}
    python, java = executors["executor-1"], executors["executor-2"]
    python_queues = [f"{QUEUE}:python", f"{QUEUE}:python:batch"]
    assert (python["pool"], list(python["languages"]), python["queues"]) == ("default", ["python"], python_queues)
    assert (java["pool"], list(java["languages"]), java["queues"]) == (
        "java",
        ["java"],
        [f"{QUEUE}:java", f"{QUEUE}:java:batch"],
    )
    assert java["languages"]["java"] == detect_version(by_name("java"))  # type: ignore[arg-type]
    assert python["sandbox_mode"] and python["slots"]["total"] == 1
    assert [window["minutes"] for window in system["runs"]] == [1, 5, 15]
    last_minute = system["runs"][0]["by_state"]
    assert last_minute["QUEUED"] >= last_minute["COMPLETED"] >= 1
    lanes = {queue_for(QUEUE, name, lane) for name in pools.languages() for lane in Lane}
    assert {queue["name"] for queue in system["queues"]} == lanes
    assert system["services"]["execution_service"] == system["services"]["gateway"]
    assert system["services"]["executors"] == [python["version"]]


def test_a_language_no_executor_serves_waits_then_runs_when_one_starts(pools: Pools) -> None:
    ruby_queue = queue_for(QUEUE, "ruby")
    execution_id = pools.post_run("ruby", "puts 6 * 7\n")

    def waiting() -> dict[str, Any] | None:
        queue = next(q for q in pools.system()["queues"] if q["name"] == ruby_queue)
        return queue if queue["depth"] == 1 and queue["oldest_seconds"] > 1 else None

    queue = eventually(waiting)
    assert queue["language"] == "ruby"
    assert pools.api.get(f"/executions/{execution_id}").json()["status"] == "QUEUED"
    assert pools.metric("lce_queue_depth", queue=ruby_queue) == 1
    assert pools.metric("lce_queue_oldest_seconds", queue=ruby_queue) > 1  # type: ignore[operator]

    # Redis loses the job: the reconciler queues it again, on its language's queue.
    client = redis.Redis.from_url(pools.redis_url)
    client.delete(f"rq:queue:{ruby_queue}", f"rq:job:{execution_id}")
    eventually(lambda: client.lrange(f"rq:queue:{ruby_queue}", 0, -1) == [execution_id.encode()])

    ruby = pools.start_executor(3, LCE_EXECUTOR_LANGUAGES="ruby")
    try:
        assert pools.finished(execution_id)["stdout"] == "42\n"
        assert pools.languages()["ruby"]["available"]
        assert pools.metric("lce_queue_depth", queue=ruby_queue) == 0
        assert pools.metric("lce_executors_alive", pool="default", sandbox_mode=sandbox_of(pools, "executor-1")) == 2
    finally:
        pools.stack.stop_service(ruby)
        pools.stack.services.remove(ruby)
    # A stopping executor withdraws its announcement: its languages are unavailable at once.
    eventually(lambda: not pools.languages()["ruby"]["available"], timeout_s=3)


def sandbox_of(pools: Pools, executor_id: str) -> str:
    return str(next(e["sandbox_mode"] for e in pools.system()["executors"] if e["id"] == executor_id))


def test_slot_metrics_follow_a_busy_executor(pools: Pools) -> None:
    assert pools.metric("lce_executor_slots", pool="java", state="total") == 1
    assert pools.metric("lce_executors_alive", pool="java", sandbox_mode=sandbox_of(pools, "executor-2")) == 1
    execution_id = pools.post_run("java", JAVA_SLEEPER)
    eventually(lambda: pools.metric("lce_executor_slots", pool="java", state="busy") == 1)
    busy = next(e for e in pools.system()["executors"] if e["id"] == "executor-2")
    assert busy["slots"] == {"busy": 1, "total": 1}
    assert pools.finished(execution_id)["status"] == "COMPLETED"
    eventually(lambda: pools.metric("lce_executor_slots", pool="java", state="busy") == 0)
