"""gateway/request_limits.py over real sockets: bounded heads and bodies, in size and in time, and the
gateway's answers to hostile JSON (never a 500, never superlinear)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import request_limits
from gateway.app import create_app
from gateway.request_limits import MAX_BODY_BYTES, MAX_HEAD_BYTES, MIB, BodyLimits, BoundedHttpToolsProtocol
from gateway.settings import GatewayConfig
from tests.conftest import free_port

# Short enough for a test, long enough for a loaded 2-core machine to answer the requests that are in time.
SHORT_TIMEOUT_S = 0.5
ANSWER_S = 5.0


async def echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body and answers its length; ?sleep=S first waits S seconds."""
    if scope["type"] != "http":
        return
    if scope["query_string"].startswith(b"sleep="):
        await asyncio.sleep(float(scope["query_string"][len(b"sleep=") :]))
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = json.dumps({"length": size}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serving(app: ASGIApp) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=BoundedHttpToolsProtocol, loop="uvloop", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + ANSWER_S
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(ANSWER_S)


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    with serving(BodyLimits(echo_length)) as port:
        yield port


@pytest.fixture(scope="module")
def gateway_port() -> Iterator[int]:
    # No backend listens there: every request below is answered before one would be called.
    nowhere = f"127.0.0.1:{free_port()}"
    config = GatewayConfig(listen_addr="127.0.0.1:0", session_service_addr=nowhere, execution_service_addr=nowhere)
    with serving(create_app(config)) as port:
        yield port


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request_limits, "HEAD_TIMEOUT_S", SHORT_TIMEOUT_S)
    monkeypatch.setattr(request_limits, "BODY_TIMEOUT_S", SHORT_TIMEOUT_S)


class Answer:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0] else 0
        self.headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}

    def json(self) -> dict[str, object]:
        return json.loads(self.body)  # type: ignore[no-any-return]


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(ANSWER_S)
    return sock


def read_answer(sock: socket.socket) -> Answer:
    """Everything the server sends until it closes the connection (the refusals close it)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return Answer(b"".join(chunks))


def send_until_answered(sock: socket.socket, pieces: Iterator[bytes]) -> int:
    """Sends pieces until the server stops reading (it answered and closed); the bytes sent."""
    sent = 0
    try:
        for piece in pieces:
            sock.sendall(piece)
            sent += len(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def request_head(method: str, path: str, *headers: str) -> bytes:
    return "\r\n".join((f"{method} {path} HTTP/1.1", "Host: test", *headers, "", "")).encode()


def post(port: int, path: str, body: bytes) -> Answer:
    with connect(port) as sock:
        head = request_head(
            "POST", path, "Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: close"
        )
        sock.sendall(head + body)
        return read_answer(sock)


def assert_refused(answer: Answer, status: int, words: str) -> None:
    assert answer.status == status, answer.body
    assert words in answer.json()["error"]
    assert answer.headers["connection"] == "close"


# --- bodies ------------------------------------------------------------------------------------


def test_a_declared_body_over_the_bound_is_refused_before_it_is_read(echo_port: int) -> None:
    with connect(echo_port) as sock:
        sock.sendall(request_head("POST", "/", f"Content-Length: {MAX_BODY_BYTES + 1}"))
        assert_refused(read_answer(sock), 413, "request body over")


def test_a_chunked_body_is_refused_once_it_passes_the_bound(echo_port: int) -> None:
    chunk = b"x" * MIB

    def pieces() -> Iterator[bytes]:
        yield request_head("POST", "/", "Transfer-Encoding: chunked")
        for _ in range(64):  # 64 MiB unless stopped
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)

    with connect(echo_port) as sock:
        sent = send_until_answered(sock, pieces())
        assert_refused(read_answer(sock), 413, "request body over")
    # What the socket buffers held besides: the server read little past its bound.
    assert sent < MAX_BODY_BYTES + 16 * MIB


def test_the_largest_legitimate_body_is_read_whole(echo_port: int) -> None:
    # A 1 MiB source of control characters, each of which JSON writes as \u00XX.
    body = json.dumps({"source_code": "\x01" * MIB}).encode()
    assert len(body) > 6 * MIB
    answer = post(echo_port, "/", body)
    assert answer.status == 200
    assert answer.json() == {"length": len(body)}


def test_a_body_that_does_not_arrive_in_time_is_refused(echo_port: int, short_timeouts: None) -> None:
    with connect(echo_port) as sock:
        sock.sendall(request_head("POST", "/", "Content-Length: 100") + b"only ten b")
        started = time.monotonic()
        assert_refused(read_answer(sock), 408, "request body not received")
    assert time.monotonic() - started < SHORT_TIMEOUT_S + ANSWER_S / 2


def test_a_request_handled_for_longer_than_the_timeouts_is_answered(echo_port: int, short_timeouts: None) -> None:
    answer = post(echo_port, f"/?sleep={SHORT_TIMEOUT_S * 3}", b"{}")
    assert answer.status == 200
    assert answer.json() == {"length": 2}


# --- heads -------------------------------------------------------------------------------------


def test_a_head_over_the_bound_is_refused_before_it_is_buffered(echo_port: int) -> None:
    def pieces() -> Iterator[bytes]:
        yield b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: "
        for _ in range(1024):  # 64 MiB unless stopped
            yield b"a" * 65536

    with connect(echo_port) as sock:
        sent = send_until_answered(sock, pieces())
        assert_refused(read_answer(sock), 431, "request head over")
    assert sent < 16 * MIB


def test_a_pipelined_head_is_bounded_while_the_response_before_it_is_on_its_way(echo_port: int) -> None:
    """A long response (a wait, a stream) once left the next request's head unbounded."""

    def pieces() -> Iterator[bytes]:
        yield request_head("GET", "/?sleep=3")  # answered in 3 s; meanwhile the next head arrives
        yield b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: "
        for _ in range(1024):  # 64 MiB unless stopped
            yield b"a" * 65536

    with connect(echo_port) as sock:
        sent = send_until_answered(sock, pieces())
        answer = read_answer(sock)
    assert sent < 16 * MIB
    assert answer.status == 431, answer.body[:200]


