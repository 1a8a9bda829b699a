"""Pydantic models of the HTTP shapes, for the OpenAPI document only.

Handlers build plain dicts (gateway/translate.py) and parse bodies themselves: FastAPI's
validation would accept "5" for an integer, answer 422 and read bodies without a size cap.
tests/contract/test_gateway.py checks real responses against these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema

ExecutionStatus = Literal["QUEUED", "RUNNING", "COMPLETED", "FAILED", "TIMEOUT"]
SessionStatus = Literal["ACTIVE", "INACTIVE"]


class Error(BaseModel):
    error: str


class RateLimited(BaseModel):
    error: Literal["Rate limit exceeded"]
    retryAfter: int = Field(description="seconds; also sent as the Retry-After header")
    detail: str | None = Field(None, description="which abuse rule refused the run")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    error: str | None = Field(None, description="present when a backend is down")
    services: dict[str, str] = Field(description="each backend's gRPC health status")


class LanguageSummary(BaseModel):
    id: str
    name: str
    runtime: str
    version: str = Field(
        description="the toolchain version most live executors serving the language have; 'unavailable' when none does"
    )
    versions: list[str] = Field(description="every version live executors serve it with, the most common first")
    available: bool = Field(description="a live executor serves it; a run of it is accepted and queued either way")
    default_time_limit_ms: int
    default_memory_mb: int


class Language(LanguageSummary):
    template_code: str
    file_name: str
    packages: dict[str, str] = Field(
        description="the libraries its runs may use, name -> version (README: Libraries in the sandbox)"
    )


class LanguageList(BaseModel):
    total: int
    languages: list[LanguageSummary]


class SourceFile(BaseModel):
    name: str = Field(
        description="a relative path of segments of ASCII letters, digits, '_', '.' and '-' separated by '/', "
        "without '.' or '..' segments; at most 255 characters; never the language's main file (file_name)"
    )
    content: str = Field(description="no NUL characters")


_FILES = (
    "the program's files besides the main file (source_code), replaced as a whole: at most 32; source_code "
    "and every file's content together at most 1 MiB of UTF-8 (413 above)"
)
# Written out, not a $ref: request_body() publishes a body's schema on its own, without its $defs.
FileList = Annotated[
    list[SourceFile] | None,
    WithJsonSchema(
        {"anyOf": [{"type": "array", "maxItems": 32, "items": SourceFile.model_json_schema()}, {"type": "null"}]}
    ),
]


class CreateSessionBody(BaseModel):
    language_id: str
    source_code: str | None = Field(None, description="initial code; the language's template when absent")
    files: FileList = Field(None, description=_FILES + "; none when absent")


class UpdateSourceBody(BaseModel):
    """At least one of source_code and files; what is absent stays as it is."""

    source_code: str | None = Field(None, description="at most 1 MiB of UTF-8")
    files: FileList = Field(None, description=_FILES + "; [] removes them all")


Encoding = Literal["utf8", "base64"]
_ENCODING = (
    "how the result carries stdout and stderr: utf8 (bytes that are not UTF-8 become U+FFFD) or base64 "
    "(RFC 4648, of the exact bytes)"
)


class TestCaseBody(BaseModel):
    name: str | None = Field(None, description='shown in the result; "case <n>" when absent')
    stdin: str | None = Field(None, description="as a run's stdin")
    args: list[str] | None = Field(None, description="as a run's args")
    expected_output: str | None = Field(
        None, description="compared with stdout; absent: the case passes when it completes"
    )


# Written out, not a $ref: request_body() publishes a body's schema on its own, without its $defs.
TestCaseList = Annotated[
    list[TestCaseBody] | None,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "minItems": 1, "maxItems": 100, "items": TestCaseBody.model_json_schema()},
                {"type": "null"},
            ]
        }
    ),
]
Compare = Literal["trim", "exact", "tokens"]
Priority = Literal["interactive", "batch"]


class RunBody(BaseModel):
    time_limit_ms: int | None = Field(None, ge=100, le=60000, description="the language's default when absent")
    memory_limit_mb: int | None = Field(None, ge=32, le=2048, description="the language's default when absent")
    compile_time_limit_ms: int | None = Field(
        None, ge=100, description="CPU time of the compile stage; at most, and by default, LCE_COMPILE_TIME_LIMIT_MS"
    )
    compile_memory_limit_mb: int | None = Field(
        None, ge=32, description="memory of the compile stage; at most, and by default, LCE_COMPILE_MEMORY_LIMIT_MB"
    )
    encoding: Encoding = Field("utf8", description=_ENCODING + "; with base64, stdin is base64 too")
    stdin: str | None = Field(
        None, description="fed to the program's standard input (never to a compiler); at most 1 MiB (413 above)"
    )
    args: list[str] | None = Field(
        None,
        max_length=64,
        description="the program's arguments after its name, exactly as given (never through a shell): "
        "at most 64, each at most 4 KiB of UTF-8, no NUL",
    )
    interactive: bool = Field(
        False,
        description="keep the program's stdin open, after `stdin`, for what a client sends over "
        "GET /executions/{id}/interact (a WebSocket) while it runs; the time limit counts from the start, "
        "waiting included. Never retried once started: losing its executor ends it FAILED internal_error",
    )
    tests: TestCaseList = Field(
        None,
        description="a test suite (judge mode): the source is compiled once, each case runs in a fresh sandbox "
        "with the run's limits; not with stdin, args or interactive. The cases' stdin and expected output "
        "are at most 4 MiB in all (413 above)",
    )
    compare: Compare = Field(
        "trim",
        description="with tests: trim (trailing whitespace of each line and trailing empty lines ignored), exact, "
        "or tokens (whitespace-separated tokens)",
    )
    float_tolerance: float | None = Field(
        None, ge=0, description="with compare tokens: numbers equal within this absolute or relative tolerance"
    )
    stop_on_first_failure: bool = Field(False, description="with tests: the cases after the first failure are SKIPPED")
    callback_url: str | None = Field(
        None,
        max_length=2048,
        description="when the run ends, its JSON (as GET /executions/{id}) is POSTed here, signed (README Webhooks); "
        "https, or http where LCE_CALLBACK_ALLOW admits it; loopback, private and metadata addresses are refused",
    )
    priority: Priority | None = Field(
        None,
        description="the run's lane: executors take every interactive run before any batch run. By default batch "
        "with tests, interactive otherwise; an API key may allow batch only (400 for interactive then)",
    )


class SessionState(BaseModel):
    session_id: str
    status: SessionStatus
    updated_at: str | None


class Session(BaseModel):
    session_id: str
    status: SessionStatus
    language_id: str
    language_name: str
    source_code: str
    files: list[SourceFile] = Field(description="in the order they were saved; [] when none")
    runtime: str
    version: str
    created_at: str | None
    updated_at: str | None


_WARNINGS = (
    "advice about the source, e.g. a loop that may never end; never a reason to refuse the run. The executor "
    "works it out as part of the run: empty until the run ends"
)


class ExecutionCreated(BaseModel):
    execution_id: str
    status: Literal["QUEUED"]
    warnings: list[str] = Field(description=_WARNINGS)


class ExecutionSummary(BaseModel):
    execution_id: str
    status: ExecutionStatus
    execution_time_ms: int | None = Field(description="null until the run is over")
    exit_code: int | None = Field(description="null until the run is over, or when killed by a signal")
    created_at: str | None


class ExecutionList(BaseModel):
    session_id: str
    executions: list[ExecutionSummary]


class FoundExecution(ExecutionSummary):
    session_id: str
    language: str
    attempt: int
    reason: str | None = Field(description="null until the run is over, and for a run that completed")
    finished_at: str | None


class FoundExecutions(BaseModel):
    executions: list[FoundExecution]
    next_page_token: str | None = Field(description="pass as page_token for the next page; null on the last")


class ExecutionRetried(BaseModel):
    execution_id: str
    status: Literal["QUEUED"]
    attempt: int = Field(description="the new attempt's number")


class Stage(BaseModel):
    name: str
    cpu_time_ms: int
    wall_time_ms: int
    memory_kb: int
    exit_code: int | None
    signal: str | None


class TestCaseResult(BaseModel):
    name: str
    status: Literal["COMPLETED", "FAILED", "TIMEOUT", "SKIPPED"]
    reason: str | None
    passed: bool
    stdout: str = Field(description="at most 8 KiB, in the run's encoding")
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    exit_code: int | None
    execution_time_ms: int
    memory_kb: int


class Execution(BaseModel):
    """While QUEUED or RUNNING only the id, status, session, language and timestamps; the rest once terminal."""

    execution_id: str
    status: ExecutionStatus
    session_id: str
    language: str
    created_at: str | None
    started_at: str | None
    stdout: str | None = None
    stderr: str | None = None
    execution_time_ms: int | None = None
    exit_code: int | None = None
    reason: str | None = Field(
        None,
        description="compile_error, compile_time_limit_exceeded, compile_memory_limit_exceeded, runtime_error, "
        "signal:SIGSEGV, time_limit_exceeded:cpu, ...",
    )
    stdout_truncated: bool | None = None
    stderr_truncated: bool | None = None
    memory_kb: int | None = None
    sandbox: str | None = None
    stages: list[Stage] | None = None
    finished_at: str | None = None
    time_limit_ms: int | None = None
    memory_limit_mb: int | None = None
    compile_time_limit_ms: int | None = None
    compile_memory_limit_mb: int | None = None
    encoding: Encoding | None = Field(None, description=_ENCODING)
    warnings: list[str] = Field(description=_WARNINGS)
    interactive: bool = Field(False, description="created with interactive: true (GET /executions/{id}/interact)")
    priority: Priority = Field("interactive", description="its lane (README Priority lanes)")
    tests: list[TestCaseResult] | None = Field(None, description="a test suite's cases, in request order, once it ends")
    tests_passed: int | None = None
    tests_total: int | None = None


class ApiKey(BaseModel):
    id: str
    tenant: str
    name: str
    admin: bool
    runs_per_minute: int
    concurrent_runs: int
    max_time_limit_ms: int
    max_memory_limit_mb: int
    max_priority: Priority
    created_at: str
    revoked_at: str | None


class KeyList(BaseModel):
    keys: list[ApiKey]


class QueueState(BaseModel):
    name: str = Field(
        description="the RQ queue, <LCE_QUEUE_NAME>:<language> (interactive) or <LCE_QUEUE_NAME>:<language>:batch; "
        "its Redis list is rq:queue:<name>"
    )
    language: str
    lane: Priority
    depth: int = Field(description="runs waiting")
    oldest_seconds: float = Field(description="how long the run at its head has waited; 0 when empty")


class ExecutorSlots(BaseModel):
    busy: int
    total: int


class ExecutorState(BaseModel):
    id: str
    pool: str
    languages: dict[str, str] = Field(description="the languages it serves -> its toolchain's version")
    sandbox_mode: str
    slots: ExecutorSlots = Field(description="busy as of its last heartbeat")
    queues: list[str]
    host: str
    pid: int
    version: str
    started_at: str


class RunCountWindow(BaseModel):
    minutes: int
    by_state: dict[str, int] = Field(
        description="runs that reached each state in the window: QUEUED (accepted), RETRIED, RUNNING, COMPLETED, "
        "FAILED, TIMEOUT"
    )


class ServiceVersions(BaseModel):
    gateway: str
    execution_service: str
    executors: list[str] = Field(description="the releases live executors run")


class System(BaseModel):
    queues: list[QueueState]
    queued: int = Field(description="runs waiting in every queue")
    oldest_queued_seconds: float
    executors: list[ExecutorState] = Field(description="the live executors (announced within their TTL)")
    runs: list[RunCountWindow] = Field(description="the last 1, 5 and 15 minutes")
    services: ServiceVersions


class ExecutionEvent(BaseModel):
    type: Literal["QUEUED", "RUNNING", "RETRIED", "COMPLETED", "FAILED", "TIMEOUT"]
    at: str = Field(description="ISO-8601 UTC with milliseconds, e.g. 2026-01-21T10:00:00.000Z")
    attempt: int | None = Field(None, description="RUNNING: the attempt started; RETRIED: the attempt that failed")
    executor_id: str | None = None
    reason: str | None = Field(None, description="RETRIED: why the attempt failed; terminal: the result's reason")


class ExecutionEvents(BaseModel):
    execution_id: str
    events: list[ExecutionEvent] = Field(description="oldest first")


WAIT_PARAMETER: dict[str, Any] = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "seconds (0 < N <= 30) to wait for the run to end: the answer comes as soon as it is "
    "terminal, or after N seconds with its state then; pushed to the gateway, never polled",
    "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 30},
}


def request_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """openapi_extra documenting a JSON body the handler parses itself."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of a route."""
    descriptions = {
        400: "malformed JSON, a wrong type, a malformed id or an out-of-range value",
        401: "no API key, or an unknown or revoked one (where API keys are on: LCE_AUTH)",
        403: "an admin endpoint, called with a key that is not an admin's",
        404: "unknown id, or another tenant's",
        409: "the session is closed, or (retry) the run is not one the machinery failed",
        413: "source code and files, or stdin, over 1 MiB, or a request body over 6 MiB",
        429: "rate limited",
        503: "a backend service is unavailable (Retry-After: 1)",
    }
    # Every route but the open ones may answer 401 where API keys are on.
    return {
        status: {"model": RateLimited if status == 429 else Error, "description": descriptions[status]}
        for status in sorted({401, *statuses})
    }
