"""The work dir of one execution: a tmpfs of its own, size-capped, owned by the slot's uid.

A tmpfs per execution gives the size cap (`size=`: writes past it fail with ENOSPC, whatever
the number of files), leaves nothing behind (unmounting frees it all), and is mounted with the
mount(2) syscall directly: no `mount` process on the critical path. Its pages are charged to the
memory cgroup of the run that writes them, so a run cannot use the work dir to exceed its
memory limit either.

The root directory is 0711 root-owned (slots can reach their own dir, never list the others);
each work dir is 0700 and owned by its slot's uid. The work dir's path is derived from the slot:
holding the slot's lock means owning the path, so a leftover of a crashed executor is simply
unmounted and replaced.
"""

from __future__ import annotations

import ctypes
import errno
import os
from contextlib import suppress
from pathlib import Path

_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MNT_DETACH = 0x2
DIRECTORY_PREFIX = "slot-"
_libc = ctypes.CDLL(None, use_errno=True)


class WorkspaceError(RuntimeError):
    """The work dir could not be mounted (the executor lacks the mount capability)."""


def create(root: Path, uid: int, size_bytes: int) -> Path:
    """Mounts a fresh, empty tmpfs work dir for the slot uid under root."""
    root.mkdir(parents=True, exist_ok=True)
    os.chown(root, 0, 0)
    root.chmod(0o711)
    path = root / directory_name(uid)
    remove(path)
    path.mkdir(mode=0o700)
    options = f"size={size_bytes},mode=0700,uid={uid},gid={uid}"
    if _libc.mount(b"tmpfs", bytes(path), b"tmpfs", _MS_NOSUID | _MS_NODEV, options.encode()) != 0:
        code = ctypes.get_errno()
        path.rmdir()
        raise WorkspaceError(f"mount tmpfs on {path}: {os.strerror(code)}")
    return path


def directory_name(uid: int) -> str:
    return f"{DIRECTORY_PREFIX}{uid}"


def remove(path: Path) -> None:
    """Unmounts and deletes a work dir; a missing one is fine."""
    # A lazy unmount cannot fail on a busy mount; the sandbox holding it is dead by now anyway.
    while _libc.umount2(bytes(path), _MNT_DETACH) == 0:
        pass  # stacked mounts from earlier crashes
    code = ctypes.get_errno()
    if code not in (errno.EINVAL, errno.ENOENT):
        raise WorkspaceError(f"umount {path}: {os.strerror(code)}")
    with suppress(FileNotFoundError):
        path.rmdir()
