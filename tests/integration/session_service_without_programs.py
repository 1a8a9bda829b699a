"""`python -m tests.integration.session_service_without_programs`: session_service as `python -m
session_service` runs it, but in a process where starting any program fails (an audit hook refuses
them all): proof that it runs no toolchain to learn the languages' versions."""

from __future__ import annotations

import runpy
import sys
from typing import Any

# Every way CPython starts another program.
_STARTS = frozenset({"subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.fork", "os.forkpty"})


def _refuse(event: str, args: tuple[Any, ...]) -> None:
    if event in _STARTS:
        raise RuntimeError(f"session_service must run no program; it tried {event} {str(args)[:200]}")


if __name__ == "__main__":
    sys.addaudithook(_refuse)
    runpy.run_module("session_service", run_name="__main__", alter_sys=True)
