"""The gateway's answers kept in memory: terminal ones bounded in bytes (least recently used out
first); unfinished ones only while the change feed vouches for them, and never past their TTL."""

from __future__ import annotations

from gateway.execution_cache import LiveExecutions, TerminalExecutions

RUNNING = b'{"status": "RUNNING"}'


def test_evicts_the_least_recently_used_beyond_its_bytes() -> None:
    cache = TerminalExecutions(max_bytes=30, max_entry_bytes=10)
    for name in ("a", "b", "c"):
        cache.put(name, "", name.encode() * 10)
    assert cache.get("a", "") == b"a" * 10  # now the most recently used
    cache.put("d", "", b"d" * 10)
    assert [cache.get(name, "") is not None for name in ("a", "b", "c", "d")] == [True, False, True, True]


def test_an_answer_over_the_entry_limit_is_not_kept() -> None:
    cache = TerminalExecutions(max_bytes=100, max_entry_bytes=10)
    cache.put("big", "", b"x" * 11)
    assert cache.get("big", "") is None


def test_a_kept_answer_is_never_replaced() -> None:
    cache = TerminalExecutions()
    cache.put("a", "", b"first")
    cache.put("a", "", b"second")
    assert cache.get("a", "") == b"first"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def live_cache(**kwargs: float) -> tuple[LiveExecutions, Clock]:
    clock = Clock()
    cache = LiveExecutions(clock=clock, **kwargs)  # type: ignore[arg-type]
    cache.feed_up()
    return cache, clock


def test_an_unfinished_answer_is_kept_until_its_execution_changes() -> None:
    cache, _ = live_cache()
    cache.put("a", "", RUNNING, cache.ticket())
    cache.put("b", "", RUNNING, cache.ticket())
    assert cache.get("a", "") == RUNNING
    cache.changed("a")
    assert (cache.get("a", ""), cache.get("b", "")) == (None, RUNNING)


def test_nothing_is_kept_while_the_feed_is_not_live() -> None:
    cache = LiveExecutions()
    cache.put("a", "", RUNNING, cache.ticket())
    assert cache.get("a", "") is None


def test_a_read_overlapping_a_change_of_its_execution_is_not_kept() -> None:
    cache, _ = live_cache()
    ticket = cache.ticket()
    cache.changed("a")  # announced while the read was in flight: its answer may predate the change
    cache.changed("b")
    cache.put("a", "", RUNNING, ticket)
    assert cache.get("a", "") is None
    cache.put("c", "", RUNNING, ticket)  # other executions' changes do not void it
    assert cache.get("c", "") == RUNNING


def test_a_read_overlapping_a_feed_reconnect_is_not_kept() -> None:
    cache, _ = live_cache()
    ticket = cache.ticket()
    cache.feed_down()
    cache.feed_up()  # live again, but changes in between were missed
    cache.put("a", "", RUNNING, ticket)
    assert cache.get("a", "") is None


def test_the_feed_going_down_drops_everything_kept() -> None:
    cache, _ = live_cache()
    cache.put("a", "", RUNNING, cache.ticket())
    cache.feed_down()
    assert cache.get("a", "") is None


def test_an_answer_expires_after_its_ttl_whatever_the_feed_says() -> None:
    cache, clock = live_cache(ttl_s=1.0)
    cache.put("a", "", RUNNING, cache.ticket())
    clock.now += 0.99
    assert cache.get("a", "") == RUNNING
    clock.now += 0.01
    assert cache.get("a", "") is None


def test_a_read_older_than_the_changes_remembered_is_not_kept() -> None:
    cache, _ = live_cache(max_remembered=2)
    ticket = cache.ticket()
    for name in ("a", "b", "c"):  # "a"'s change is forgotten: a read of "a" from before it cannot be told apart
        cache.changed(name)
    cache.put("a", "", RUNNING, ticket)
    assert cache.get("a", "") is None
    cache.put("d", "", RUNNING, cache.ticket())
    assert cache.get("d", "") == RUNNING


def test_the_oldest_answers_leave_beyond_the_entry_bound() -> None:
    cache, _ = live_cache(max_entries=2)
    for name in ("a", "b", "c"):
        cache.put(name, "", RUNNING, cache.ticket())
    assert [cache.get(name, "") is not None for name in ("a", "b", "c")] == [False, True, True]


def test_a_change_tells_whether_a_fresh_answer_was_kept() -> None:
    cache, clock = live_cache(ttl_s=1.0)
    cache.put("a", "", RUNNING, cache.ticket())
    cache.put("b", "", RUNNING, cache.ticket())
    clock.now += 2.0  # "b" expired: nobody has polled it for a while
    cache.put("a", "", RUNNING, cache.ticket())
    assert (cache.changed("a"), cache.changed("b"), cache.changed("c")) == (True, False, False)


def test_an_answer_is_only_for_its_tenant() -> None:
    terminal = TerminalExecutions()
    terminal.put("a", "acme", b"{}")
    assert (terminal.get("a", "acme"), terminal.get("a", "globex"), terminal.get("a", "")) == (b"{}", None, None)
    live = LiveExecutions()
    live.feed_up()
    live.put("b", "acme", RUNNING, live.ticket())
    assert (live.get("b", "acme"), live.get("b", "globex")) == (RUNNING, None)
