"""The machine a result was measured on: figures from different machines are not comparable."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from common.languages import LANGUAGES, detect_version

REPO_ROOT = Path(__file__).resolve().parent.parent


def describe(sandbox_mode: str, load_tool: str) -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "memory_mb": _meminfo_mb("MemTotal"),
        "kernel": platform.release(),
        "cpu_model": _cpu_model(),
        "cgroup": "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1",
        "python_service": sys.version.split()[0],
        "toolchains": {language.name: detect_version(language) for language in LANGUAGES},
        "sandbox_mode": sandbox_mode,
        "load_tool": load_tool,
        "wrk": _first_line(["wrk", "--version"]) if load_tool == "wrk" else None,
        "loadavg_start": load_average(),
        "git_commit": _first_line(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"]),
        # Other work in the tree is measured too: say what differed from the commit.
        "git_status": _lines(["git", "-C", str(REPO_ROOT), "status", "--porcelain"]),
    }


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _meminfo_mb(key: str) -> int | None:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    return None


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _first_line(argv: list[str]) -> str | None:
    lines = _lines(argv)
    return lines[0] if lines else None


def _lines(argv: list[str]) -> list[str]:
    if shutil.which(argv[0]) is None:
        return []
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip().splitlines()
