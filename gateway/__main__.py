"""`python -m gateway`: serve the REST API with uvicorn on LCE_GATEWAY_LISTEN, LCE_GATEWAY_WORKERS processes.

uvicorn gets an import-string factory so that each worker builds its own app (and gRPC
channels) after it is spawned, and a logging config rather than our already-configured root
logger, because spawned workers start with fresh logging. SIGTERM/SIGINT are uvicorn's: stop
accepting, finish in-flight requests, run the lifespan shutdown (closing the channels).

Metrics (gateway/metrics.py): every process writes its samples to a directory made fresh at each
start (gateway/samples_dir.py) before anything imports prometheus-client (it picks its multiprocess
mode on import); the workers inherit it, and this process serves /metrics at LCE_METRICS_LISTEN.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import uvicorn

from common import logs
from gateway import samples_dir
from gateway.interaction import MAX_MESSAGE_BYTES
from gateway.settings import GatewayConfig

log = logging.getLogger("gateway")

GRACEFUL_SHUTDOWN_S = 10


def logging_config() -> dict[str, Any]:
    """common.logs' JSON lines on stderr, as a dictConfig each uvicorn worker applies itself."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": logs.JsonFormatter, "service": "gateway"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": os.environ.get("LCE_LOG_LEVEL", "INFO").upper()},
        # uvicorn's loggers carry their own handlers unless told to propagate to ours.
        "loggers": {name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error")},
    }


def main() -> None:
    logs.configure("gateway")
    config = GatewayConfig.from_env()
    samples_dir.make_fresh()
    # Imported only now: prometheus-client must see the directory first.
    from gateway import metrics

    metrics.serve(config.metrics_listen_addr)
    serve(config)


def serve(config: GatewayConfig) -> None:
    log.info(
        "serving",
        extra={"host": config.listen_host, "port": config.listen_port, "workers": config.workers},
    )
    if not config.auth:
        log.warning(
            "authentication is OFF: anyone who reaches this gateway can run code (LCE_AUTH=on requires API keys)",
            extra={"host": config.listen_host},
        )
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=config.listen_host,
        port=config.listen_port,
        workers=config.workers,
        # Named rather than "auto": the C event loop and HTTP parser are what a CPU-bound gateway needs.
        loop="uvloop",
        http="gateway.request_limits:BoundedHttpToolsProtocol",
        # WebSocket messages (gateway/interaction.py) are small; compression would let a small frame inflate.
        ws_max_size=MAX_MESSAGE_BYTES,
        ws_per_message_deflate=False,
        log_config=logging_config(),
        # Access logs cost throughput; errors are logged by the app itself.
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


if __name__ == "__main__":
    main()
