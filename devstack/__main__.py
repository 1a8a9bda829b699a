"""`make run`: LCE in the foreground until Ctrl-C or SIGTERM. Configure with the README's LCE_* variables;
LCE_CERTS_DIR (`make run-secure`: the files of `make certs`) turns on mTLS and tokens between every service."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from common.config import env_int
from devstack import Stack, StackConfig, redis_reachable, start_local_redis

# Handed only to the services that own those stores, never to every service.
_STORE_VARS = {"LCE_DATABASE_URL", "LCE_REDIS_URL"}
# Read here only: each service gets the files of its own from it.
_CERTS_VAR = "LCE_CERTS_DIR"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="devstack: %(message)s")
    certs = os.environ.get(_CERTS_VAR)
    config = StackConfig(
        gateway_port=env_int("LCE_GATEWAY_PORT", 8080),
        executors=env_int("LCE_EXECUTORS", 2, minimum=1),
        gateway_workers=env_int("LCE_GATEWAY_WORKERS", 2, minimum=1),
        database_url=os.environ.get("LCE_DATABASE_URL") or None,
        redis_url=os.environ.get("LCE_REDIS_URL", "redis://127.0.0.1:6379/0"),
        extra_env={k: v for k, v in os.environ.items() if k.startswith("LCE_") and k not in {*_STORE_VARS, _CERTS_VAR}},
        certs_dir=Path(certs) if certs else None,
    )
    try:
        stack = Stack(config)  # before a local Redis is started: a missing certificate stops us here
    except FileNotFoundError as err:
        logging.error("%s", err)
        return 2
    if certs:
        logging.info("mTLS and tokens between every service (certificates and tokens in %s)", certs)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    local_redis = None
    if not redis_reachable(config.redis_url):
        logging.info(
            "no Redis at %s: starting a local redis-server (data in %s)",
            config.redis_url,
            config.data_dir / "redis",
        )
        local_redis = start_local_redis(config.redis_url, config.data_dir / "redis")

    try:
        stack.start()
        logging.info("LCE is up: %s (OpenAPI at %s/docs). Ctrl-C stops it.", config.gateway_url, config.gateway_url)
        while not stop.wait(0.5):
            if crashed := stack.exited():
                logging.error("%s exited unexpectedly; stopping LCE", crashed[0].name)
                return 1
        return 0
    finally:
        logging.info("stopping")
        stack.stop()
        if local_redis is not None:
            local_redis.terminate()
            local_redis.wait(10)


if __name__ == "__main__":
    sys.exit(main())
