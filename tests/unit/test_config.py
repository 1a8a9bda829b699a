"""The reliability settings: defaults, parsing and validation of their LCE_* variables."""

from __future__ import annotations

import pytest

from common.config import ConfigError, ExecutionServiceConfig, ExecutorConfig


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
