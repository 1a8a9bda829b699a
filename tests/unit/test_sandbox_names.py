"""Cgroup names of the sandboxes: each stage its own, and a leftover's slot read back from its name."""

from __future__ import annotations

import pytest

from executor.sandbox.prespawn import cgroup_name, slot_of_cgroup


def test_the_stages_of_one_slot_get_distinct_cgroups() -> None:
    assert cgroup_name(60001, 0) != cgroup_name(60001, 1)


@pytest.mark.parametrize("stage", [0, 1, 7])
def test_a_cgroup_names_its_slot(stage: int) -> None:
    assert slot_of_cgroup(cgroup_name(60001, stage)) == 60001


def test_a_cgroup_of_an_earlier_release_names_its_slot_too() -> None:
    # Executors before per-stage cgroups named them lce-<uid>: a crashed one's are swept as well.
    assert slot_of_cgroup("lce-60001") == 60001


@pytest.mark.parametrize("name", ["lce--1", "lce-60001-", "lce-x-0", "lce-", "other-60001-0", "system.slice"])
def test_other_names_belong_to_no_slot(name: str) -> None:
    assert slot_of_cgroup(name) is None
