"""`python -m executor`: pick the confinement, then serve jobs (executor/worker.py)."""

from __future__ import annotations

import importlib
import logging
import sys

import redis.exceptions

from common import logs
from common.config import ExecutorConfig
from executor.launcher import Launcher
from executor.process import UnconfinedLauncher
from executor.worker import serve

log = logging.getLogger("executor")


class RefusedToStart(Exception):
    """No confinement is available and the development override is off."""


def choose_launcher(config: ExecutorConfig) -> Launcher:
    sandbox = _sandbox_module()
    if sandbox is not None and hasattr(sandbox, "select_launcher"):
        launcher: Launcher = sandbox.select_launcher(config)
    elif config.allow_unconfined or config.sandbox_mode == "none":
        launcher = UnconfinedLauncher(config.work_root)
    else:
        raise RefusedToStart(
            "no sandbox is available to confine untrusted code; set LCE_SANDBOX_ALLOW_UNCONFINED=1 "
            "(development only) to run programs unconfined"
        )
    if launcher.mode == "none":
        log.warning(
            "RUNNING UNCONFINED: user programs run as plain processes of this service, with no "
            "network, file system, memory or process isolation. Development only; never expose this "
            "executor to untrusted code."
        )
    return launcher


def _sandbox_module() -> object | None:
    try:
        return importlib.import_module("executor.sandbox")
    except ModuleNotFoundError as err:
        if err.name != "executor.sandbox":
            raise
        return None


def main() -> int:
    logs.configure("executor")
    config = ExecutorConfig.from_env()
    try:
        launcher = choose_launcher(config)
    except Exception as err:  # whatever the sandbox's probe raised, the message must reach the operator
        log.critical("refusing to start", extra={"error": str(err)})
        return 2
    try:
        serve(config, launcher)
    except redis.exceptions.ConnectionError as err:
        log.critical("cannot reach Redis", extra={"redis_url": config.redis_url, "error": str(err)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
