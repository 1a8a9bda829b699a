"""The executor's settings: every LCE_* variable it reads (README "Configuration"). No database URL and no
internal token: an executor reaches execution_service's report calls with a token of its own, nothing more."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Self

from pydantic import AfterValidator, model_validator

from common.config import (
    DEFAULT_REDIS_URL,
    REPORT_RETRY_MAX_S,
    CommaList,
    ConfigError,
    Flag,
    GrpcServerSettings,
    Label,
    Settings,
    Tokens,
    variable,
)

DEFAULT_COMPILE_CACHE_DIR = Path("/var/cache/lce/compile")
# The libraries runs may use (executor/packages.py), installed at setup; read-only for everyone else.
DEFAULT_PACKAGES_DIR = Path("/var/lib/lce/packages")
# The compile aids (executor/compile_aids.py), built at setup like the libraries.
DEFAULT_COMPILE_AIDS_DIR = Path("/var/lib/lce/compile-aids")


class PackagesSettings(Settings):
    """Where the declared libraries and the compile aids are: the executor's, and `make packages`' (which
    installs them)."""

    packages_dir: Path = variable("LCE_PACKAGES_DIR", DEFAULT_PACKAGES_DIR)
    compile_aids_dir: Path = variable("LCE_COMPILE_AIDS_DIR", DEFAULT_COMPILE_AIDS_DIR)


def packages_dir() -> Path:
    return PackagesSettings.from_env().packages_dir


def compile_aids_dir() -> Path:
    return PackagesSettings.from_env().compile_aids_dir


def _host_and_pid() -> str:
    return f"{os.uname().nodename}-{os.getpid()}"


def _sorted_set(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(names)))


class ExecutorConfig(GrpcServerSettings, PackagesSettings):
    redis_url: str = variable("LCE_REDIS_URL", DEFAULT_REDIS_URL)
    queue_name: str = variable("LCE_QUEUE_NAME", "lce-executions")
    execution_service_addr: str = variable("LCE_EXECUTION_SERVICE_ADDR", "127.0.0.1:7052")
    health_listen_addr: str = variable("LCE_EXECUTOR_HEALTH_LISTEN", "127.0.0.1:7053")
    executor_id: str = variable("LCE_EXECUTOR_ID", default_factory=_host_and_pid)
    # At most 1 MiB: a result (two streams, invalid bytes tripled as U+FFFD) must fit one gRPC message.
    output_limit_bytes: int = variable("LCE_OUTPUT_LIMIT_BYTES", 1024 * 1024, ge=1024, le=1024 * 1024)
    work_root: Path = variable("LCE_WORK_ROOT", Path("/tmp/lce-runs"))
    sandbox_mode: str = variable("LCE_SANDBOX", "auto")  # executor/sandbox/detect.py refuses an unknown one
    allow_unconfined: Flag = variable("LCE_SANDBOX_ALLOW_UNCONFINED", False)
    # How long a report (start or result) is retried while execution_service is unreachable
    # before the executor gives the job up; it takes no other job meanwhile.
    report_retry_s: float = variable("LCE_REPORT_RETRY_S", 120.0, ge=0, le=REPORT_RETRY_MAX_S)
    # The compile cache (executor/compile_cache.py): a directory only the executor's user can
    # reach, outside every work dir (sandboxes must never see it), and its size budget in MiB;
    # a budget of 0 turns the cache off.
    compile_cache_dir: Path = variable("LCE_COMPILE_CACHE_DIR", DEFAULT_COMPILE_CACHE_DIR)
    compile_cache_mb: int = variable("LCE_COMPILE_CACHE_MB", 512, ge=0)
    # Start the interpreter of the last run's language ahead, in the next execution's sandbox (sandbox/warm.py).
    warm_runtimes: Flag = variable("LCE_WARM_RUNTIMES", True)
    metrics_listen_addr: str = variable("LCE_METRICS_LISTEN", "")
    # Presented on its reports to execution_service.
    executor_tokens: Tokens = variable("LCE_EXECUTOR_TOKEN", ())
    # Its pool (a label in /system and the metrics), the languages it serves (empty: every one whose
    # toolchain it finds), and how often it announces itself (executor/heartbeat.py).
    pool: Label = variable("LCE_EXECUTOR_POOL", "default")
    languages: Annotated[CommaList, AfterValidator(_sorted_set)] = variable("LCE_EXECUTOR_LANGUAGES", ())
    heartbeat_s: float = variable("LCE_EXECUTOR_HEARTBEAT_S", 2.0, ge=0.1, le=60)

    @model_validator(mode="after")
    def _cache_outside_the_work_root(self) -> Self:
        """Every sandbox sees its own work dir: the cache must be nowhere in (or above) the work root."""
        cache, runs = self.compile_cache_dir.resolve(), self.work_root.resolve()
        if cache == runs or runs in cache.parents or cache in runs.parents:
            raise ConfigError(
                f"LCE_COMPILE_CACHE_DIR ({self.compile_cache_dir}) must be outside LCE_WORK_ROOT ({self.work_root})"
            )
        return self
