"""The API's JSON answers as typed values (README "The REST API"; gateway/schemas.py documents each shape).

Each `from_json` takes the fields it knows and ignores the rest, since the API adds fields over
time; an `Execution` keeps its whole JSON as `raw`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"COMPLETED", "FAILED", "TIMEOUT"})


@dataclass(frozen=True)
class Language:
    id: str
    name: str
    runtime: str
    version: str
    default_time_limit_ms: int
    default_memory_mb: int
    template_code: str | None = None  # in a language's detail only (`Client.language`)
    file_name: str | None = None  # the main file's name, e.g. main.py: in the detail only

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Language:
        return cls(
            id=data["id"],
            name=data["name"],
            runtime=data["runtime"],
            version=data["version"],
            default_time_limit_ms=data["default_time_limit_ms"],
            default_memory_mb=data["default_memory_mb"],
            template_code=data.get("template_code"),
            file_name=data.get("file_name"),
        )


@dataclass(frozen=True)
class SourceFile:
    """A program's file beside its main one: a relative path (lib/util.py) and its text."""

    name: str
    content: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "content": self.content}


@dataclass(frozen=True)
class SessionState:
    """What creating, saving or closing a session answers."""

    session_id: str
    status: str  # ACTIVE or INACTIVE
    updated_at: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionState:
        return cls(session_id=data["session_id"], status=data["status"], updated_at=data.get("updated_at"))


@dataclass(frozen=True)
class Session:
    session_id: str
    status: str
    language_id: str
    language_name: str
    source_code: str
    files: tuple[SourceFile, ...]
    runtime: str
    version: str
    created_at: str | None
    updated_at: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Session:
        return cls(
            session_id=data["session_id"],
            status=data["status"],
            language_id=data["language_id"],
            language_name=data["language_name"],
            source_code=data["source_code"],
            files=tuple(SourceFile(f["name"], f["content"]) for f in data.get("files") or ()),
            runtime=data["runtime"],
            version=data["version"],
            created_at=data.get("created_at"),
            updated_at=data.get("updated_at"),
        )


@dataclass(frozen=True)
class TestCase:
    """A case of a test suite (judge mode): its input and, when given, the output it must print."""

    __test__ = False  # not a pytest class

    stdin: str | None = None
    expected_output: str | None = None
    name: str | None = None
    args: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"stdin": self.stdin, "expected_output": self.expected_output, "name": self.name}
        if self.args is not None:
            body["args"] = list(self.args)
        return {key: value for key, value in body.items() if value is not None}


@dataclass(frozen=True)
class TestResult:
    __test__ = False

    name: str
    status: str  # COMPLETED, FAILED, TIMEOUT or SKIPPED
    passed: bool
    reason: str | None
    stdout: str
    stderr: str
    exit_code: int | None
    execution_time_ms: int
    memory_kb: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestResult:
        return cls(
            name=data["name"],
            status=data["status"],
            passed=data["passed"],
            reason=data.get("reason"),
            stdout=data.get("stdout", ""),
            stderr=data.get("stderr", ""),
            exit_code=data.get("exit_code"),
            execution_time_ms=data.get("execution_time_ms", 0),
            memory_kb=data.get("memory_kb", 0),
        )


@dataclass(frozen=True)
class Execution:
    """A run. While QUEUED or RUNNING only its id, status and the fields of its creation are set; the
    result (output, exit code, time, memory, reason, tests) once it is terminal."""

    execution_id: str
    status: str  # QUEUED, RUNNING, COMPLETED, FAILED or TIMEOUT
    session_id: str | None = None
    language: str | None = None
    stdout: str | None = None  # in the run's encoding (base64: of the exact bytes)
    stderr: str | None = None
    exit_code: int | None = None
    execution_time_ms: int | None = None
    memory_kb: int | None = None
    reason: str | None = None  # why it failed: compile_error, signal:SIGSEGV, time_limit_exceeded:wall, ...
    warnings: tuple[str, ...] = ()
    encoding: str | None = None
    interactive: bool = False
    tests: tuple[TestResult, ...] | None = None
    tests_passed: int | None = None
    tests_total: int | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Execution:
        tests = data.get("tests")
        return cls(
            execution_id=data["execution_id"],
            status=data["status"],
            session_id=data.get("session_id"),
            language=data.get("language"),
            stdout=data.get("stdout"),
            stderr=data.get("stderr"),
            exit_code=data.get("exit_code"),
            execution_time_ms=data.get("execution_time_ms"),
            memory_kb=data.get("memory_kb"),
            reason=data.get("reason"),
            warnings=tuple(data.get("warnings") or ()),
            encoding=data.get("encoding"),
            interactive=bool(data.get("interactive")),
            tests=tuple(TestResult.from_json(case) for case in tests) if tests is not None else None,
            tests_passed=data.get("tests_passed"),
            tests_total=data.get("tests_total"),
            created_at=data.get("created_at"),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            raw=data,
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def output(self, stream: str = "stdout") -> bytes:
        """stdout or stderr as bytes, whatever the run's encoding."""
        text = (self.stdout if stream == "stdout" else self.stderr) or ""
        return base64.b64decode(text) if self.encoding == "base64" else text.encode()


@dataclass(frozen=True)
class ExecutionSummary:
    """A run as a session's list of executions shows it."""

    execution_id: str
    status: str
    execution_time_ms: int | None
    exit_code: int | None
    created_at: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExecutionSummary:
        return cls(
            execution_id=data["execution_id"],
            status=data["status"],
            execution_time_ms=data.get("execution_time_ms"),
            exit_code=data.get("exit_code"),
            created_at=data.get("created_at"),
        )


@dataclass(frozen=True)
class Event:
    """One event of a run, from its stream or its WebSocket: `kind` status ({status, attempt, reason?}),
    stdout or stderr ({attempt, offset, data}), test ({index, name, status, passed, reason}) or result
    (the final execution); error (WebSocket only: {status, message}, a message the server refused)."""

    kind: str
    id: str
    fields: dict[str, Any]
    execution: Execution | None = None  # the result's

    @property
    def status(self) -> str | None:
        """The run's status that a status or result event tells."""
        if self.execution is not None:
            return self.execution.status
        return self.fields.get("status") if self.kind == "status" else None

    def output(self, encoding: str | None) -> bytes:
        """A stdout or stderr chunk's bytes, in a run of that encoding."""
        data: str = self.fields.get("data", "")
        return base64.b64decode(data) if encoding == "base64" else data.encode()
