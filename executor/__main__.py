"""`python -m executor`: pick the confinement (executor/sandbox), then serve jobs (executor/worker.py)."""

from __future__ import annotations

import logging
import sys

import redis.exceptions

from common import logs
from common.config import ConfigError
from executor.heartbeat import served_languages
from executor.sandbox import select_launcher
from executor.settings import ExecutorConfig
from executor.worker import serve

log = logging.getLogger("executor")


def main() -> int:
    logs.configure("executor")
    if not log.isEnabledFor(logging.DEBUG):
        # rq logs four lines of its own per job, repeating what executor.jobs logs with the
        # execution id; they cost the worker a share of its CPU and show with LCE_LOG_LEVEL=DEBUG.
        # rq.worker sets its own level (INFO) when imported: it is named, not just its parent.
        for name in ("rq", "rq.worker"):
            logging.getLogger(name).setLevel(logging.WARNING)
    config = ExecutorConfig.from_env()
    try:
        languages = served_languages(config.languages)
    except ConfigError as err:
        log.critical("refusing to start", extra={"error": str(err)})
        return 2
    try:
        launcher = select_launcher(config)
    except Exception as err:  # whatever the sandbox's probe raised, the message must reach the operator
        log.critical("refusing to start", extra={"error": str(err)})
        return 2
    try:
        serve(config, launcher, languages)
    except redis.exceptions.ConnectionError as err:
        log.critical("cannot reach Redis", extra={"redis_url": config.redis_url, "error": str(err)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
