"""`python -m session_service`: serves lce.session.v1.SessionService until SIGTERM or SIGINT."""

from __future__ import annotations

import logging

from common import logs, metrics
from common.config import SessionServiceConfig
from common.grpc_server import serve_until_signalled, start_server
from session_service import SERVICE_NAME, build_servicer

log = logging.getLogger("session_service")


def main() -> None:
    logs.configure("session_service")
    config = SessionServiceConfig.from_env()
    servicer = build_servicer(config.database_url, config.redis_url)
    try:
        metrics.serve(config.metrics_listen_addr)
        running = start_server(config.listen_addr, servicer.register, [SERVICE_NAME], security=config.grpc_security)
        log.info("started", extra={"port": running.port, "listen_addr": config.listen_addr})
        serve_until_signalled(running, name="session_service")
    finally:
        servicer.close()


if __name__ == "__main__":
    main()
