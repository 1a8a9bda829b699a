"""`python -m execution_service`: serves ExecutionService and ExecutorReportService until SIGTERM."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY

from common import logs, metrics
from common.config import ExecutionServiceConfig
from common.grpc_server import serve_until_signalled, start_server
from execution_service import SERVICE_NAMES, build_service
from execution_service.reconciler import lease_recovery_bound
from execution_service.system import SystemCollector

log = logging.getLogger("execution_service")


def main() -> None:
    logs.configure("execution_service")
    config = ExecutionServiceConfig.from_env()
    service = build_service(config)
    try:
        if config.metrics_listen_addr:
            REGISTRY.register(SystemCollector(service.system))
        metrics.serve(config.metrics_listen_addr)
        running = start_server(config.listen_addr, service.register, SERVICE_NAMES, security=config.grpc_security)
        service.start_background()
        log.info("runs of a lost executor are queued again within %.0f s", lease_recovery_bound(config))
        # The change streams never end by themselves: ended first, they leave the drain only real calls.
        serve_until_signalled(running, name="execution_service", on_drain=service.changes.end_streams)
    finally:
        service.close()


if __name__ == "__main__":
    main()
