"""The release of LCE this process runs (pyproject's version), as /system and the executors' announcements name it."""

from __future__ import annotations

from importlib import metadata

try:
    VERSION = metadata.version("lce")
except metadata.PackageNotFoundError:  # run from a checkout that was never installed
    VERSION = "unknown"
