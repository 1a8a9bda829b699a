"""The client's and the CLI's pure parts: error mapping, event parsing, files to programs and test
suites, exit statuses, output shown once."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from gateway import schemas
from lce_client import calls
from lce_client.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    LceError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    UnavailableError,
    UnreachableError,
    error_for,
)
from lce_client.events import MAX_RECONNECTS, SseParser, StreamFollower, from_message
from lce_client.interaction import broken
from lce_client.models import Event, Execution, Language
from lce_client.programs import (
    EXIT_FAILED,
    EXIT_TESTS_FAILED,
    EXIT_TIMEOUT,
    ProgramError,
    cases_in,
    exit_status,
    language_by_extension,
    language_by_name,
    program,
)
from lce_client.terminal import LiveOutput, Spinner


def body(error: str, **more: object) -> bytes:
    return json.dumps({"error": error, **more}).encode()


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, BadRequestError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, PayloadTooLargeError),
        (429, RateLimitedError),
        (503, UnavailableError),
    ],
)
def test_each_documented_status_has_its_exception(status: int, kind: type[LceError]) -> None:
    error = error_for(status, {}, body("nope"))
    assert type(error) is kind
    assert (error.status, error.message, error.retry_after) == (status, "nope", None)


def test_every_status_the_gateway_documents_is_mapped() -> None:
    documented = schemas.errors(400, 404, 409, 413, 429, 503).keys() | {403}
    assert all(type(error_for(int(status), {}, b"{}")) is not LceError for status in documented)


def test_retry_after_and_the_rate_limits_detail() -> None:
    limited = error_for(429, {"retry-after": "17"}, body("Rate limit exceeded", retryAfter=17, detail="10 per min"))
    assert isinstance(limited, RateLimitedError)
    assert (limited.retry_after, limited.message) == (17, "Rate limit exceeded: 10 per min")
    assert error_for(503, {"retry-after": "1"}, body("down")).retry_after == 1
    # An HTTP date (LCE sends none) or garbage gives no hint rather than a wrong one.
    assert error_for(503, {"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, body("down")).retry_after is None


def test_unknown_statuses_and_bodies_that_are_not_json() -> None:
    teapot = error_for(418, {}, b"<html>short and stout</html>")
    assert type(teapot) is LceError and teapot.message == "<html>short and stout</html>"
    assert error_for(500, {}, b"").message == "HTTP 500"
    assert UnreachableError("gone").status is None


def test_sse_lines_become_events() -> None:
    parser = SseParser()
    lines = [
        ": keep-alive",
        "",
        "id: 1-0",
        "event: status",
        'data: {"status": "QUEUED", "attempt": 1}',
        "",
        "id: 1-1",
        "event: stdout",
        'data: {"attempt": 1, "offset": 0, "data": "hi\\n"}',
        "",
        "id: 2-0",
        "event: result",
        'data: {"execution_id": "e", "status": "COMPLETED", "exit_code": 0, "stdout": "hi\\n"}',
        "",
    ]
    events = [event for line in lines if (event := parser.feed(line)) is not None]
    assert [(e.kind, e.id) for e in events] == [("status", "1-0"), ("stdout", "1-1"), ("result", "2-0")]
    assert events[0].status == "QUEUED" and events[1].output("utf8") == b"hi\n"
    assert events[2].execution is not None and events[2].execution.exit_code == 0
    assert events[2].status == "COMPLETED"


def test_websocket_messages_become_the_same_events() -> None:
    chunk = from_message('{"type": "stdout", "id": "1-1", "attempt": 1, "offset": 3, "data": "AP8="}')
    assert (chunk.kind, chunk.id, chunk.fields["offset"], chunk.output("base64")) == ("stdout", "1-1", 3, b"\x00\xff")
    result = from_message('{"type": "result", "id": "2-0", "execution": {"execution_id": "e", "status": "TIMEOUT"}}')
    assert result.execution is not None and result.execution.status == "TIMEOUT"
    refused = from_message('{"type": "error", "status": 413, "message": "too big"}')
    assert (refused.kind, refused.fields["status"]) == ("error", 413)


def test_a_stream_resumes_from_its_last_event_and_gives_up_when_nothing_comes() -> None:
    follower = StreamFollower(None)
    for line in ("id: 5-0", "event: status", 'data: {"status": "RUNNING"}', ""):
        follower.take(line)
    assert follower.last_event_id == "5-0" and not follower.done
    for _ in range(MAX_RECONNECTS):
        assert follower.ended("cut") > 0
    with pytest.raises(UnreachableError):
        follower.ended("cut")


LANGUAGES = [
    Language("id-py", "python", "cpython", "3", 5000, 256, file_name="main.py"),
    Language("id-cpp", "cpp", "g++", "12", 5000, 256, file_name="main.cpp"),
    Language("id-java", "java", "openjdk", "17", 5000, 256, file_name="Main.java"),
]


def test_language_from_the_extension_or_by_name() -> None:
    assert language_by_extension("solve.py", LANGUAGES) is LANGUAGES[0]
    assert language_by_extension("dir/Hello.JAVA", LANGUAGES) is LANGUAGES[2]
    assert language_by_extension("Makefile", LANGUAGES) is None
    assert language_by_extension("notes.txt", LANGUAGES) is None
    assert language_by_name("CPP", LANGUAGES) is LANGUAGES[1]
    assert language_by_name("id-java", LANGUAGES) is LANGUAGES[2]
    with pytest.raises(ProgramError, match="cpp, java, python"):
        language_by_name("cobol", LANGUAGES)


def test_program_files_are_named_from_the_main_files_folder(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "main.py").write_text("import helper\n")
    (tmp_path / "helper.py").write_text("X = 1\n")
    (tmp_path / "lib" / "util.py").write_text("Y = 2\n")
    source, files = program([tmp_path / "main.py", tmp_path / "helper.py", tmp_path / "lib" / "util.py"])
    assert source == "import helper\n"
    assert [(f.name, f.content) for f in files] == [("helper.py", "X = 1\n"), ("lib/util.py", "Y = 2\n")]
    with pytest.raises(ProgramError, match="not in"):
        program([tmp_path / "lib" / "util.py", tmp_path / "main.py"])
    (tmp_path / "binary.py").write_bytes(b"\xff\xfe")
    with pytest.raises(ProgramError, match="not UTF-8"):
        program([tmp_path / "binary.py"])
    with pytest.raises(ProgramError, match="cannot read"):
        program([tmp_path / "absent.py"])


def test_test_cases_pair_in_and_out_files_in_natural_order(tmp_path: Path) -> None:
    for name in ("10", "2", "edge"):
        (tmp_path / f"{name}.in").write_text(f"in {name}\n")
        (tmp_path / f"{name}.out").write_text(f"out {name}\n")
    (tmp_path / "README").write_text("ignored")
    cases = cases_in(tmp_path)
    assert [(c.name, c.stdin, c.expected_output) for c in cases] == [
        ("2", "in 2\n", "out 2\n"),
        ("10", "in 10\n", "out 10\n"),
        ("edge", "in edge\n", "out edge\n"),
    ]
    (tmp_path / "11.in").write_text("alone")
    with pytest.raises(ProgramError, match=r"11\.out is missing"):
        cases_in(tmp_path)
    (tmp_path / "11.in").unlink()
    (tmp_path / "12.out").write_text("alone")
    with pytest.raises(ProgramError, match=r"12\.in is missing"):
        cases_in(tmp_path)


def test_an_empty_or_absent_test_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProgramError, match="no test cases"):
        cases_in(tmp_path)
    with pytest.raises(ProgramError, match="not a folder"):
        cases_in(tmp_path / "absent")


def execution(status: str, **fields: object) -> Execution:
    return Execution.from_json({"execution_id": "e", "status": status, **fields})


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (execution("COMPLETED", exit_code=0), 0),
        (execution("FAILED", exit_code=3, reason="runtime_error"), 3),
        (execution("FAILED", exit_code=None, reason="signal:SIGSEGV"), 139),
        (execution("FAILED", exit_code=None, reason="signal:SIGKILL"), 137),
        (execution("TIMEOUT", reason="time_limit_exceeded:wall"), EXIT_TIMEOUT),
        (execution("TIMEOUT", reason="compile_time_limit_exceeded"), EXIT_TIMEOUT),
        (execution("FAILED", exit_code=1, reason="compile_error"), EXIT_FAILED),
        (execution("FAILED", reason="memory_limit_exceeded"), EXIT_FAILED),
        (execution("FAILED", reason="internal_error"), EXIT_FAILED),
        (execution("COMPLETED", tests=[{"name": "1", "status": "COMPLETED", "passed": True}]), 0),
        (
            execution(
                "COMPLETED",
                tests=[
                    {"name": "1", "status": "COMPLETED", "passed": True},
                    {"name": "2", "status": "COMPLETED", "passed": False},
                ],
            ),
            EXIT_TESTS_FAILED,
        ),
    ],
)
def test_exit_status(result: Execution, expected: int) -> None:
    assert exit_status(result) == expected


def chunk(kind: str, offset: int, data: bytes) -> Event:
    return Event(kind, "1-0", {"offset": offset, "data": base64.b64encode(data).decode()})


def test_live_output_writes_each_byte_once_across_a_retry() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    live = LiveOutput(out, err, "base64")
    live.write(chunk("stdout", 0, b"hello "))
    live.write(chunk("stderr", 0, b"warn\n"))
    # The attempt was retried: its output starts again at 0 and goes further.
    live.write(chunk("stdout", 0, b"hello "))
    live.write(chunk("stdout", 6, b"world"))
    live.finish(execution("COMPLETED", encoding="base64", stdout=base64.b64encode(b"hello world\n").decode()))
    assert (out.getvalue(), err.getvalue()) == (b"hello world\n", b"warn\n")


def test_a_result_alone_shows_its_whole_output() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    LiveOutput(out, err, "utf8").finish(execution("FAILED", stderr="main.c:1: error\n", stdout=""))
    assert (out.getvalue(), err.getvalue()) == (b"", b"main.c:1: error\n")


def test_no_spinner_where_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    spinner = Spinner(stream, "queued")
    spinner.start()
    spinner.stop()
    assert not spinner.enabled and stream.getvalue() == ""


def test_the_target_comes_from_the_flags_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LCE_URL", raising=False)
    monkeypatch.delenv("LCE_API_KEY", raising=False)
    assert calls.target(None, None) == (calls.DEFAULT_URL, None)
    monkeypatch.setenv("LCE_URL", "https://lce.example.com/")
    monkeypatch.setenv("LCE_API_KEY", "lce_env")
    assert calls.target(None, None) == ("https://lce.example.com", "lce_env")
    assert calls.target("http://other:8080", "lce_flag") == ("http://other:8080", "lce_flag")
    assert calls.websocket_url("https://lce.example.com", "a/b") == "wss://lce.example.com/executions/a%2Fb/interact"


def test_wait_is_sent_as_the_api_reads_it() -> None:
    assert calls.get_execution("e", 30).params == {"wait": "30.000"}
    assert calls.get_execution("e", 0.0000001).params == {"wait": "0.001"}
    with pytest.raises(ValueError):
        calls.get_execution("e", 31)


def test_a_websocket_closed_before_the_result_is_an_error_that_says_why() -> None:
    error = broken(ConnectionClosedError(Close(1011, "the run's events cannot be read"), None))
    assert isinstance(error, UnreachableError) and "the run's events cannot be read" in error.message
