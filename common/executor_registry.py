"""Which executors are alive and what each serves: a heartbeat registry in Redis.

Every heartbeat an executor writes its announcement (`ExecutorInfo` as JSON) at
`lce:executor:<id>` with a TTL of a few heartbeats, and adds its id to the set `lce:executors`.
Redis itself expires the announcement of an executor that stopped beating (killed, cut off), so
no reader judges another machine's clock; a stopping executor withdraws it at once.

Readers (session_service's catalogue, execution_service's /system and metrics) read the set and
the announcements in two round trips, forget ids whose announcement expired, and bound what
they read: executors are trusted services, but a reader must not fall over on a huge or broken
entry.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

log = logging.getLogger(__name__)

IDS_KEY = "lce:executors"
KEY_PREFIX = "lce:executor:"
# What one read looks at, at most: far more executors than one deployment runs.
MAX_EXECUTORS = 1000
MAX_ENTRY_BYTES = 16 * 1024


@dataclass(frozen=True)
class ExecutorInfo:
    """One executor as it announces itself."""

    executor_id: str
    pool: str
    languages: dict[str, str]  # the language names it serves -> its toolchain's version
    sandbox_mode: str
    slots_total: int
    slots_busy: int
    host: str
    pid: int
    version: str  # LCE's release the executor runs
    started_at: float  # Unix seconds
    queues: tuple[str, ...] = field(default=())  # the RQ queues it listens to
    # The libraries its runs may use (executor/packages.py): language -> package -> version.
    packages: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"queues": list(self.queues)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes) -> ExecutorInfo:
        """Raises ValueError (or KeyError/TypeError) for anything that is not an announcement."""
        value: dict[str, Any] = json.loads(raw)
        languages = value["languages"]
        if not isinstance(languages, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in languages.items()
        ):
            raise ValueError("languages must map names to versions")
        packages = value.get("packages", {})
        if not isinstance(packages, dict) or not all(
            isinstance(sets, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in sets.items())
            for sets in packages.values()
        ):
            raise ValueError("packages must map languages to package versions")
        return cls(
            executor_id=str(value["executor_id"]),
            pool=str(value["pool"]),
            languages=dict(languages),
            sandbox_mode=str(value["sandbox_mode"]),
            slots_total=int(value["slots_total"]),
            slots_busy=int(value["slots_busy"]),
            host=str(value["host"]),
            pid=int(value["pid"]),
            version=str(value["version"]),
            started_at=float(value["started_at"]),
            queues=tuple(str(queue) for queue in value.get("queues", ())),
            packages={str(language): dict(sets) for language, sets in packages.items()},
        )


class ExecutorRegistry:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def announce(self, info: ExecutorInfo, ttl_s: float) -> None:
        pipeline = self.client.pipeline(transaction=False)
        pipeline.set(KEY_PREFIX + info.executor_id, info.to_json(), px=int(ttl_s * 1000))
        pipeline.sadd(IDS_KEY, info.executor_id)
        pipeline.execute()

    def withdraw(self, executor_id: str) -> None:
        pipeline = self.client.pipeline(transaction=False)
        pipeline.delete(KEY_PREFIX + executor_id)
        pipeline.srem(IDS_KEY, executor_id)
        pipeline.execute()

    def live(self) -> list[ExecutorInfo]:
        """The executors whose announcement has not expired, by id. Raises redis.RedisError."""
        ids = sorted(member.decode("utf-8", "replace") for member in self.client.srandmember(IDS_KEY, MAX_EXECUTORS))
        if not ids:
            return []
        raws = self.client.mget([KEY_PREFIX + executor_id for executor_id in ids])
        gone = [executor_id for executor_id, raw in zip(ids, raws, strict=True) if raw is None]
        if gone:
            # Its TTL ran out: the executor stopped beating. SADD on its next beat, if any, brings it back.
            self.client.srem(IDS_KEY, *gone)
        return [info for raw in raws if raw is not None and (info := _parsed(raw)) is not None]


def _parsed(raw: bytes) -> ExecutorInfo | None:
    if len(raw) > MAX_ENTRY_BYTES:
        log.warning("an executor announcement is too large; ignored", extra={"bytes": len(raw)})
        return None
    try:
        return ExecutorInfo.from_json(raw)
    except (ValueError, KeyError, TypeError) as err:
        log.warning("an executor announcement does not parse; ignored", extra={"error": repr(err)})
        return None


def versions_by_language(executors: Iterable[ExecutorInfo]) -> dict[str, tuple[str, ...]]:
    """Each served language's versions, the one most executors have first (then by version)."""
    counts: dict[str, Counter[str]] = {}
    for executor in executors:
        for language, version in executor.languages.items():
            counts.setdefault(language, Counter())[version] += 1
    return {language: _most_common_first(counter) for language, counter in counts.items()}


def packages_by_language(executors: Iterable[ExecutorInfo]) -> dict[str, dict[str, str]]:
    """Each served language's libraries: the set most executors serving it have."""
    counts: dict[str, Counter[str]] = {}
    for executor in executors:
        for language in executor.languages:
            installed = executor.packages.get(language, {})
            counts.setdefault(language, Counter())[json.dumps(installed, sort_keys=True)] += 1
    return {language: json.loads(_most_common_first(counter)[0]) for language, counter in counts.items()}


def _most_common_first(counter: Counter[str]) -> tuple[str, ...]:
    return tuple(version for version, _ in sorted(counter.items(), key=lambda item: (-item[1], item[0])))
