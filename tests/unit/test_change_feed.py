"""A change stream's watcher (execution_service/change_feed.py): its caller's backlog is bounded."""

from __future__ import annotations

from execution_service.change_feed import Watcher
from lce.execution.v1.execution_pb2 import ExecutionChange


def change(n: int) -> ExecutionChange:
    return ExecutionChange(execution_id=f"e{n}")


def test_a_watcher_forwards_changes_in_order_until_ended() -> None:
    watcher = Watcher(max_unsent=4)
    for n in range(3):
        watcher.tell(change(n))
    watcher.end()
    assert [told.execution_id for told in watcher] == ["e0", "e1", "e2"]


def test_a_watcher_whose_caller_falls_too_far_behind_is_ended_not_grown() -> None:
    watcher = Watcher(max_unsent=3)
    for n in range(10):
        watcher.tell(change(n))  # never blocks the listener thread
    forwarded = [told.execution_id for told in watcher]  # ends: the stream tells its caller of the gap
    assert len(forwarded) < 3 and "e9" not in forwarded
