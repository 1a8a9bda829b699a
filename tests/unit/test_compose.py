"""docker-compose.yml is kept right by construction (no Docker engine runs here): every service's
environment is checked against the variables that service really reads, peers against listen ports,
and privileges against the rule that only the executor gets any."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from execution_service.settings import ExecutionServiceConfig
from executor.settings import ExecutorConfig
from gateway.settings import GatewayConfig
from session_service.settings import SessionServiceConfig

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {
    "session_service": SessionServiceConfig,
    "execution_service": ExecutionServiceConfig,
    "executor": ExecutorConfig,
    "gateway": GatewayConfig,
}
READ_BY_EVERY_SERVICE = {"LCE_LOG_LEVEL"}
# Pools of executors besides the default one: executors too (README "Pools").
EXECUTOR_POOLS = {"executor_java"}


class RecordingEnviron(dict[str, str]):
    """os.environ that remembers which LCE_* names were asked for (libraries' own switches, such as
    pydantic-settings' PYDANTIC_SETTINGS_DEBUG, are not the deployment's configuration)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self._record(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self._record(key)
        return super().__getitem__(key)

    def _record(self, key: str) -> None:
        if key.startswith("LCE_"):
            self.asked.add(key)


def variables_read(config_class: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> set[str]:
    recorder = RecordingEnviron()
    recorder["LCE_DATA_DIR"] = str(tmp_path)
    monkeypatch.setattr(os, "environ", recorder)
    config_class.from_env()
    return recorder.asked | READ_BY_EVERY_SERVICE


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def config_of(name: str) -> Any:
    return ExecutorConfig if name in EXECUTOR_POOLS else CONFIGS[name]


def lce_services(compose: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in compose["services"].items():
        if name in CONFIGS or name in EXECUTOR_POOLS:
            yield name, service


def test_every_service_is_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*CONFIGS, *EXECUTOR_POOLS, "postgres", "redis"}


@pytest.mark.parametrize("name", sorted({*CONFIGS, *EXECUTOR_POOLS}))
def test_environment_is_what_the_service_reads(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    given = set(compose["services"][name]["environment"])
    unread = given - variables_read(config_of(name), monkeypatch, tmp_path)
    assert not unread, f"{name} is given variables it never reads: {sorted(unread)}"


def test_the_java_pool_is_the_executor_serving_java_alone(compose: dict[str, Any]) -> None:
    default, java = compose["services"]["executor"], compose["services"]["executor_java"]
    assert {key: value for key, value in java.items() if key not in ("environment", "profiles")} == {
        key: value for key, value in default.items() if key != "environment"
    }
    assert java["environment"] == default["environment"] | {
        "LCE_EXECUTOR_POOL": "java",
        "LCE_EXECUTOR_LANGUAGES": "java",
    }
    assert java["profiles"] == ["java-pool"]  # started only when asked for


def test_peers_point_at_listening_services(compose: dict[str, Any]) -> None:
    listens = {
        "session_service": compose["services"]["session_service"]["environment"]["LCE_SESSION_LISTEN"],
        "execution_service": compose["services"]["execution_service"]["environment"]["LCE_EXECUTION_LISTEN"],
    }
    for _, service in lce_services(compose):
        for variable, peer in [
            ("LCE_SESSION_SERVICE_ADDR", "session_service"),
            ("LCE_EXECUTION_SERVICE_ADDR", "execution_service"),
        ]:
            if variable in service["environment"]:
                host, port = service["environment"][variable].split(":")
                assert host == peer
                assert listens[peer].endswith(f":{port}")
                assert peer in service["depends_on"]


def test_only_the_owners_of_stores_get_their_urls(compose: dict[str, Any]) -> None:
    with_database = {n for n, s in lce_services(compose) if "LCE_DATABASE_URL" in s["environment"]}
    with_redis = {n for n, s in lce_services(compose) if "LCE_REDIS_URL" in s["environment"]}
    assert with_database == {"session_service", "execution_service"}
    # The gateway reads runs' event streams (/executions/{id}/stream); it never touches queues or counters.
    # session_service reads the executors' announcements.
    assert with_redis == {"session_service", "execution_service", "executor", "executor_java", "gateway"}


def test_only_the_executor_is_privileged_and_it_scales(compose: dict[str, Any]) -> None:
    for name, service in lce_services(compose):
        privileged = {"cap_add", "security_opt", "privileged", "volumes"} & set(service)
        assert bool(privileged) == (name == "executor" or name in EXECUTOR_POOLS), name
    executor = compose["services"]["executor"]
    assert "privileged" not in executor
    assert "ports" not in executor and "container_name" not in executor


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_each_service_has_a_health_check_and_its_own_image_target(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["healthcheck"]["test"]
    assert service["build"]["target"] == name
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"AS {name}\n" in dockerfile
    assert f'CMD ["python", "-m", "{name}"]' in dockerfile
    assert f"COPY {name} ./{name}" in dockerfile
