"""The sandbox's init (init.c), built once per host with the system gcc and kept by its source's hash.

It lives in a directory only root can write, outside every work dir, so no run can replace it;
each sandbox binds it read-only as its pid 1 (bwrap.py). Executors of one host share it: each
builds into a temporary file and renames it into place, so no one ever runs a partial binary.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("init.c")
DIRECTORY = Path("/var/cache/lce/sandbox-init")
_GCC = "/usr/bin/gcc"
# Static: it starts without the dynamic loader and needs nothing from the sandbox's /usr.
_FLAGS = ("-O2", "-static", "-Wall", "-Wextra")
_BUILD_TIMEOUT_S = 60


class InitUnavailable(RuntimeError):
    """The init could not be built, or where it lives is not root's alone."""


@functools.cache
def init_binary() -> Path:
    """The built init for this source, building it when no one has yet."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(b"\0".join([source, *(flag.encode() for flag in _FLAGS)])).hexdigest()[:16]
    binary = DIRECTORY / f"lce-init-{digest}"
    _make_directory()
    if not binary.exists():
        _build(binary)
    _require_safe(binary)
    return binary


def _make_directory() -> None:
    """DIRECTORY and its missing parents, 0755 whatever the umask; all of the path checked."""
    missing = [directory for directory in (DIRECTORY, *DIRECTORY.parents) if not directory.exists()]
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        directory.chmod(0o755)
    for directory in (DIRECTORY, *DIRECTORY.parents):
        _require_safe(directory)


def _build(binary: Path) -> None:
    fd, partial = tempfile.mkstemp(prefix=".build-", dir=binary.parent)
    os.close(fd)
    try:
        built = subprocess.run(
            [_GCC, *_FLAGS, "-o", partial, str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
        )
        if built.returncode != 0:
            raise InitUnavailable(f"{_GCC} could not build {SOURCE}: {built.stderr.strip()}")
        os.chmod(partial, 0o755)
        os.replace(partial, binary)
    except (OSError, subprocess.SubprocessError) as exc:
        raise InitUnavailable(f"could not build the sandbox's init: {exc}") from exc
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def _require_safe(path: Path) -> None:
    """Whoever could write it could run code as every sandbox's init; and in the userns mode, bwrap
    reaches it as the slot uid."""
    info = path.lstat()
    others_write = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if stat.S_ISLNK(info.st_mode) or info.st_uid != 0 or others_write or not info.st_mode & stat.S_IXOTH:
        raise InitUnavailable(f"{path} must be root's, writable by root only and reachable by every uid")
