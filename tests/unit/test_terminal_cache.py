"""The gateway's cache of terminal execution answers: bounded in bytes, least recently used out first."""

from __future__ import annotations

from gateway.terminal_cache import TerminalExecutions


def test_evicts_the_least_recently_used_beyond_its_bytes() -> None:
    cache = TerminalExecutions(max_bytes=30, max_entry_bytes=10)
    for name in ("a", "b", "c"):
        cache.put(name, name.encode() * 10)
    assert cache.get("a") == b"a" * 10  # now the most recently used
    cache.put("d", b"d" * 10)
    assert [cache.get(name) is not None for name in ("a", "b", "c", "d")] == [True, False, True, True]


def test_an_answer_over_the_entry_limit_is_not_kept() -> None:
    cache = TerminalExecutions(max_bytes=100, max_entry_bytes=10)
    cache.put("big", b"x" * 11)
    assert cache.get("big") is None


def test_a_kept_answer_is_never_replaced() -> None:
    cache = TerminalExecutions()
    cache.put("a", b"first")
    cache.put("a", b"second")
    assert cache.get("a") == b"first"
