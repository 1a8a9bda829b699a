"""Interactive runs through the whole system: a program's stdin fed as the client types, over a real
WebSocket (GET /executions/{id}/interact) and over gRPC (InteractExecution)."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import grpc
import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from devstack import Stack
from lce.execution.v1 import execution_pb2, execution_pb2_grpc
from tests.integration.conftest import new_session, wait_terminal

pytestmark = pytest.mark.integration

# Guesses a number from 1 to 100, told higher or lower: the game a client plays by binary search.
GUESS_THE_NUMBER = """import sys
secret = int(sys.argv[1])
tries = 0
while True:
    print("guess?", flush=True)
    line = sys.stdin.readline()
    if not line:
        print("gave up")
        sys.exit(3)
    tries += 1
    guess = int(line)
    if guess == secret:
        print(f"correct in {tries}")
        break
    print("higher" if guess < secret else "lower", flush=True)
"""


@pytest.fixture
def python_id(languages: dict[str, dict[str, Any]]) -> str:
    return str(languages["python"]["id"])


def ws_url(stack: Stack, execution_id: str) -> str:
    return stack.config.gateway_url.replace("http://", "ws://") + f"/executions/{execution_id}/interact"


def start(api: httpx.Client, session_id: str, **body: Any) -> str:
    accepted = api.post(f"/code-sessions/{session_id}/run", json={"interactive": True, **body})
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["execution_id"])


def messages(socket: ClientConnection) -> Iterator[dict[str, Any]]:
    """The server's messages until it closes the socket."""
    while True:
        try:
            yield json.loads(socket.recv(timeout=30))
        except Exception as closed:  # ConnectionClosedOK once the result is sent
            if type(closed).__name__.startswith("ConnectionClosed"):
                return
            raise


class Player:
    """Plays guess-the-number from the program's output lines, whatever way they arrive."""

    def __init__(self) -> None:
        self.low, self.high = 1, 100
        self.pending = ""
        self.guess: int | None = None

    def answers(self, output: str) -> list[str]:
        """The guesses to send for the output that came."""
        self.pending += output
        *lines, self.pending = self.pending.split("\n")
        to_send = []
        for line in lines:
            if line == "higher":
                assert self.guess is not None
                self.low = self.guess + 1
            elif line == "lower":
                assert self.guess is not None
                self.high = self.guess - 1
            elif line == "guess?":
                self.guess = (self.low + self.high) // 2
                to_send.append(f"{self.guess}\n")
        return to_send


def test_guess_the_number_over_the_websocket(api: httpx.Client, stack: Stack, python_id: str) -> None:
    session_id = new_session(api, python_id, GUESS_THE_NUMBER)
    execution_id = start(api, session_id, args=["37"], time_limit_ms=20_000)
    player = Player()
    seen: list[dict[str, Any]] = []
    with connect(ws_url(stack, execution_id)) as socket:
        for message in messages(socket):
            seen.append(message)
            if message["type"] == "stdout":
                for guess in player.answers(message["data"]):
                    socket.send(json.dumps({"type": "stdin", "data": guess}))
    result = seen[-1]
    assert result["type"] == "result"
    execution = result["execution"]
    assert (execution["status"], execution["exit_code"], execution["interactive"]) == ("COMPLETED", 0, True)
    assert execution["stdout"].endswith("correct in 3\n")  # 50, 25, 37
    assert [m["status"] for m in seen if m["type"] == "status"][:2] == ["QUEUED", "RUNNING"]
    assert all("id" in message for message in seen)


def test_guess_the_number_over_grpc(api: httpx.Client, stack: Stack, python_id: str) -> None:
    session_id = new_session(api, python_id, GUESS_THE_NUMBER)
    with grpc.insecure_channel(f"127.0.0.1:{stack.config.execution_port}") as channel:
        stub = execution_pb2_grpc.ExecutionServiceStub(channel)
        created = stub.CreateExecution(
            execution_pb2.CreateExecutionRequest(
                session_id=session_id, interactive=True, args=["81"], time_limit_ms=20_000
            ),
            timeout=10,
        )
        outgoing: queue.Queue[execution_pb2.InteractRequest | None] = queue.Queue()
        outgoing.put(execution_pb2.InteractRequest(execution_id=created.execution.id))
        player = Player()
        final = None
        for event in stub.InteractExecution(iter(outgoing.get, None), timeout=60):
            if event.kind == "stdout":
                for guess in player.answers(event.data):
                    outgoing.put(execution_pb2.InteractRequest(stdin=guess.encode()))
            if event.kind == "result":
                final = event.execution
        outgoing.put(None)
    assert final is not None and final.status == execution_pb2.EXECUTION_STATUS_COMPLETED
    assert final.result.stdout.endswith("correct in 4\n")  # 50, 75, 88, 81


def play(socket: ClientConnection, *sent: dict[str, Any]) -> dict[str, Any]:
    """Sends `sent`, then reads until the result; the final execution."""
    for message in sent:
        socket.send(json.dumps(message))
    received = list(messages(socket))
    assert received[-1]["type"] == "result", received
    return received[-1]["execution"]  # type: ignore[no-any-return]


def test_input_sent_before_the_program_starts_waits_for_it(api: httpx.Client, stack: Stack, python_id: str) -> None:
    session_id = new_session(api, python_id, "import sys\nprint(sys.stdin.read().upper(), end='')\n")
    execution_id = start(api, session_id, stdin="given ")
    with connect(ws_url(stack, execution_id)) as socket:
        execution = play(socket, {"type": "stdin", "data": "typed"}, {"type": "close"})
    # The run's own stdin first, then what was typed; the close ends the program's read.
    assert (execution["status"], execution["stdout"]) == ("COMPLETED", "GIVEN TYPED")


