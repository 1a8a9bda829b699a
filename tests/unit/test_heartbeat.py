"""What an executor serves and announces (executor/heartbeat.py), with the real toolchains and Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from common.config import ConfigError
from common.executor_registry import ExecutorRegistry
from common.languages import by_name, detect_version
from executor.heartbeat import Heartbeat, served_languages


def test_a_configured_subset_is_served_with_its_versions() -> None:
    python, java = by_name("python"), by_name("java")
    assert python is not None and java is not None
    assert served_languages(["java", "python"]) == {"java": detect_version(java), "python": detect_version(python)}


def test_every_installed_language_is_served_by_default() -> None:
    assert set(served_languages([])) == {"python", "javascript", "c", "cpp", "go", "java", "php", "ruby"}


def test_an_unknown_language_stops_the_executor() -> None:
    with pytest.raises(ConfigError, match="unknown languages cobol"):
        served_languages(["python", "cobol"])


def one_language_heartbeat(redis_url: str, pool: str, language: str, version: str, **more: Any) -> Heartbeat:
    return Heartbeat.build(
        redis.Redis.from_url(redis_url),
        executor_id="e1",
        pool=pool,
        languages={language: version},
        queues=[f"q:{language}"],
        sandbox_mode="none",
        interval_s=60,
        **more,
    )


def test_busy_slots_are_announced_as_of_the_beat(redis_url: str) -> None:
    heartbeat = one_language_heartbeat(redis_url, "java", "java", "17.0.9")
    registry = ExecutorRegistry(redis.Redis.from_url(redis_url))
    heartbeat.beat()
    (idle,) = registry.live()
    with heartbeat.busy():
        heartbeat.beat()
        (busy,) = registry.live()
    assert (idle.slots_busy, busy.slots_busy, busy.slots_total) == (0, 1, 1)
    assert (busy.pool, busy.languages, busy.queues) == ("java", {"java": "17.0.9"}, ("q:java",))
    heartbeat.stop()
    assert registry.live() == []


def test_an_announcement_too_large_for_readers_goes_without_its_library_listing(redis_url: str) -> None:
    huge = {"javascript": {f"package-{n}": "1.0.0" for n in range(2000)}}
    heartbeat = one_language_heartbeat(redis_url, "default", "javascript", "20.20.2", packages=huge)
    heartbeat.beat()
    (announced,) = ExecutorRegistry(redis.Redis.from_url(redis_url)).live()
    assert announced.executor_id == "e1" and announced.packages == {}
    heartbeat.stop()
