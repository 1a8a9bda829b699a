"""`make run`'s plan of processes: what each service is handed."""

from __future__ import annotations

from devstack import Stack, StackConfig


def metrics_listen(config: StackConfig) -> dict[str, str | None]:
    return {service.name: service.env.get("LCE_METRICS_LISTEN") for service in Stack(config).services}


def test_one_metrics_address_becomes_one_port_per_process_on_the_shared_host() -> None:
    planned = metrics_listen(StackConfig(executors=2, extra_env={"LCE_METRICS_LISTEN": "127.0.0.1:9464"}))
    assert planned == {
        "session_service": "127.0.0.1:9464",
        "execution_service": "127.0.0.1:9465",
        "executor-1": "127.0.0.1:9466",
        "executor-2": "127.0.0.1:9467",
        "gateway": None,  # it serves no metrics
    }


def test_port_zero_lets_each_process_pick_its_own() -> None:
    planned = metrics_listen(StackConfig(executors=1, extra_env={"LCE_METRICS_LISTEN": "127.0.0.1:0"}))
    assert {planned[name] for name in ("session_service", "execution_service", "executor-1")} == {"127.0.0.1:0"}


def test_no_metrics_address_serves_none() -> None:
    assert set(metrics_listen(StackConfig())) == {
        "session_service",
        "execution_service",
        "executor-1",
        "executor-2",
        "gateway",
    }
    assert set(metrics_listen(StackConfig()).values()) == {None}
