"""Proto messages -> the documented JSON shapes, and JSON request bodies -> proto requests.

Outbound: plain dicts, timestamps as ISO-8601 UTC with milliseconds and "Z", statuses without
their enum prefix. Inbound: types are strict (a numeric string, a float or a boolean is not an
integer); ranges are the services' business, except int32 bounds, which a proto field cannot
even hold.
"""

from __future__ import annotations

import base64
from typing import Any

from common.execution_json import (
    ENCODINGS,
    PRIORITIES,
    PRIORITY_NAMES,
    Json,
    execution_status,
    is_terminal,
    iso_timestamp,
    optional_timestamp,
)
from common.outcome import (
    Reason,
    Status,
    reason_text_of,
    reason_to_proto,
    status_to_proto,
)
from gateway.http_errors import HttpError
from lce.execution.v1 import execution_pb2
from lce.session.v1 import session_pb2

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


_SESSION_STATUS = {
    value.number: value.name.removeprefix("SESSION_STATUS_") for value in session_pb2.SessionStatus.DESCRIPTOR.values
}
# "trim", "exact", "tokens": how a test case's output is compared, by their proto names.
COMPARE_MODES: dict[str, int] = {
    value.name.removeprefix("COMPARE_MODE_").lower(): value.number
    for value in execution_pb2.CompareMode.DESCRIPTOR.values
    if value.number != execution_pb2.COMPARE_MODE_UNSPECIFIED
}


# --- outbound ------------------------------------------------------------------------------


def session_status(status: int) -> str:
    return _SESSION_STATUS.get(status, "UNSPECIFIED")


def language_summary(language: session_pb2.Language) -> Json:
    return {
        "id": language.id,
        "name": language.name,
        "runtime": language.runtime,
        "version": language.version,
        "versions": list(language.versions),
        "available": language.available,
        "default_time_limit_ms": language.default_time_limit_ms,
        "default_memory_mb": language.default_memory_mb,
    }


def language_detail(language: session_pb2.Language) -> Json:
    return {
        **language_summary(language),
        "template_code": language.template_code,
        "file_name": language.file_name,
        "packages": {package.name: package.version for package in language.packages},
    }


def languages_list(languages: Any) -> Json:
    items = [language_summary(language) for language in languages]
    return {"total": len(items), "languages": items}


def session_state(session: session_pb2.Session) -> Json:
    """The short answer of create, autosave and close."""
    return {
        "session_id": session.id,
        "status": session_status(session.status),
        "updated_at": optional_timestamp(session, "updated_at"),
    }


def session_detail(session: session_pb2.Session) -> Json:
    return {
        "session_id": session.id,
        "status": session_status(session.status),
        "language_id": session.language.id,
        "language_name": session.language.name,
        "source_code": session.source_code,
        "files": [{"name": file.name, "content": file.content} for file in session.files],
        "runtime": session.language.runtime,
        "version": session.language.version,
        "created_at": optional_timestamp(session, "created_at"),
        "updated_at": optional_timestamp(session, "updated_at"),
    }


def execution_created(execution: execution_pb2.Execution) -> Json:
    """The 202 answer. It describes the acceptance, so it reads QUEUED even when an Idempotency-Key
    replay finds the run further on: a repeated request gets the very answer of the first."""
    return {"execution_id": execution.id, "status": "QUEUED", "warnings": list(execution.warnings)}


def execution_summary(execution: execution_pb2.Execution) -> Json:
    """One row of a session's history; time and exit code stay null until the run is over."""
    result = execution.result if is_terminal(execution) else None
    return {
        "execution_id": execution.id,
        "status": execution_status(execution.status),
        "execution_time_ms": result.execution_time_ms if result is not None else None,
        "exit_code": result.exit_code if result is not None and result.HasField("exit_code") else None,
        "created_at": optional_timestamp(execution, "created_at"),
    }


def executions_list(session_id: str, executions: Any) -> Json:
    return {"session_id": session_id, "executions": [execution_summary(e) for e in executions]}


def found_execution(execution: execution_pb2.Execution) -> Json:
    """One row of an operator's search: the summary, and where and why the run ended."""
    return execution_summary(execution) | {
        "session_id": execution.session_id,
        "language": execution.language,
        "attempt": execution.attempt,
        "reason": reason_text_of(execution.result) or None if is_terminal(execution) else None,
        "finished_at": optional_timestamp(execution, "finished_at"),
    }


