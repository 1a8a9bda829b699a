"""What this executor serves, and telling it while it lives (common/executor_registry.py).

At start it finds the toolchains of the languages it is to serve (LCE_EXECUTOR_LANGUAGES, else
every language) and their versions; a language named there whose toolchain is missing, or no
language at all, stops it from starting. A thread then announces it every LCE_EXECUTOR_HEARTBEAT_S
with a TTL of three beats (one lost beat is not a death), busy slots as of that beat.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import redis

from common import languages as reference
from common.config import ConfigError
from common.executor_registry import MAX_ENTRY_BYTES, ExecutorInfo, ExecutorRegistry
from common.release import VERSION

log = logging.getLogger(__name__)

UNAVAILABLE = "unavailable"  # what common.languages.detect_version answers for a missing toolchain
TTL_BEATS = 3
# An executor runs one job at a time (rq's SimpleWorker).
SLOTS = 1


def served_languages(requested: Sequence[str]) -> dict[str, str]:
    """Name -> version of the languages this executor serves. Raises ConfigError."""
    unknown = [name for name in requested if reference.by_name(name) is None]
    if unknown:
        known = ", ".join(language.name for language in reference.LANGUAGES)
        raise ConfigError(f"LCE_EXECUTOR_LANGUAGES names unknown languages {', '.join(unknown)}; known: {known}")
    names = requested or [language.name for language in reference.LANGUAGES]
    versions = {name: reference.detect_version(reference.by_name(name)) for name in names}  # type: ignore[arg-type]
    missing = [name for name, version in versions.items() if version == UNAVAILABLE]
    if requested and missing:
        raise ConfigError(f"LCE_EXECUTOR_LANGUAGES names {', '.join(missing)}, whose toolchain is not installed here")
    if missing:
        log.warning("toolchains not found; their languages are not served here", extra={"languages": missing})
    served = {name: version for name, version in versions.items() if version != UNAVAILABLE}
    if not served:
        raise ConfigError("no toolchain of any language is installed here: nothing to serve")
    return served


class Heartbeat:
    """Announces the executor every interval until stopped, then withdraws it."""

    def __init__(self, registry: ExecutorRegistry, info: ExecutorInfo, interval_s: float) -> None:
        self.registry = registry
        self.info = info
        self.interval_s = interval_s
        self._busy = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    @classmethod
    def build(
        cls,
        client: redis.Redis,
        *,
        executor_id: str,
        pool: str,
        languages: dict[str, str],
        queues: Sequence[str],
        sandbox_mode: str,
        interval_s: float,
        packages: dict[str, dict[str, str]] | None = None,
    ) -> Heartbeat:
        info = ExecutorInfo(
            executor_id=executor_id,
            pool=pool,
            languages=languages,
            sandbox_mode=sandbox_mode,
            slots_total=SLOTS,
            slots_busy=0,
            host=os.uname().nodename,
            pid=os.getpid(),
            version=VERSION,
            started_at=time.time(),
            queues=tuple(queues),
            packages={language: dict(found) for language, found in (packages or {}).items() if language in languages},
        )
        if len(info.to_json()) > MAX_ENTRY_BYTES:
            # Readers ignore a larger announcement: this executor would vanish from the registry.
            log.warning("library listing too large to announce; announced without it", extra={"limit": MAX_ENTRY_BYTES})
            info = replace(info, packages={})
        return cls(ExecutorRegistry(client), info, interval_s)

    def start(self) -> None:
        self.beat()  # announced before the first job can be taken
        self._thread.start()

    @contextmanager
    def busy(self) -> Iterator[None]:
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1

    def beat(self) -> None:
        try:
            self.registry.announce(replace(self.info, slots_busy=self._busy), TTL_BEATS * self.interval_s)
        except redis.RedisError as err:
            # The worker cannot take jobs either meanwhile; the next beat tries again.
            log.warning("could not announce this executor", extra={"error": repr(err)})

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.interval_s + 5)
        try:
            self.registry.withdraw(self.info.executor_id)
        except redis.RedisError as err:
            log.warning("could not withdraw this executor; its announcement expires", extra={"error": repr(err)})

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()
