"""lce_client against the real stack: the blocking and the asyncio client create, run, wait, stream and
interact over HTTP and WebSockets; error answers arrive as their exceptions, with retry hints; the gRPC
helper reaches the services with the deployment's security."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from common.tenancy import Caller
from devstack import Stack
from lce.execution.v1 import execution_pb2
from lce.session.v1 import session_pb2
from lce_client import (
    AsyncClient,
    AuthError,
    BadRequestError,
    Client,
    ConflictError,
    Execution,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    RunOptions,
    SourceFile,
    TestCase,
    UnreachableError,
)
from lce_client.grpc import InternalClientConfig, connect, connect_aio
from tests.conftest import RedisServer, free_port
from tests.integration.test_interactive import GUESS_THE_NUMBER, Player
from tests.integration.test_tenancy import Secured, secured_stack

pytestmark = pytest.mark.integration

UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def lce(stack: Stack) -> Iterator[Client]:
    with Client(stack.config.gateway_url) as client:
        yield client


@pytest.fixture
def python_id(lce: Client) -> str:
    return next(language.id for language in lce.languages() if language.name == "python")


def test_languages_and_their_details(lce: Client) -> None:
    found = lce.languages()
    assert sorted(language.name for language in found) == [
        "c", "cpp", "go", "java", "javascript", "php", "python", "ruby"
    ]  # fmt: skip
    python = lce.language(next(language.id for language in found if language.name == "python"))
    assert (python.file_name, python.runtime) == ("main.py", "cpython")
    assert python.template_code and python.default_time_limit_ms > 0


def test_session_create_update_get_close(lce: Client, python_id: str) -> None:
    created = lce.create_session(python_id, "from helper import x\nprint(x)\n", [SourceFile("helper.py", "x = 1\n")])
    assert created.status == "ACTIVE"
    saved = lce.update_session(created.session_id, files=[SourceFile("helper.py", "x = 2\n")])
    assert saved.session_id == created.session_id
    session = lce.session(created.session_id)
    assert (session.language_name, session.source_code) == ("python", "from helper import x\nprint(x)\n")
    assert [(f.name, f.content) for f in session.files] == [("helper.py", "x = 2\n")]
    assert lce.run(created.session_id, wait=20).stdout == "2\n"
    assert lce.close_session(created.session_id).status == "INACTIVE"
    with pytest.raises(ConflictError) as closed:
        lce.update_session(created.session_id, "print(3)\n")
    assert closed.value.status == 409 and "closed" in closed.value.message.lower()


def test_run_with_wait_gives_the_typed_result(lce: Client, python_id: str) -> None:
    source = "import sys\nprint(sys.stdin.read().upper(), sys.argv[1:])\nsys.exit(4)\n"
    session = lce.create_session(python_id, source)
    result = lce.run(session.session_id, RunOptions(stdin="abc", args=("x", "y z"), time_limit_ms=3000), wait=20)
    assert isinstance(result, Execution) and result.terminal
    assert (result.status, result.reason, result.exit_code) == ("FAILED", "runtime_error", 4)
    assert result.stdout == "ABC ['x', 'y z']\n"
    assert result.language == "python" and result.session_id == session.session_id
    assert result.execution_time_ms is not None and result.memory_kb is not None and result.memory_kb > 0
    assert result.raw["time_limit_ms"] == 3000
    listed = lce.executions(session.session_id)
    assert [(e.execution_id, e.status, e.exit_code) for e in listed] == [(result.execution_id, "FAILED", 4)]


def test_run_then_wait(lce: Client, python_id: str) -> None:
    session = lce.create_session(python_id, "import time\ntime.sleep(0.5)\nprint('late')\n")
    started = lce.run(session.session_id)
    assert (started.status, started.stdout) == ("QUEUED", None)
    unfinished = lce.wait(started.execution_id, timeout=0.05)
    assert unfinished.status in ("QUEUED", "RUNNING")
    finished = lce.wait(started.execution_id)
    assert (finished.status, finished.stdout) == ("COMPLETED", "late\n")


def test_stream_gives_events_as_they_happen_then_the_result(lce: Client, python_id: str) -> None:
    source = "import sys, time\nprint('one', flush=True)\ntime.sleep(0.3)\nprint('two', file=sys.stderr)\n"
    session = lce.create_session(python_id, source)
    started = lce.run(session.session_id, RunOptions(encoding="base64"))
    events = list(lce.stream(started.execution_id))
    kinds = [event.kind for event in events]
    assert kinds[0] == "status" and kinds[-1] == "result"
    assert [event.status for event in events if event.kind == "status"][:2] == ["QUEUED", "RUNNING"]
    stdout = b"".join(event.output("base64") for event in events if event.kind == "stdout")
    stderr = b"".join(event.output("base64") for event in events if event.kind == "stderr")
    assert (stdout, stderr) == (b"one\n", b"two\n")
    final = events[-1].execution
    assert final is not None and final.output("stdout") == b"one\n"
    # A stream opened after the end replays the run; resuming after an event gives only what followed.
    replay = list(lce.stream(started.execution_id))
    assert replay[-1].execution is not None and replay[-1].execution.execution_id == started.execution_id
    after_first = list(lce.stream(started.execution_id, last_event_id=replay[0].id))
    assert [e.id for e in after_first] == [e.id for e in replay[1:]]


def test_a_test_suite(lce: Client, python_id: str) -> None:
    session = lce.create_session(python_id, "a, b = map(int, input().split())\nprint(a + b)\n")
    cases = (TestCase("2 3\n", "5\n", name="small"), TestCase("1 1\n", "3\n", name="wrong"))
    result = lce.run(session.session_id, RunOptions(tests=cases), wait=30)
    assert result.tests is not None
    assert [(case.name, case.passed) for case in result.tests] == [("small", True), ("wrong", False)]
    assert (result.tests_passed, result.tests_total) == (1, 2)


def test_errors_arrive_as_their_exceptions(lce: Client, python_id: str) -> None:
    with pytest.raises(NotFoundError) as unknown:
        lce.execution(UNKNOWN)
    assert unknown.value.status == 404
    with pytest.raises(BadRequestError) as malformed:
        lce.session("not-an-id")
    assert malformed.value.status == 400 and malformed.value.message
    session = lce.create_session(python_id, "print(1)\n")
    with pytest.raises(BadRequestError, match="time_limit_ms"):
        lce.run(session.session_id, RunOptions(time_limit_ms=5))
    with pytest.raises(PayloadTooLargeError):
        lce.update_session(session.session_id, "#" * (1024 * 1024 + 1))
    with pytest.raises(NotFoundError):
        list(lce.stream(UNKNOWN))
    with Client(f"http://127.0.0.1:{free_port()}") as nowhere, pytest.raises(UnreachableError) as unreachable:
        nowhere.languages()
    assert unreachable.value.status is None and "cannot reach" in unreachable.value.message


def test_rate_limited_with_when_to_come_back(lce: Client, python_id: str) -> None:
    session = lce.create_session(python_id, "print('x')\n")
    accepted = [lce.run(session.session_id) for _ in range(10)]
    with pytest.raises(RateLimitedError) as limited:
        lce.run(session.session_id)
    assert limited.value.status == 429
    assert limited.value.retry_after is not None and 1 <= limited.value.retry_after <= 60
    assert all(lce.wait(run.execution_id).status == "COMPLETED" for run in accepted)


def test_interactive_run_over_the_websocket(lce: Client, python_id: str) -> None:
    session = lce.create_session(python_id, GUESS_THE_NUMBER)
    started = lce.run(session.session_id, RunOptions(interactive=True, args=("37",), time_limit_ms=20_000))
    player = Player()
    final = None
    with lce.interact(started.execution_id) as interaction:
        for event in interaction:
            if event.kind == "stdout":
                for guess in player.answers(event.fields["data"]):
                    interaction.send(guess)
            final = event.execution or final
    assert final is not None and (final.status, final.exit_code) == ("COMPLETED", 0)
    assert final.stdout is not None and final.stdout.endswith("correct in 3\n")


def test_interactive_refusals(lce: Client, python_id: str) -> None:
    session = lce.create_session(python_id, "import sys\nprint(sys.stdin.buffer.read().hex())\n")
    plain = lce.run(session.session_id)
    with pytest.raises(ConflictError, match="interactive"):
        lce.interact(plain.execution_id)
    started = lce.run(session.session_id, RunOptions(interactive=True, encoding="base64"))
    with lce.interact(started.execution_id) as interaction:
        interaction.send("x" * (64 * 1024 + 1))  # over a message's bound: refused, the run goes on
        interaction.send(b"\x00\xff")
        interaction.close_stdin()
        events = list(interaction)
    assert [(e.fields["status"]) for e in events if e.kind == "error"] == [413]
    final = events[-1].execution
    assert final is not None and base64.b64decode(final.stdout or "") == b"00ff\n"


def test_the_async_client(stack: Stack) -> None:
    async def scenario() -> dict[str, Any]:
        async with AsyncClient(stack.config.gateway_url) as lce:
            python = next(language for language in await lce.languages() if language.name == "python")
            session = await lce.create_session(python.id, "import sys\nprint(input()[::-1])\nsys.exit(2)\n")
            waited = await lce.run(session.session_id, RunOptions(stdin="olleh\n"), wait=20)
            started = await lce.run(session.session_id, RunOptions(stdin="abc\n"))
            streamed = [event async for event in lce.stream(started.execution_id)]
            finished = await lce.wait(started.execution_id)
            interactive = await lce.run(session.session_id, RunOptions(interactive=True))
            async with await lce.interact(interactive.execution_id) as interaction:
                await interaction.send("typed\n")
                typed = [event async for event in interaction]
            with pytest.raises(NotFoundError):
                await lce.execution(UNKNOWN)
            with pytest.raises(BadRequestError):
                await lce.run(session.session_id, RunOptions(memory_limit_mb=1))
            return {"waited": waited, "streamed": streamed, "finished": finished, "typed": typed}

    seen = asyncio.run(scenario())
    assert (seen["waited"].stdout, seen["waited"].exit_code) == ("hello\n", 2)
    assert seen["streamed"][-1].execution.stdout == "cba\n"
    assert seen["finished"].stdout == "cba\n"
    assert seen["typed"][-1].execution.stdout == "depyt\n"


def test_the_grpc_helper_reaches_both_services(lce: Client, stack: Stack, python_id: str) -> None:
    config = InternalClientConfig(
        session_service_addr=f"127.0.0.1:{stack.config.session_port}",
        execution_service_addr=f"127.0.0.1:{stack.config.execution_port}",
    )
    session = lce.create_session(python_id, "print(5)\n")
    executed = lce.run(session.session_id, wait=20)
    with connect(config) as services:
        found = services.sessions.GetSession(session_pb2.GetSessionRequest(session_id=session.session_id), timeout=5)
        assert found.session.source_code == "print(5)\n"
        answer = services.executions.GetExecution(
            execution_pb2.GetExecutionRequest(execution_id=executed.execution_id),
            timeout=5,
            metadata=Caller().metadata(),
        )
        assert answer.execution.result.stdout == "5\n"

    async def languages() -> int:
        async with connect_aio(config) as services:
            listed = await services.sessions.ListLanguages(session_pb2.ListLanguagesRequest(), timeout=5)
            return len(listed.languages)

    assert asyncio.run(languages()) == 8


INTERNAL_TOKEN = "internal-" + "i" * 40
EXECUTOR_TOKEN = "executor-" + "e" * 40


@pytest.fixture(scope="module")
def secured(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """API keys on, and the services identifying their callers by tokens."""
    tmp = tmp_path_factory.mktemp("client-secured")
    tokens = {"LCE_INTERNAL_TOKEN": INTERNAL_TOKEN, "LCE_EXECUTOR_TOKEN": EXECUTOR_TOKEN}
    with secured_stack(redis_server, tmp, "lce_client_auth", **tokens) as running:
        yield running


def test_api_keys_travel_as_bearer_tokens(secured: Secured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LCE_API_KEY", raising=False)
    secret, _ = secured.new_key("acme")
    with Client(secured.url, key=secret) as lce:
        python = next(language.id for language in lce.languages() if language.name == "python")
        session = lce.create_session(python, "print(input())\n")
        started = lce.run(session.session_id, RunOptions(interactive=True))
        with lce.interact(started.execution_id) as interaction:  # the WebSocket carries the key too
            interaction.send("over the socket\n")
            assert list(interaction)[-1].execution.stdout == "over the socket\n"  # type: ignore[union-attr]
    for key in (None, "lce_not-a-key"):
        with Client(secured.url, key=key) as refused, pytest.raises(AuthError) as denied:
            refused.languages()
        assert denied.value.status == 401 and "API key" in denied.value.message
    monkeypatch.setenv("LCE_API_KEY", secret)
    with Client(secured.url) as from_environment:
        assert len(from_environment.languages()) == 8


def test_the_cli_sends_its_key(secured: Secured, tmp_path: Path) -> None:
    secret, _ = secured.new_key("globex")
    (tmp_path / "hi.py").write_text("print('with a key')\n")
    lce = [str(Path(sys.executable).parent / "lce"), "--url", secured.url]

    def command(*args: str, key: str | None) -> subprocess.CompletedProcess[str]:
        env = {name: value for name, value in os.environ.items() if name != "LCE_API_KEY"}
        if key is not None:
            env["LCE_API_KEY"] = key
        return subprocess.run([*lce, *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)

    assert command("run", "hi.py", key=secret).stdout == "with a key\n"
    assert command("run", "hi.py", "--key", secret, key="lce_wrong").stdout == "with a key\n"
    refused = command("run", "hi.py", key=None)
    assert refused.returncode == 3 and "401" in refused.stderr


def test_the_grpc_helper_presents_the_internal_token(secured: Secured, monkeypatch: pytest.MonkeyPatch) -> None:
    config = secured.stack.config
    monkeypatch.setenv("LCE_SESSION_SERVICE_ADDR", f"127.0.0.1:{config.session_port}")
    monkeypatch.setenv("LCE_EXECUTION_SERVICE_ADDR", f"127.0.0.1:{config.execution_port}")
    monkeypatch.setenv("LCE_INTERNAL_TOKEN", INTERNAL_TOKEN)
    with connect() as services:  # everything from the environment, as a deployment's process has it
        listed = services.sessions.ListLanguages(session_pb2.ListLanguagesRequest(), timeout=5)
        assert len(listed.languages) == 8
    without_token = InternalClientConfig(
        session_service_addr=f"127.0.0.1:{config.session_port}",
        execution_service_addr=f"127.0.0.1:{config.execution_port}",
        internal_tokens=(),  # not the environment's
    )
    with connect(without_token) as services, pytest.raises(grpc.RpcError) as refused:
        services.sessions.ListLanguages(session_pb2.ListLanguagesRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
