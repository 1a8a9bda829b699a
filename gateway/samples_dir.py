"""The directory where the gateway's processes write their metrics' samples (prometheus-client's
multiprocess mode, gateway/metrics.py): fresh at each start, named to prometheus-client before
anything imports it. This module must not import prometheus-client itself.

uvicorn ends a gateway stopped by SIGTERM by raising the signal again, so no cleanup of ours runs
then: each start removes the directories of gateways that are gone (their pid is in the name).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_PREFIX = "lce-gateway-metrics-"


def make_fresh() -> Path:
    """A new empty directory for this gateway, set as PROMETHEUS_MULTIPROC_DIR (its workers inherit it)."""
    for stale in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        pid = stale.name.removeprefix(_PREFIX).partition("-")[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    directory = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
    os.environ[VARIABLE] = str(directory)
    return directory


def current() -> Path | None:
    path = os.environ.get(VARIABLE)
    return Path(path) if path else None


def alive(pid: int) -> bool:
    """Whether process `pid` runs; a zombie (dead, not yet reaped by uvicorn) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    try:
        # /proc/<pid>/stat: "pid (name) state ...", the name in parentheses may hold anything.
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"
