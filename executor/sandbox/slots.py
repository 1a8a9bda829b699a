"""Slots: the uid a run executes as, unique among everything running on the host.

Several executor processes share one host, and a uid shared by two concurrent runs would let
one signal the other's processes and eat its per-uid process count. Each slot is a uid in a
fixed range guarded by a lock file; `flock` holds it for the execution and the kernel releases
it when the holder dies, so a crashed executor never leaks a slot. Executors in separate
containers must share the lock directory (a host volume) or get disjoint uid ranges.
"""

from __future__ import annotations

import fcntl
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

FIRST_UID = 60000
SLOT_COUNT = 1000
LOCK_DIR = Path("/run/lce-slots")


class NoFreeSlot(RuntimeError):
    """Every uid of the range is held by a run."""


@dataclass(frozen=True)
class Slot:
    uid: int
    lock_fd: int


class SlotPool:
    def __init__(self, lock_dir: Path = LOCK_DIR, first_uid: int = FIRST_UID, count: int = SLOT_COUNT) -> None:
        self.lock_dir = lock_dir
        self.first_uid = first_uid
        self.count = count
        # Start each process at a different place in the range so that concurrent executors
        # rarely contend for the same lock file.
        self._next = itertools.count(os.getpid() % count)

    def acquire(self) -> Slot:
        start = next(self._next)
        for offset in range(self.count):
            slot = self.try_acquire(self.first_uid + (start + offset) % self.count)
            if slot is not None:
                return slot
        raise NoFreeSlot(f"all {self.count} sandbox uids from {self.first_uid} are in use")

    def try_acquire(self, uid: int) -> Slot | None:
        """The slot of this uid if no one holds it."""
        self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return Slot(uid, fd)

    def owns(self, uid: int) -> bool:
        return self.first_uid <= uid < self.first_uid + self.count

    @staticmethod
    def release(slot: Slot) -> None:
        os.close(slot.lock_fd)  # closing the last descriptor drops the flock
