"""`python -m execution_service`: serves ExecutionService and ExecutorReportService until SIGTERM.

`python -m execution_service migrate` upgrades its database's schema (common/migrations.py); `current`
prints the revision it is at; `revision -m MESSAGE` writes a new migration (for developers).
"""

from __future__ import annotations

import logging
import sys

from prometheus_client import REGISTRY

from common import logs, metrics, migrations
from common.config import database_url
from common.grpc_server import serve_until_signalled, start_server
from execution_service import SERVICE_NAMES, build_service
from execution_service.migrations import HISTORY
from execution_service.reconciler import lease_recovery_bound
from execution_service.settings import ExecutionServiceConfig
from execution_service.system import SystemCollector

log = logging.getLogger("execution_service")


def main(argv: list[str]) -> int:
    logs.configure("execution_service")
    if argv:
        return migrations.main(HISTORY, argv, lambda: database_url("execution"))
    config = ExecutionServiceConfig.from_env()
    try:
        service = build_service(config)
    except migrations.SchemaError as err:
        log.error("%s", err)
        return 2
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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
