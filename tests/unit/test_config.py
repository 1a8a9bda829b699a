"""Each service's settings class: what it reads (its own variables, each in the README's table, no other
service's secret), the reliability defaults and bounds, and wrong values refused at start by name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import ConfigError, Settings
from execution_service.settings import ExecutionServiceConfig
from executor.settings import ExecutorConfig
from gateway.settings import GatewayConfig
from lce_client.grpc import InternalClientConfig
from session_service.settings import SessionServiceConfig
from tests.conftest import REPO_ROOT
from tests.unit.test_compose import RecordingEnviron

# Each class, by the name the README's "used by" column gives it.
SERVICES: dict[str, type[Settings]] = {
    "session": SessionServiceConfig,
    "execution": ExecutionServiceConfig,
    "executor": ExecutorConfig,
    "gateway": GatewayConfig,
}
CLASSES = [*SERVICES.values(), InternalClientConfig]
# Who may hold each secret; no other class may even read it (the executor, for one, never reaches a database).
SECRETS = {
    "LCE_DATABASE_URL": {SessionServiceConfig, ExecutionServiceConfig},
    "LCE_INTERNAL_TOKEN": {SessionServiceConfig, ExecutionServiceConfig, GatewayConfig, InternalClientConfig},
    "LCE_EXECUTOR_TOKEN": {ExecutionServiceConfig, ExecutorConfig},
    "LCE_WEBHOOK_SECRET": {ExecutionServiceConfig},
}
# Read by the default of LCE_DATABASE_URL (common.config.sqlite_url), not a field of its own.
DATABASE_DEFAULT = "LCE_DATA_DIR"


def readme_rows() -> list[tuple[list[str], set[str]]]:
    """The README's configuration table: each row's variables, and the words of its "used by" column."""
    section = (REPO_ROOT / "README.md").read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for row in section.splitlines():
        if row.startswith("| `LCE_"):
            names, used_by = row.split(" | ")[:2]
            found = re.findall(r"`(LCE_\w+)`", names)
            files = [f"{name}_FILE" for name in found] if "(or `_FILE`)" in names else []
            rows.append(([*found, *files], set(re.findall(r"\w+", used_by))))
    return rows


def readme_table() -> dict[str, set[str]]:
    return {name: used_by for names, used_by in readme_rows() for name in names}


@pytest.mark.parametrize("settings", CLASSES, ids=lambda c: c.__name__)
def test_every_variable_a_class_reads_is_in_the_readme_table(settings: type[Settings]) -> None:
    table = readme_table()
    missing = [name for name in settings.variables() if name not in table]
    assert not missing, f"{settings.__name__} reads variables the README's configuration table lacks"
    service = next((label for label, cls in SERVICES.items() if cls is settings), None)
    if service:
        unlisted = [name for name in settings.variables() if not table[name] & {service, "all"}]
        assert not unlisted, f"the README does not say {service} uses these"


def test_each_service_the_readme_names_reads_the_row_s_variables() -> None:
    for names, used_by in readme_rows():
        for service in used_by & set(SERVICES):
            # A row of several variables may pair them with services (`LCE_SESSION_LISTEN` / `LCE_EXECUTION_LISTEN`).
            assert names == [DATABASE_DEFAULT] or set(names) & set(SERVICES[service].variables()), (names, service)


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_no_class_reads_another_s_secret(secret: str) -> None:
    holders = {settings for settings in CLASSES if secret in settings.variables()}
    assert holders == SECRETS[secret]


@pytest.mark.parametrize("settings", CLASSES, ids=lambda c: c.__name__)
def test_a_class_asks_the_environment_for_what_it_declares_and_nothing_else(
    settings: type[Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recorder = RecordingEnviron()
    recorder["LCE_DATA_DIR"] = str(tmp_path)
    monkeypatch.setattr(os, "environ", recorder)
    settings.from_env()
    declared = set(settings.variables())
    # Without a database URL, a database's owner asks where its SQLite file goes.
    assert recorder.asked == declared | ({DATABASE_DEFAULT} if "LCE_DATABASE_URL" in declared else set())


def test_a_wrong_value_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LCE_DATABASE_URL", "sqlite://")
    monkeypatch.setenv("LCE_LEASE_S", "1")
    with pytest.raises(ConfigError) as refused:
        ExecutionServiceConfig.from_env()
    assert str(refused.value) == "LCE_LEASE_S must be >= 2, got 1"
    monkeypatch.setenv("LCE_RECONCILE_INTERVAL_S", "often")
    with pytest.raises(ConfigError) as refused:
        ExecutionServiceConfig.from_env()
    assert str(refused.value) == (
        "LCE_LEASE_S must be >= 2, got 1; LCE_RECONCILE_INTERVAL_S must be a number, got 'often'"
    )


def test_an_empty_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LCE_GATEWAY_WORKERS", "")
    monkeypatch.setenv("LCE_AUTH", "")
    assert (GatewayConfig.from_env().workers, GatewayConfig.from_env().auth) == (1, False)


@pytest.mark.parametrize(
    ("listen", "auth", "host", "required"),
    [
        ("127.0.0.1:8080", "", "127.0.0.1", False),
        (":8080", "", "127.0.0.1", False),
        ("0.0.0.0:8080", "", "0.0.0.0", True),
        ("0.0.0.0:8080", "off", "0.0.0.0", False),
        ("127.0.0.1:8080", "on", "127.0.0.1", True),
    ],
)
def test_gateway_auth_is_on_beyond_loopback_unless_said_otherwise(
    monkeypatch: pytest.MonkeyPatch, listen: str, auth: str, host: str, required: bool
) -> None:
    monkeypatch.setenv("LCE_GATEWAY_LISTEN", listen)
    monkeypatch.setenv("LCE_AUTH", auth)
    config = GatewayConfig.from_env()
    assert (config.listen_host, config.listen_port, config.auth) == (host, 8080, required)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("LCE_GATEWAY_LISTEN", "localhost"),
        ("LCE_AUTH", "yes"),
        ("LCE_CORS_ORIGINS", "https://ide.example.com/"),
        ("LCE_CORS_ORIGINS", "*,https://ide.example.com"),
    ],
)
def test_gateway_refuses_bad_values(monkeypatch: pytest.MonkeyPatch, name: str, raw: str) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError, match=f"^{name} must"):
        GatewayConfig.from_env()


def test_executor_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LCE_EXECUTOR_LANGUAGES", "java, c,,java")
    assert ExecutorConfig.from_env().languages == ("c", "java")
    monkeypatch.setenv("LCE_EXECUTOR_POOL", "Java")
    with pytest.raises(ConfigError, match="LCE_EXECUTOR_POOL must be 1 to 63 lower-case"):
        ExecutorConfig.from_env()


@pytest.mark.parametrize(
    ("service", "name", "raw"),
    [
        ("session_service", "LCE_GRPC_ALLOW_PLAINTEXT", "maybe"),
        ("execution_service", "LCE_LEASE_S", "1"),
        ("executor", "LCE_OUTPUT_LIMIT_BYTES", "10"),
        ("gateway", "LCE_GATEWAY_WORKERS", "none"),
    ],
)
def test_a_service_with_a_wrong_value_stops_at_start_naming_it(
    service: str, name: str, raw: str, tmp_path: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LCE_")}
    env |= {"LCE_DATA_DIR": str(tmp_path), name: raw}
    started = subprocess.run(
        [sys.executable, "-m", service], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 1
    assert started.stderr.strip().splitlines()[-1].startswith(f"common.config.ConfigError: {name} must be")


# --- the reliability settings ---


def test_reliability_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("LCE_DATA_DIR", str(tmp_path))
    config = ExecutionServiceConfig.from_env()
    assert (config.lease_s, config.retry_backoff_s) == (10, (2.0, 4.0, 8.0))
    assert (config.reconcile_interval_s, config.idempotency_window_s) == (1.0, 86400)
    assert ExecutorConfig.from_env().report_retry_s == 120.0


@pytest.mark.parametrize(("raw", "parsed"), [("1,2", (1.0, 2.0)), ("0.5", (0.5,)), ("none", ())])
def test_retry_backoff_is_a_list_of_waits(monkeypatch: pytest.MonkeyPatch, raw: str, parsed: tuple[float, ...]) -> None:
    monkeypatch.setenv("LCE_RETRY_BACKOFF_S", raw)
    monkeypatch.setenv("LCE_DATABASE_URL", "sqlite://")
    assert ExecutionServiceConfig.from_env().retry_backoff_s == parsed


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("LCE_RETRY_BACKOFF_S", "2,x"),
        ("LCE_RETRY_BACKOFF_S", "-1"),
        ("LCE_LEASE_S", "1"),
        ("LCE_LEASE_S", "ten"),
        ("LCE_RECONCILE_INTERVAL_S", "0"),
        ("LCE_IDEMPOTENCY_WINDOW_S", "0"),
        ("LCE_WEBHOOK_RETRY_S", "0.05"),
    ],
)
def test_execution_service_refuses_bad_values(monkeypatch: pytest.MonkeyPatch, name: str, raw: str) -> None:
    monkeypatch.setenv("LCE_DATABASE_URL", "sqlite://")
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError, match=name):
        ExecutionServiceConfig.from_env()


@pytest.mark.parametrize("raw", ["-1", "601", "soon"])
def test_report_retry_is_bounded(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("LCE_REPORT_RETRY_S", raw)
    with pytest.raises(ConfigError, match="LCE_REPORT_RETRY_S"):
        ExecutorConfig.from_env()
