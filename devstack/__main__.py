"""`make run`: LCE in the foreground until Ctrl-C or SIGTERM, each process restarted when it dies.
Configure with the README's LCE_* variables; LCE_CERTS_DIR (`make run-secure`: the files of `make certs`)
turns on mTLS and tokens between every service."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

from common.config import ConfigError, env_int
from devstack import FIRST_EXECUTOR_HEALTH_PORT, Stack, StackConfig, redis_reachable, start_local_redis
from devstack.ports import PortClaim, problems, service_claims
from devstack.supervisor import Supervisor

# Handed only to the services that own those stores, never to every service.
_STORE_VARS = {"LCE_DATABASE_URL", "LCE_REDIS_URL"}
# Read here only. LCE_CERTS_DIR: each service gets the files of its own from it; LCE_DATA_DIR is handed
# on resolved, so that the services and a local redis-server agree on it.
_OWN_VARS = {
    "LCE_CERTS_DIR",
    "LCE_DATA_DIR",
    "LCE_EXECUTORS",
    "LCE_GATEWAY_PORT",
    "LCE_SESSION_PORT",
    "LCE_EXECUTION_PORT",
    "LCE_EXECUTOR_HEALTH_PORT",
}
# Listen addresses are chosen here, from the port variables that replace these (which are not handed on).
_OVERRIDDEN = {
    "LCE_SESSION_LISTEN": "LCE_SESSION_PORT",
    "LCE_EXECUTION_LISTEN": "LCE_EXECUTION_PORT",
    "LCE_EXECUTOR_HEALTH_LISTEN": "LCE_EXECUTOR_HEALTH_PORT",
    "LCE_GATEWAY_LISTEN": "LCE_GATEWAY_PORT",
}
_DEFAULTS = StackConfig()


def config_from_env() -> StackConfig:
    certs = os.environ.get("LCE_CERTS_DIR")
    executors = env_int("LCE_EXECUTORS", _DEFAULTS.executors, minimum=1)
    first_health_port = _port("LCE_EXECUTOR_HEALTH_PORT", FIRST_EXECUTOR_HEALTH_PORT)
    return StackConfig(
        gateway_port=_port("LCE_GATEWAY_PORT", _DEFAULTS.gateway_port),
        session_port=_port("LCE_SESSION_PORT", _DEFAULTS.session_port),
        execution_port=_port("LCE_EXECUTION_PORT", _DEFAULTS.execution_port),
        executor_health_ports=tuple(range(first_health_port, first_health_port + executors)),
        executors=executors,
        gateway_workers=env_int("LCE_GATEWAY_WORKERS", _DEFAULTS.gateway_workers, minimum=1),
        database_url=os.environ.get("LCE_DATABASE_URL") or None,
        redis_url=os.environ.get("LCE_REDIS_URL", _DEFAULTS.redis_url),
        data_dir=Path(os.environ.get("LCE_DATA_DIR") or _DEFAULTS.data_dir).resolve(),
        extra_env={
            k: v
            for k, v in os.environ.items()
            if k.startswith("LCE_") and k not in {*_STORE_VARS, *_OWN_VARS, *_OVERRIDDEN}
        },
        certs_dir=Path(certs) if certs else None,
    )


def _port(name: str, default: int) -> int:
    return env_int(name, default, minimum=1, maximum=65535)


def redis_claim(url: str) -> PortClaim:
    """The port of the redis-server we start when none answers at LCE_REDIS_URL."""
    parsed = urlparse(url)
    return PortClaim(parsed.hostname or "127.0.0.1", parsed.port or 6379, "redis-server", "LCE_REDIS_URL")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="devstack: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per health probe says nothing
    try:
        config = config_from_env()
        stack = Stack(config)  # before anything starts: a missing certificate stops us here
    except (ConfigError, FileNotFoundError) as err:
        logging.error("%s", err)
        return 2
    for listen, port_variable in _OVERRIDDEN.items():
        if listen in os.environ:
            logging.warning("%s is not used by make run: set %s to move that port", listen, port_variable)

    claims = [claim for service in stack.services for claim in service_claims(service)]
    need_redis = not redis_reachable(config.redis_url)
    if need_redis:
        claims.append(redis_claim(config.redis_url))
    if taken := problems(claims):
        for line in taken:
            logging.error("%s", line)
        return 2

    if config.certs_dir:
        logging.info("mTLS and tokens between every service (certificates and tokens in %s)", config.certs_dir)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    local_redis = None
    try:
        if need_redis:
            logging.info(
                "no Redis at %s: starting a local redis-server (data in %s)",
                config.redis_url,
                config.data_dir / "redis",
            )
            local_redis = start_local_redis(config.redis_url, config.data_dir / "redis")
        stack.start()
        logging.info("LCE is up: %s (OpenAPI at %s/docs). Ctrl-C stops it.", config.gateway_url, config.gateway_url)
        Supervisor(stack).run(stop)
        return 0
    except (RuntimeError, TimeoutError) as err:  # a service that cannot start says why in its own log above
        logging.error("LCE did not start: %s", err)
        return 1
    finally:
        logging.info("stopping")
        stack.stop()
        if local_redis is not None:
            local_redis.terminate()
            local_redis.wait(10)


if __name__ == "__main__":
    sys.exit(main())
