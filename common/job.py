"""The job contract between execution_service (producer) and executor (consumer).

Jobs travel through RQ as JSON (never pickle: a job payload is data, not code), addressed
to the executor's function by its dotted path so the producer never imports the executor.

Each attempt of a run is its own RQ job: the first is named after the execution, later ones
"<execution id>_<attempt>" (RQ allows only letters, digits, "_" and "-" in a job id).
Enqueueing is idempotent per attempt (a second enqueue of the same attempt is refused by
RQ), and a retry never collides with the job of a failed attempt, which may still sit in
RQ's registries.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from rq.serializers import JSONSerializer

from common.config import DEFAULT_COMPILE_MEMORY_LIMIT_MB, DEFAULT_COMPILE_TIME_LIMIT_MS, REPORT_RETRY_MAX_S

JOB_FUNCTION = "executor.jobs.run_execution"
SERIALIZER = JSONSerializer

# Set-up and teardown, beside the stages' own limits and the reports, which may each wait out an outage.
_JOB_BASE_TIMEOUT_S = 60
# A suite's case beside its program: a fresh workspace and sandbox, set up and torn down on a loaded host.
_CASE_SET_UP_MS = 1000


class Encoding(StrEnum):
    """How the result carries the program's output (lce.execution.v1.Encoding)."""

    UTF8 = "utf8"  # text; bytes that are not UTF-8, and NUL, become U+FFFD
    BASE64 = "base64"  # the exact bytes


@dataclass(frozen=True)
class SourceFile:
    """A file of a program besides the language's main file (a session's `files`)."""

    name: str  # a relative path, checked by session_service: "helper.py", "lib/util.h"
    content: str


def files_to_json(files: tuple[SourceFile, ...] | list[SourceFile]) -> list[dict[str, str]]:
    return [{"name": file.name, "content": file.content} for file in files]


def files_from_json(value: list[dict[str, str]] | None) -> tuple[SourceFile, ...]:
    return tuple(SourceFile(name=file["name"], content=file["content"]) for file in value or ())


class Compare(StrEnum):
    """How a test case's expected output is compared (lce.execution.v1.CompareMode)."""

    TRIM = "trim"  # trailing whitespace of each line and trailing empty lines ignored
    EXACT = "exact"
    TOKENS = "tokens"  # whitespace-separated tokens; numbers within a tolerance when one is given


@dataclass(frozen=True)
class TestCase:
    name: str
    stdin: bytes = b""
    args: tuple[str, ...] = ()
    expected_output: str | None = None  # None: the case passes when the program completes


@dataclass(frozen=True)
class Suite:
    """A run's test cases (judge mode): one compile, then each case in a fresh sandbox."""

    cases: tuple[TestCase, ...]
    compare: Compare = Compare.TRIM
    float_tolerance: float | None = None  # with Compare.TOKENS only
    stop_on_first_failure: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": [
                {
                    "name": case.name,
                    "stdin": base64.b64encode(case.stdin).decode("ascii"),
                    "args": list(case.args),
                    "expected_output": case.expected_output,
                }
                for case in self.cases
            ],
            "compare": self.compare.value,
            "float_tolerance": self.float_tolerance,
            "stop_on_first_failure": self.stop_on_first_failure,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Suite:
        cases = tuple(
            TestCase(
                name=case["name"],
                stdin=base64.b64decode(case["stdin"]),
                args=tuple(case["args"]),
                expected_output=case["expected_output"],
            )
            for case in value["cases"]
        )
        return cls(cases, Compare(value["compare"]), value["float_tolerance"], value["stop_on_first_failure"])


def encode_output(data: bytes, encoding: Encoding) -> str:
    """A program's output (or a message in its place) as the result carries it."""
    if encoding == Encoding.BASE64:
        return base64.b64encode(data).decode("ascii")
    return as_text(data.decode("utf-8", errors="replace"))


def as_text(decoded: str) -> str:
    """Decoded output as text: NUL, which no PostgreSQL text can hold, becomes U+FFFD like bytes that
    are not UTF-8 (the base64 encoding carries the exact bytes)."""
    return decoded.replace("\0", "\ufffd")


class Lane(StrEnum):
    """A run's priority (README "Priority lanes"): executors take every interactive run before any batch run."""

    INTERACTIVE = "interactive"
    BATCH = "batch"


def queue_for(prefix: str, language: str, lane: Lane = Lane.INTERACTIVE) -> str:
    """The RQ queue of a language's runs in a lane: `<LCE_QUEUE_NAME>:<language>` for interactive runs
    (e.g. lce-executions:java, whose Redis list is rq:queue:lce-executions:java) and
    `<LCE_QUEUE_NAME>:<language>:batch` for batch ones. One queue per language, so each pool of executors
    listens to its languages' queues and scales on their length; two per language, so an executor can
    take the interactive ones first."""
    return f"{prefix}:{language}" if lane is Lane.INTERACTIVE else f"{prefix}:{language}:{lane.value}"


def job_id(execution_id: str, attempt: int) -> str:
    return execution_id if attempt <= 1 else f"{execution_id}_{attempt}"


@dataclass(frozen=True)
class ExecutionJob:
    execution_id: str
    language: str  # a name from common.languages
    source_code: str
    time_limit_ms: int
    memory_limit_mb: int
    attempt: int = 1
    compile_time_limit_ms: int = DEFAULT_COMPILE_TIME_LIMIT_MS
    compile_memory_limit_mb: int = DEFAULT_COMPILE_MEMORY_LIMIT_MB
    encoding: Encoding = Encoding.UTF8
    stdin: bytes = b""  # the program's standard input (base64 in the payload, which is JSON)
    args: tuple[str, ...] = field(default=())
    # The program's stdin stays open for what the client sends while it runs (common/run_input.py).
    interactive: bool = False
    files: tuple[SourceFile, ...] = field(default=())  # beside the main file, which holds source_code
    suite: Suite | None = None  # a test suite instead of one run (judge mode)
    lane: Lane = Lane.INTERACTIVE  # which of its language's queues it waits in

    def to_payload(self) -> dict[str, Any]:
        return asdict(self) | {
            "stdin": base64.b64encode(self.stdin).decode("ascii"),
            "args": list(self.args),
            "files": files_to_json(self.files),
            "suite": self.suite.to_json() if self.suite is not None else None,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ExecutionJob:
        # A field the payload lacks (a job queued before the field existed) takes its default.
        fields = {name: payload[name] for name in cls.__dataclass_fields__ if name in payload}
        return cls(
            **fields
            | {
                "encoding": Encoding(fields.get("encoding", Encoding.UTF8)),
                "stdin": base64.b64decode(fields.get("stdin", "")),
                "args": tuple(fields.get("args", ())),
                "files": files_from_json(fields.get("files")),
                "suite": Suite.from_json(fields["suite"]) if fields.get("suite") else None,
                "lane": Lane(fields.get("lane", Lane.INTERACTIVE)),
            }
        )

    @property
    def job_id(self) -> str:
        return job_id(self.execution_id, self.attempt)

    @property
    def job_timeout_s(self) -> int:
        """How long RQ lets the job run: a backstop only, since the lease tells whether the executor lives.
        A suite's cases may all run one after another, each to its time limit in a sandbox of its own."""
        run_ms = self.time_limit_ms
        if self.suite is not None:
            run_ms = len(self.suite.cases) * (self.time_limit_ms + _CASE_SET_UP_MS)
        stages_s = (2 * self.compile_time_limit_ms + 2 * run_ms) // 1000
        return _JOB_BASE_TIMEOUT_S + stages_s + 2 * REPORT_RETRY_MAX_S