def executions_found(response: execution_pb2.FindExecutionsResponse) -> Json:
    return {
        "executions": [found_execution(e) for e in response.executions],
        "next_page_token": response.next_page_token or None,
    }


def execution_retried(execution: execution_pb2.Execution) -> Json:
    return {"execution_id": execution.id, "status": execution_status(execution.status), "attempt": execution.attempt}


def keys_list(keys: Any) -> Json:
    return {
        "keys": [
            {
                "id": key.id,
                "tenant": key.tenant,
                "name": key.name,
                "admin": key.admin,
                "runs_per_minute": key.runs_per_minute,
                "concurrent_runs": key.concurrent_runs,
                "max_time_limit_ms": key.max_time_limit_ms,
                "max_memory_limit_mb": key.max_memory_limit_mb,
                "max_priority": PRIORITY_NAMES.get(key.max_priority, "interactive"),
                "created_at": iso_timestamp(key.created_at),
                "revoked_at": optional_timestamp(key, "revoked_at"),
            }
            for key in keys
        ]
    }


def system(state: execution_pb2.GetSystemResponse, gateway_version: str) -> Json:
    queues = [
        {
            "name": q.name,
            "language": q.language,
            "lane": PRIORITY_NAMES.get(q.lane, "interactive"),
            "depth": q.depth,
            "oldest_seconds": round(q.oldest_seconds, 3),
        }
        for q in state.queues
    ]
    executors = [
        {
            "id": e.executor_id,
            "pool": e.pool,
            "languages": dict(sorted(e.languages.items())),
            "sandbox_mode": e.sandbox_mode,
            "slots": {"busy": e.slots_busy, "total": e.slots_total},
            "queues": list(e.queues),
            "host": e.host,
            "pid": e.pid,
            "version": e.version,
            "started_at": iso_timestamp(e.started_at),
        }
        for e in state.executors
    ]
    return {
        "queues": queues,
        "queued": sum(q["depth"] for q in queues),
        "oldest_queued_seconds": max((q["oldest_seconds"] for q in queues), default=0.0),
        "executors": executors,
        "runs": [{"minutes": w.minutes, "by_state": dict(sorted(w.by_state.items()))} for w in state.runs],
        "services": {
            "gateway": gateway_version,
            "execution_service": state.version,
            "executors": sorted({e.version for e in state.executors}),
        },
    }


def execution_event(event: execution_pb2.ExecutionEvent) -> Json:
    """One lifecycle entry: type and time, then whichever details it has."""
    body: Json = {"type": event.type, "at": iso_timestamp(event.at)}
    if event.HasField("attempt"):
        body["attempt"] = event.attempt
    if event.executor_id:
        body["executor_id"] = event.executor_id
    if event.reason:
        body["reason"] = event.reason
    return body


def execution_events(execution_id: str, events: Any) -> Json:
    return {"execution_id": execution_id, "events": [execution_event(event) for event in events]}


# --- inbound -------------------------------------------------------------------------------


def _field(body: Json, name: str, expected: type, type_name: str, *, required: bool) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise HttpError(400, f"{name} is required")
        return None
    # `type(...) is`, not isinstance: a JSON boolean is a Python bool, which isinstance counts as an int.
    if type(value) is not expected:
        raise HttpError(400, f"{name} must be {type_name}")
    if expected is str and not _is_unicode(value):
        raise HttpError(400, f"{name} must be text without lone surrogates")
    return value


def _int32_field(body: Json, name: str) -> int | None:
    value = _field(body, name, int, "an integer", required=False)
    if value is not None and not INT32_MIN <= value <= INT32_MAX:
        raise HttpError(400, f"{name} is out of range")
    return value


def create_session_request(body: Json) -> session_pb2.CreateSessionRequest:
    language_id = _field(body, "language_id", str, "a string", required=True)
    source_code = _field(body, "source_code", str, "a string", required=False)
    return session_pb2.CreateSessionRequest(
        language_id=language_id, source_code=source_code, files=_files_field(body) or ()
    )