def test_a_head_under_the_bound_is_served(echo_port: int) -> None:
    with connect(echo_port) as sock:
        filler = "X-Filler: " + "a" * (MAX_HEAD_BYTES // 2)
        sock.sendall(request_head("GET", "/", filler, "Connection: close"))
        assert read_answer(sock).status == 200


def test_a_head_that_does_not_arrive_in_time_is_refused(echo_port: int, short_timeouts: None) -> None:
    with connect(echo_port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n")
        assert_refused(read_answer(sock), 408, "request head not received")


def test_a_connection_that_sends_nothing_is_closed(echo_port: int, short_timeouts: None) -> None:
    with connect(echo_port) as sock:
        started = time.monotonic()
        assert sock.recv(100) == b""
    assert time.monotonic() - started < SHORT_TIMEOUT_S + ANSWER_S / 2


# --- JSON at the gateway ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"language_id":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"language_id":' + b"[" * 500 + b"]" * 500 + b"}",
        b'{"language_id":' + b"9" * 1_000_000 + b"}",
        b"{" + b",".join(b'"k%d":0' % i for i in range(100_000)) + b"}",
        b'{"language_id":"\\ud800"}',
    ],
    ids=[
        "100k nested arrays",
        "100k nested objects",
        "500 nested arrays",
        "a million digits",
        "100k keys",
        "surrogate",
    ],
)
def test_hostile_json_is_answered_400_promptly(gateway_port: int, body: bytes) -> None:
    """Whatever the words (the routes' own), a client's mistake: never a 500, never slow."""
    started = time.monotonic()
    answer = post(gateway_port, "/code-sessions", body)
    assert answer.status == 400, answer.body
    assert isinstance(answer.json()["error"], str)
    assert time.monotonic() - started < ANSWER_S / 5


# --- bounded JSON objects --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b' \n{ "a" : 1 , "b":"x\\"y\\u00e9" ,"c":null,"d":true,"e":-1.5e3}\r\n',
        json.dumps({"source_code": "\x01\u2603\U0001f600" * 1000, "time_limit_ms": 2000}).encode(),
        json.dumps({"x": "y"}).encode("utf-16"),
        b'{"args":["a b","$(x)",""],"tests":[{"stdin":"1","args":[]},{}],"o":{"k":[1,2.5,null]}}',
    ],
)
def test_a_bounded_object_reads_as_json_loads_reads_it(raw: bytes) -> None:
    assert request_limits.bounded_json_object(raw) == json.loads(raw)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'{"a":1,}', "not valid JSON"),
        (b'{"a":1} {}', "not valid JSON"),
        (b'{"a" 1}', "not valid JSON"),
        (b"{a:1}", "not valid JSON"),
        (b'{"a":"\xff"}', "not valid JSON"),
        (b'{"a":' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b'{"a":[[[[1]]]]}', "nests deeper than 4 levels"),
        (b'{"a":[' + b"0," * 10_000 + b"0]}", "more than 10000 JSON values"),
        (b'{"a":[1,]}', "not valid JSON"),
        (b'{"a":[1 2]}', "not valid JSON"),
        (b'{"a":1,"a":2}', 'repeats the key "a"'),
    ],
)
def test_anything_else_is_refused_400(raw: bytes, error: str) -> None:
    with pytest.raises(request_limits.HttpError) as refused:
        request_limits.bounded_json_object(raw)
    assert refused.value.status == 400
    assert error in refused.value.message


@pytest.mark.parametrize(
    "raw",
    [
        b'{"junk":[' + b"[]," * (2 * MIB) + b"[]]}",
        b'{"junk":' + b"[" * (6 * MIB) + b"}",
        b'{"k":' + b'{"k":' * MIB + b"}",
    ],
    ids=["two million arrays", "six million brackets", "a million objects"],
)
def test_nested_documents_are_refused_without_being_built(raw: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(request_limits.HttpError):
        request_limits.bounded_json_object(raw)
    # json.loads takes ~0.7 s for the first (measured); this reads at most MAX_JSON_VALUES values of it.
    assert time.perf_counter() - started < 0.3


def test_a_large_object_takes_time_linear_in_its_size() -> None:
    def seconds(size: int) -> float:
        raw = json.dumps({"source_code": "\x01" * size, "language_id": "x"}).encode()
        started = time.perf_counter()
        request_limits.bounded_json_object(raw)
        return time.perf_counter() - started

    seconds(MIB // 8)  # warm
    small, large = min(seconds(MIB // 8) for _ in range(3)), min(seconds(MIB) for _ in range(3))
    assert large < 0.2
    assert large / small < 8 * 3  # eight times the input: linear, with room for a noisy machine
