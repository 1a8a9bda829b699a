"""The runs-per-minute sliding window, against a real Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from common.errors import RateLimited
from execution_service.rate_limit import KEY_PREFIX, SlidingWindowLimiter


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def new_id() -> str:
    return str(uuid.uuid4())


def test_the_eleventh_run_within_a_minute_is_refused(client: redis.Redis) -> None:
    limiter = SlidingWindowLimiter(client, limit=10, window_s=60)
    session = new_id()
    for _ in range(10):
        limiter.admit(session, new_id())
    with pytest.raises(RateLimited) as refused:
        limiter.admit(session, new_id())
    # The oldest of the ten entered moments ago: it leaves the window in just under a minute.
    assert 55 <= refused.value.retry_after_s <= 60


def test_sessions_have_their_own_windows(client: redis.Redis) -> None:
    limiter = SlidingWindowLimiter(client, limit=2, window_s=60)
    busy = new_id()
    limiter.admit(busy, new_id())
    limiter.admit(busy, new_id())
    with pytest.raises(RateLimited):
        limiter.admit(busy, new_id())
    limiter.admit(new_id(), new_id())


def test_retry_after_counts_from_the_oldest_entry(client: redis.Redis) -> None:
    limiter = SlidingWindowLimiter(client, limit=2, window_s=4)
    session = new_id()
    limiter.admit(session, new_id())
    time.sleep(1.5)
    limiter.admit(session, new_id())
    with pytest.raises(RateLimited) as refused:
        limiter.admit(session, new_id())
    # The first entry leaves at 4 s, about 2.5 s from now; a fixed window would say 4.
    assert refused.value.retry_after_s == 3


def test_the_window_slides_and_refusals_are_not_counted(client: redis.Redis) -> None:
    limiter = SlidingWindowLimiter(client, limit=2, window_s=1)
    session = new_id()
    limiter.admit(session, new_id())
    limiter.admit(session, new_id())
    for _ in range(5):
        with pytest.raises(RateLimited):
            limiter.admit(session, new_id())
    time.sleep(1.1)
    limiter.admit(session, new_id())
    limiter.admit(session, new_id())


def test_the_window_key_expires(client: redis.Redis) -> None:
    limiter = SlidingWindowLimiter(client, limit=10, window_s=60)
    session = new_id()
    limiter.admit(session, new_id())
    ttl_ms = client.pttl(KEY_PREFIX + session)
    assert 0 < ttl_ms <= 60_000


def test_concurrent_admissions_never_exceed_the_limit(client: redis.Redis) -> None:
    limiter = SlidingWindowLimiter(client, limit=10, window_s=60)
    session = new_id()

    def attempt(_: int) -> bool:
        try:
            limiter.admit(session, new_id())
        except RateLimited:
            return False
        return True

    with ThreadPoolExecutor(max_workers=16) as pool:
        admitted = sum(pool.map(attempt, range(40)))
    assert admitted == 10
