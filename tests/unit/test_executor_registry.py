"""The executors' heartbeat registry (common/executor_registry.py), how session_service reads it
(session_service/toolchains.py), and the run counts of /system (execution_service/run_counts.py),
against a real Redis."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
import redis

from common.executor_registry import (
    IDS_KEY,
    KEY_PREFIX,
    MAX_ENTRY_BYTES,
    ExecutorInfo,
    ExecutorRegistry,
    packages_by_language,
    versions_by_language,
)
from execution_service.run_counts import BUCKET_S, RunCounts
from session_service.toolchains import RETRY_AFTER_FAILURE_S, LiveToolchains
from tests.conftest import RedisServer


def executor(executor_id: str, **languages: str) -> ExecutorInfo:
    return ExecutorInfo(executor_id, "default", languages, "bwrap-userns", 1, 0, "host", 7, "0.1.0", 1.5e9)


@pytest.fixture
def own_db(redis_server: RedisServer) -> Iterator[str]:
    """A Redis database of these tests' own, emptied: the session's stacks announce their executors and
    count their runs in database 0 while the tests run."""
    url = redis_server.url.rsplit("/", 1)[0] + "/12"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def registry(own_db: str) -> ExecutorRegistry:
    return ExecutorRegistry(redis.Redis.from_url(own_db))


def test_an_announcement_reads_back_as_announced(registry: ExecutorRegistry) -> None:
    announced = ExecutorInfo(
        "e1", "java", {"java": "17.0.9"}, "bwrap-root-capdrop", 1, 1, "node-3", 42, "0.1.0", 1.7e9, ("q:java",)
    )
    registry.announce(announced, ttl_s=10)
    assert registry.live() == [announced]


def test_an_executor_that_stops_beating_is_gone_after_its_ttl(registry: ExecutorRegistry) -> None:
    # A TTL long enough that a busy machine reads it before it expires.
    registry.announce(executor("short", python="3.11.2"), ttl_s=1.5)
    registry.announce(executor("long", python="3.11.2"), ttl_s=30)
    assert [info.executor_id for info in registry.live()] == ["long", "short"]
    time.sleep(1.7)
    assert [info.executor_id for info in registry.live()] == ["long"]
    assert registry.client.smembers(IDS_KEY) == {b"long"}  # the expired id is forgotten too


def test_a_withdrawn_executor_is_gone_at_once(registry: ExecutorRegistry) -> None:
    registry.announce(executor("e1", python="3.11.2"), ttl_s=30)
    registry.withdraw("e1")
    assert registry.live() == []


def test_broken_or_oversized_announcements_are_ignored(registry: ExecutorRegistry) -> None:
    registry.announce(executor("good", ruby="3.1.2"), ttl_s=30)
    for executor_id, raw in [
        ("not-json", b"{"),
        ("wrong-shape", b'{"executor_id": "x", "languages": ["python"]}'),
        ("huge", b"x" * (MAX_ENTRY_BYTES + 1)),
    ]:
        registry.client.set(KEY_PREFIX + executor_id, raw, ex=30)
        registry.client.sadd(IDS_KEY, executor_id)
    assert [info.executor_id for info in registry.live()] == ["good"]


def test_versions_most_executors_have_come_first() -> None:
    versions = versions_by_language(
        [
            executor("a", python="3.12.1", ruby="3.1.2"),
            executor("b", python="3.11.2"),
            executor("c", python="3.11.2"),
        ]
    )
    assert versions == {"python": ("3.11.2", "3.12.1"), "ruby": ("3.1.2",)}
    # A tie goes by the version's text, so every reader answers alike.
    assert versions_by_language([executor("a", go="1.22"), executor("b", go="1.21")]) == {"go": ("1.21", "1.22")}


def test_run_counts_add_up_per_window_across_replicas(own_db: str) -> None:
    now = [1_800_000_000.0]
    client = redis.Redis.from_url(own_db)
    one, other = RunCounts(client, clock=lambda: now[0]), RunCounts(client, clock=lambda: now[0])
    one.record("QUEUED")
    one.record("COMPLETED")
    other.record("QUEUED")
    now[0] -= 4 * 60  # four minutes earlier: in the 5 and 15 minute windows only
    other.record("FAILED")
    now[0] += 4 * 60
    assert one.recent() == {1: {}, 5: {}, 15: {}}  # nothing written before a flush
    one.flush()
    other.flush()
    assert one.recent() == {
        1: {"QUEUED": 2, "COMPLETED": 1},
        5: {"QUEUED": 2, "COMPLETED": 1, "FAILED": 1},
        15: {"QUEUED": 2, "COMPLETED": 1, "FAILED": 1},
    }
    now[0] += 60 + BUCKET_S  # over a minute later: out of the last minute
    assert one.recent()[1] == {}


def test_run_counts_are_kept_while_redis_is_down(own_db: str) -> None:
    down = RunCounts(redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2))
    down.record("QUEUED")
    down.flush()  # logged, kept
    down.client = redis.Redis.from_url(own_db)
    down.flush()
    assert down.recent()[1] == {"QUEUED": 1}


def test_session_service_reads_the_registry_at_most_once_a_second(registry: ExecutorRegistry) -> None:
    now = [100.0]
    toolchains = LiveToolchains(registry, clock=lambda: now[0])
    registry.announce(executor("e1", python="3.11.2"), ttl_s=30)
    assert toolchains.versions() == {"python": ("3.11.2",)}
    registry.withdraw("e1")
    now[0] += 0.5
    assert toolchains.versions() == {"python": ("3.11.2",)}  # kept: read half a second ago
    now[0] += 0.5
    assert toolchains.versions() == {}


def test_while_redis_is_down_the_last_versions_stand_and_reads_back_off(own_db: str) -> None:
    now = [100.0]
    up = ExecutorRegistry(redis.Redis.from_url(own_db))
    up.announce(executor("e1", ruby="3.1.2"), ttl_s=30)
    toolchains = LiveToolchains(up, clock=lambda: now[0])
    assert toolchains.versions() == {"ruby": ("3.1.2",)}
    toolchains.registry = ExecutorRegistry(redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2))
    now[0] += 1
    assert toolchains.versions() == {"ruby": ("3.1.2",)}  # the read failed; the last answer stands
    toolchains.registry = up
    up.announce(executor("e2", ruby="3.2.0"), ttl_s=30)
    now[0] += RETRY_AFTER_FAILURE_S - 0.1
    assert toolchains.versions() == {"ruby": ("3.1.2",)}  # no read before the back-off is over
    now[0] += 0.1
    assert toolchains.versions() == {"ruby": ("3.1.2", "3.2.0")}


def test_the_libraries_most_executors_serving_a_language_have_are_its_own(registry: ExecutorRegistry) -> None:
    numpy = {"python": {"numpy": "2.3.5"}}
    for executor_id, packages in (("a", numpy), ("b", numpy), ("c", {"python": {"numpy": "1.26.4"}})):
        info = dataclasses.replace(executor(executor_id, python="3.11.2"), packages=packages)
        registry.announce(info, ttl_s=30)
    registry.announce(executor("d", ruby="3.1.2"), ttl_s=30)
    assert packages_by_language(registry.live()) == {"python": {"numpy": "2.3.5"}, "ruby": {}}