def update_source_request(session_id: str, body: Json) -> session_pb2.UpdateSourceRequest:
    """Source, files or both; what the body leaves out stays as it is."""
    source_code = _field(body, "source_code", str, "a string", required=False)
    files = _files_field(body)
    if source_code is None and files is None:
        raise HttpError(400, "source_code is required unless files is given")
    file_set = None if files is None else session_pb2.FileSet(files=files)
    return session_pb2.UpdateSourceRequest(session_id=session_id, source_code=source_code, file_set=file_set)


def _files_field(body: Json) -> list[session_pb2.SourceFile] | None:
    """The whole set of files, each {"name", "content"}; the names' rules are session_service's."""
    files = _field(body, "files", list, "a list of {name, content} objects", required=False)
    if files is None:
        return None
    return [_source_file(index, file) for index, file in enumerate(files)]


def _source_file(index: int, file: Any) -> session_pb2.SourceFile:
    if type(file) is not dict:
        raise HttpError(400, f"files[{index}] must be an object with name and content")
    try:
        name = _field(file, "name", str, "a string", required=True)
        content = _field(file, "content", str, "a string", required=True)
    except HttpError as err:
        raise HttpError(400, f"files[{index}].{err.message}") from None
    return session_pb2.SourceFile(name=name, content=content)


def create_execution_request(
    session_id: str, body: Json, idempotency_key: str | None = None
) -> execution_pb2.CreateExecutionRequest:
    """The key's syntax is the execution service's rule; an empty header is passed on to be refused there."""
    encoding = _encoding_field(body)
    return execution_pb2.CreateExecutionRequest(
        session_id=session_id,
        time_limit_ms=_int32_field(body, "time_limit_ms"),
        memory_limit_mb=_int32_field(body, "memory_limit_mb"),
        idempotency_key=idempotency_key,
        compile_time_limit_ms=_int32_field(body, "compile_time_limit_ms"),
        compile_memory_limit_mb=_int32_field(body, "compile_memory_limit_mb"),
        encoding=encoding,
        stdin=_stdin_field(body, encoding),
        args=_args_field(body),
        interactive=_field(body, "interactive", bool, "true or false", required=False) or False,
        tests=_tests_field(body, encoding),
        compare=_compare_field(body),
        float_tolerance=_tolerance_field(body),
        stop_on_first_failure=_field(body, "stop_on_first_failure", bool, "true or false", required=False) or False,
        callback_url=_field(body, "callback_url", str, "a string", required=False),
        priority=_priority_field(body),
    )


def _named_field(body: Json, field: str, values: dict[str, int]) -> int:
    """A proto enum's value by its name (one of `values`); 0, its UNSPECIFIED, when absent."""
    name = _field(body, field, str, "a string", required=False)
    if name is None:
        return 0
    if name not in values:
        raise HttpError(400, f"{field} must be one of {', '.join(values)}")
    return values[name]


def _priority_field(body: Json) -> int:
    return _named_field(body, "priority", PRIORITIES)


def _encoding_field(body: Json) -> int:
    return _named_field(body, "encoding", dict(sorted(ENCODINGS.items())))


def _stdin_field(body: Json, encoding: int) -> bytes:
    """The program's input: text in UTF-8, or with the base64 encoding the exact bytes."""
    text = _field(body, "stdin", str, "a string", required=False)
    if text is None:
        return b""
    return program_input(text, base64_encoded=encoding == execution_pb2.ENCODING_BASE64, what="stdin")


def program_input(text: str, *, base64_encoded: bool, what: str) -> bytes:
    """Input for a program as a client sends it: text, sent as UTF-8, or base64 of the exact bytes."""
    try:
        return base64.b64decode(text, validate=True) if base64_encoded else text.encode()
    except ValueError as exc:  # binascii.Error; base64 of non-ASCII characters; a lone surrogate (no UTF-8)
        raise HttpError(400, f"{what} is not valid {'base64' if base64_encoded else 'text'}") from exc


def _args_field(body: Json) -> list[str]:
    args = _field(body, "args", list, "a list of strings", required=False)
    if args is None:
        return []
    if any(type(arg) is not str or not _is_unicode(arg) for arg in args):
        raise HttpError(400, "args must be a list of strings")
    return args


