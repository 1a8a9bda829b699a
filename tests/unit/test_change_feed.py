"""A change stream's watcher (execution_service/change_feed.py): its caller's backlog is bounded."""

from __future__ import annotations

from execution_service.change_feed import Watcher
from lce.execution.v1.execution_pb2 import ExecutionChange


def change(n: int) -> ExecutionChange:
    return ExecutionChange(execution_id=f"e{n}")


def test_a_watcher_forwards_changes_in_order_until_ended() -> None:
    watcher = Watcher(max_unsent=4)
    for n in range(3):
        assert watcher.tell(change(n))
    watcher.end()
    assert not watcher.tell(change(3))  # nothing after the end
    assert [told.execution_id for told in watcher] == ["e0", "e1", "e2"]


def test_a_watcher_whose_caller_falls_too_far_behind_is_ended_and_told_nothing_more() -> None:
    watcher = Watcher(max_unsent=3)
    told = [watcher.tell(change(n)) for n in range(10)]  # never blocks the listener thread
    assert told == [True, True, True] + [False] * 7
    forwarded = [each.execution_id for each in watcher]  # ends: the stream tells its caller of the gap
    # Only changes from before the one that did not fit: none after a missed one.
    assert set(forwarded) <= {"e0", "e1", "e2"}