def test_closing_the_socket_closes_stdin(api: httpx.Client, stack: Stack, python_id: str) -> None:
    session_id = new_session(api, python_id, "import sys\nprint(len(sys.stdin.read()))\n")
    execution_id = start(api, session_id, time_limit_ms=20_000)
    with connect(ws_url(stack, execution_id)) as socket:
        socket.send(json.dumps({"type": "stdin", "data": "four"}))
    execution = wait_terminal(api, execution_id)
    assert (execution["status"], execution["stdout"]) == ("COMPLETED", "4\n")
    assert execution["execution_time_ms"] < 15_000  # ended by the end of file, not by its time limit


def test_waiting_for_input_counts_toward_the_time_limit(api: httpx.Client, stack: Stack, python_id: str) -> None:
    session_id = new_session(api, python_id, "input()\n")
    execution_id = start(api, session_id, time_limit_ms=1000)
    with connect(ws_url(stack, execution_id)) as socket:
        execution = play(socket)
    assert (execution["status"], execution["reason"]) == ("TIMEOUT", "time_limit_exceeded:wall")


def test_base64_input_for_a_base64_run(api: httpx.Client, stack: Stack, python_id: str) -> None:
    source = "import sys\nsys.stdout.buffer.write(bytes(reversed(sys.stdin.buffer.read())))\n"
    session_id = new_session(api, python_id, source)
    execution_id = start(api, session_id, encoding="base64")
    with connect(ws_url(stack, execution_id)) as socket:
        execution = play(socket, {"type": "stdin", "data": "AP8B"}, {"type": "close"})  # 00 ff 01
    assert execution["stdout"] == "Af8A"  # 01 ff 00


def test_refused_messages_get_an_error_and_the_run_goes_on(api: httpx.Client, stack: Stack, python_id: str) -> None:
    session_id = new_session(api, python_id, "import sys\nprint(sys.stdin.read())\n")
    execution_id = start(api, session_id, time_limit_ms=20_000)
    with connect(ws_url(stack, execution_id)) as socket:
        refused = [
            "not json",
            json.dumps({"type": "stdin", "data": 5}),
            json.dumps({"type": "shout"}),
            json.dumps({"type": "stdin", "data": "x" * (64 * 1024 + 1)}),
        ]
        for text in refused:
            socket.send(text)
        socket.send(b"binary")
        statuses = []
        while len(statuses) < len(refused) + 1:
            message = json.loads(socket.recv(timeout=10))
            if message["type"] == "error":
                statuses.append(message["status"])
        assert sorted(statuses) == [400, 400, 400, 400, 413]
        execution = play(socket, {"type": "stdin", "data": "ok"}, {"type": "close"})
        assert execution["stdout"] == "ok\n"


def test_input_after_close_is_refused(api: httpx.Client, stack: Stack, python_id: str) -> None:
    session_id = new_session(api, python_id, "import sys, time\nprint(sys.stdin.read())\ntime.sleep(1)\n")
    execution_id = start(api, session_id, time_limit_ms=20_000)
    with connect(ws_url(stack, execution_id)) as socket:
        socket.send(json.dumps({"type": "close"}))
        socket.send(json.dumps({"type": "stdin", "data": "late"}))
        errors = [m for m in messages(socket) if m["type"] == "error"]
    assert [error["status"] for error in errors] == [409]
    assert wait_terminal(api, execution_id)["stdout"] == "\n"


@pytest.mark.parametrize("interactive", [False, True])
def test_interact_refusals(api: httpx.Client, stack: Stack, python_id: str, interactive: bool) -> None:
    session_id = new_session(api, python_id, "print(1)\n")
    accepted = api.post(f"/code-sessions/{session_id}/run", json={"interactive": interactive})
    execution_id = accepted.json()["execution_id"]
    plain = api.get(f"/executions/{execution_id}/interact")
    target = str(uuid4()) if interactive else execution_id
    with pytest.raises(InvalidStatus) as handshake:
        connect(ws_url(stack, target)).close()
    if interactive:
        # A plain GET of an interactive run: it is a WebSocket. An unknown run: 404.
        assert plain.status_code == 426 and "WebSocket" in plain.json()["error"]
        assert handshake.value.response.status_code == 404
    else:
        assert plain.status_code == 409 and "interactive" in plain.json()["error"]
        assert handshake.value.response.status_code == 409
    assert "error" in json.loads(handshake.value.response.body)


def test_interactive_must_be_a_boolean(api: httpx.Client, python_id: str) -> None:
    session_id = new_session(api, python_id, "print(1)\n")
    refused = api.post(f"/code-sessions/{session_id}/run", json={"interactive": "yes"})
    assert refused.status_code == 400 and "interactive" in refused.json()["error"]


def test_grpc_interact_on_a_run_that_is_not_interactive(api: httpx.Client, stack: Stack, python_id: str) -> None:
    session_id = new_session(api, python_id, "print(1)\n")
    execution_id = api.post(f"/code-sessions/{session_id}/run").json()["execution_id"]
    with grpc.insecure_channel(f"127.0.0.1:{stack.config.execution_port}") as channel:
        stub = execution_pb2_grpc.ExecutionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.InteractExecution(iter([execution_pb2.InteractRequest(execution_id=execution_id)]), timeout=10))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