MAX_TEST_CASES = 100
_CASE_KEYS = frozenset({"name", "stdin", "args", "expected_output"})


def _tests_field(body: Json, encoding: int) -> list[execution_pb2.TestCase]:
    """A test suite's cases; the execution service checks their sizes as a run's."""
    cases = _field(body, "tests", list, "a list of test cases", required=False)
    if cases is None:
        return []
    if not 1 <= len(cases) <= MAX_TEST_CASES:
        raise HttpError(400, f"tests must have 1 to {MAX_TEST_CASES} cases")
    return [_test_case(case, index, encoding) for index, case in enumerate(cases)]


def _test_case(case: Any, index: int, encoding: int) -> execution_pb2.TestCase:
    field = f"tests[{index}]"
    if type(case) is not dict or not _CASE_KEYS.issuperset(case):
        raise HttpError(400, f"{field} must be an object of name, stdin, args and expected_output")
    try:
        return execution_pb2.TestCase(
            name=_field(case, "name", str, "a string", required=False) or "",
            stdin=_stdin_field(case, encoding),
            args=_args_field(case),
            expected_output=_field(case, "expected_output", str, "a string", required=False),
        )
    except HttpError as refused:
        raise HttpError(refused.status, f"{field}.{refused.message}") from None


def _compare_field(body: Json) -> int:
    return _named_field(body, "compare", dict(sorted(COMPARE_MODES.items())))


def _tolerance_field(body: Json) -> float | None:
    value = body.get("float_tolerance")
    if value is None:
        return None
    if type(value) not in (int, float):
        raise HttpError(400, "float_tolerance must be a number")
    try:
        return float(value)
    except OverflowError:
        raise HttpError(400, "float_tolerance is out of range") from None


def _is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate (JSON's \\ud800 escape), which no UTF-8 can carry."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


MAX_WAIT_S = 30.0


def parse_wait(raw: str | None) -> float | None:
    """The `wait` query parameter: seconds, 0 < N <= 30, as digits with at most one decimal point."""
    if raw is None:
        return None
    well_formed = 0 < len(raw) <= 16 and raw.count(".") <= 1 and raw.strip(".") and raw.replace(".", "").isdigit()
    value = float(raw) if well_formed and raw.isascii() else 0.0
    if not 0 < value <= MAX_WAIT_S:
        raise HttpError(400, f"wait must be a number of seconds, more than 0 and at most {MAX_WAIT_S:g}")
    return value


def parse_limit(raw: str | None) -> int | None:
    """The `limit` query parameter: ASCII digits with an optional sign, nothing looser."""
    if raw is None:
        return None
    digits = raw[1:] if raw[:1] in ("+", "-") else raw
    if not (digits.isascii() and digits.isdigit()):
        raise HttpError(400, "limit must be an integer")
    # The length check first: int() refuses strings of thousands of digits with a ValueError.
    value = int(raw) if len(digits) <= 10 else INT32_MAX + 1
    if not INT32_MIN <= value <= INT32_MAX:
        raise HttpError(400, "limit is out of range")
    return value


MAX_PAGE_TOKEN_CHARS = 200


def find_executions_request(query: Any) -> execution_pb2.FindExecutionsRequest:
    """The query of GET /executions: status and reason by their names, limit, page_token."""
    status, reason, token = query.get("status"), query.get("reason"), query.get("page_token", "")
    statuses, reasons = {s.value for s in Status}, {r.value for r in Reason if r is not Reason.NONE}
    if status is not None and status not in statuses:
        raise HttpError(400, f"status must be one of {', '.join(sorted(statuses))}")
    if reason is not None and reason not in reasons:
        raise HttpError(400, f"reason must be one of {', '.join(sorted(reasons))}")
    if len(token) > MAX_PAGE_TOKEN_CHARS:
        raise HttpError(400, "page_token is not one a previous page gave")
    return execution_pb2.FindExecutionsRequest(
        status=status_to_proto(Status(status)) if status else 0,
        reason=reason_to_proto(Reason(reason)) if reason else 0,
        limit=parse_limit(query.get("limit")),
        page_token=token,
    )


def list_executions_request(session_id: str, limit: int | None) -> execution_pb2.ListExecutionsRequest:
    return execution_pb2.ListExecutionsRequest(session_id=session_id, limit=limit)
