"""`python -m session_service`: serves lce.session.v1.SessionService until SIGTERM or SIGINT.

`python -m session_service migrate` upgrades its database's schema (common/migrations.py); `current`
prints the revision it is at; `revision -m MESSAGE` writes a new migration (for developers).
"""

from __future__ import annotations

import logging
import sys

from common import logs, metrics, migrations
from common.config import database_url
from common.grpc_server import serve_until_signalled, start_server
from session_service import SERVICE_NAME, build_servicer
from session_service.migrations import HISTORY
from session_service.settings import SessionServiceConfig

log = logging.getLogger("session_service")


def main(argv: list[str]) -> int:
    logs.configure("session_service")
    if argv:
        return migrations.main(HISTORY, argv, lambda: database_url("session"))
    config = SessionServiceConfig.from_env()
    try:
        servicer = build_servicer(config.database_url, config.redis_url)
    except migrations.SchemaError as err:
        log.error("%s", err)
        return 2
    try:
        metrics.serve(config.metrics_listen_addr)
        running = start_server(config.listen_addr, servicer.register, [SERVICE_NAME], security=config.grpc_security)
        log.info("started", extra={"port": running.port, "listen_addr": config.listen_addr})
        serve_until_signalled(running, name="session_service")
    finally:
        servicer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
