"""Hostile input through the whole system: the worst sources we know, 1 MiB each, run from several
sessions at once as fast as the rate limits let them through, while an ordinary client checks
health and runs a hello world. The ordinary client must be answered promptly throughout, and
every run accepted must end. The figures (health and whole-run latency under attack) are printed
with -s and carried by every failure message.

The system under attack is a stack of its own (own database, Redis database and queue): a
service frozen by the attack is stopped with it, and no other test waits behind its queue.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from devstack import Stack
from tests.conftest import RedisServer, fresh_database
from tests.integration.conftest import TERMINAL, stack_config

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
# How long the attack lasts, and the bounds on what the ordinary client sees meanwhile.
ATTACK_S = 20.0
HEALTH_P99_BOUND_S = 3.0
RUN_BOUND_S = 30.0
# The accepted attack runs still queued when it stops need this at most on two executors.
DRAIN_BOUND_S = 60.0
HEALTH_EVERY_S = 0.05
ORDINARY_RUN_EVERY_S = 2.0
ATTACK_PAUSE_S = 0.5
# A client's own timeout: far above every bound, so that a frozen service is measured, not waited for.
CLIENT_TIMEOUT_S = 15.0


def filled(prefix: str, unit: str, suffix: str = "") -> str:
    """prefix + unit repeated + suffix, as close to 1 MiB of UTF-8 as the unit allows."""
    return prefix + unit * ((MIB - len(prefix) - len(suffix)) // len(unit)) + suffix


# (language, source): each was slow, or worse, for some scanner, parser or compiler somewhere.
HOSTILE_SOURCES = {
    # Half a million escaped quotes and no closing one: a backtracking string pattern goes quadratic.
    "js_unclosed_string": ("javascript", filled('let s = "', '\\"')),
    "js_endless_loops": ("javascript", filled("", "while(1){")),
    "js_deep_nesting": ("javascript", filled("x = ", "[")),
    "go_endless_loops": ("go", filled("package main\nfunc main() {\n", "for {")),
    "python_long_list": ("python", filled("a = 1\ny = [", "a,", "]\n")),
    "python_deep_nesting": ("python", filled("x = ", "(")),
    "c_unclosed_comments": ("c", filled("int main(void) { return 0; }\n", "/*")),
}
HELLO = "print('hello')\n"


@dataclass
class Observed:
    """What the clients saw; threads append, the test reads once they are done."""

    health_s: list[float] = field(default_factory=list)
    health_failures: list[str] = field(default_factory=list)
    run_s: list[float] = field(default_factory=list)
    run_failures: list[str] = field(default_factory=list)
    attack_answers: Counter[int] = field(default_factory=Counter)
    accepted: list[str] = field(default_factory=list)

    def figures(self) -> str:
        return (
            f"hostile input: health {spread(self.health_s)}; ordinary run {spread(self.run_s)};"
            f" attack answers {dict(self.attack_answers)}"
        )


def percentile(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, (len(ordered) * q) // 100)]


def spread(values: list[float]) -> str:
    if not values:
        return "none measured"
    p50, p99, top = (percentile(values, q) * 1000 for q in (50, 99, 100))
    return f"p50 {p50:.0f} ms p99 {p99:.0f} ms max {top:.0f} ms (n={len(values)})"


@pytest.fixture(scope="module")
def hostile_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("hostile")
    own_redis = redis_server.url.rsplit("/", 1)[0] + "/7"
    with fresh_database("lce_hostile") as database_url:
        stack = Stack(stack_config(tmp, database_url=database_url, redis_url=own_redis, LCE_QUEUE_NAME="lce-hostile"))
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


@pytest.fixture(scope="module")
def client(hostile_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hostile_stack.config.gateway_url, timeout=CLIENT_TIMEOUT_S) as http:
        yield http


def session_with(client: httpx.Client, language_ids: dict[str, str], language: str, source: str) -> str:
    created = client.post("/code-sessions", json={"language_id": language_ids[language]})
    assert created.status_code == 201, created.text
    session_id: str = created.json()["session_id"]
    saved = client.patch(f"/code-sessions/{session_id}", json={"source_code": source})
    assert saved.status_code == 200, f"{language} source of {len(source.encode())} bytes: {saved.text}"
    return session_id


def until(stop: threading.Event, every_s: float, action: Callable[[], None]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        action()
        stop.wait(max(0.0, every_s - (time.monotonic() - started)))


def check_health(http: httpx.Client, observed: Observed) -> None:
    started = time.monotonic()
    try:
        answer = http.get("/health")
        if answer.status_code != 200:
            observed.health_failures.append(f"{answer.status_code} {answer.text}")
    except httpx.HTTPError as err:
        observed.health_failures.append(repr(err))
    observed.health_s.append(time.monotonic() - started)


def ordinary_run(http: httpx.Client, session_id: str, observed: Observed) -> None:
    """One hello world, from the POST to its terminal status seen."""
    started = time.monotonic()
    try:
        accepted = http.post(f"/code-sessions/{session_id}/run", json={})
        if accepted.status_code != 202:
            observed.run_failures.append(f"run answered {accepted.status_code}: {accepted.text}")
            return
        execution_id = accepted.json()["execution_id"]
        while time.monotonic() - started < RUN_BOUND_S:
            body = http.get(f"/executions/{execution_id}").json()
            if body["status"] in TERMINAL:
                if (body["status"], body["stdout"]) != ("COMPLETED", "hello\n"):
                    observed.run_failures.append(f"{execution_id} ended {body['status']}: {body}")
                observed.run_s.append(time.monotonic() - started)
                return
            time.sleep(0.05)
        observed.run_failures.append(f"{execution_id} not terminal {RUN_BOUND_S:.0f} s after its POST")
    except httpx.HTTPError as err:
        observed.run_failures.append(repr(err))
    observed.run_s.append(time.monotonic() - started)


def attack(http: httpx.Client, session_id: str, observed: Observed, stop: threading.Event) -> None:
    """Runs the session's source again and again: at once after a 202, as soon as allowed (or
    ATTACK_PAUSE_S, if sooner) after a 429, ATTACK_PAUSE_S after anything else."""
    while not stop.is_set():
        try:
            answer = http.post(f"/code-sessions/{session_id}/run", json={})
        except httpx.HTTPError:
            observed.attack_answers[0] += 1
            continue
        observed.attack_answers[answer.status_code] += 1
        if answer.status_code == 202:
            observed.accepted.append(answer.json()["execution_id"])
        else:
            retry_after = answer.json().get("retryAfter", ATTACK_PAUSE_S) if answer.status_code == 429 else 0
            stop.wait(min(float(retry_after), ATTACK_PAUSE_S) or ATTACK_PAUSE_S)


def unfinished(http: httpx.Client, execution_ids: list[str]) -> list[str]:
    return [e for e in execution_ids if http.get(f"/executions/{e}").json()["status"] not in TERMINAL]


def test_ordinary_clients_are_served_while_hostile_sources_are_run(client: httpx.Client) -> None:
    language_ids = {language["name"]: language["id"] for language in client.get("/languages").json()["languages"]}
    attackers = [session_with(client, language_ids, *hostile) for hostile in HOSTILE_SOURCES.values()]
    # Two sessions take turns, so that the ordinary client stays within its own rate limit.
    ordinary = [session_with(client, language_ids, "python", HELLO) for _ in range(2)]
    turns = iter(ordinary * 100)

    observed = Observed()
    stop = threading.Event()
    clients = [httpx.Client(base_url=client.base_url, timeout=CLIENT_TIMEOUT_S) for _ in range(len(attackers) + 2)]
    threads = [
        threading.Thread(target=attack, args=(http, session_id, observed, stop))
        for http, session_id in zip(clients, attackers, strict=False)
    ]
    threads.append(
        threading.Thread(target=until, args=(stop, HEALTH_EVERY_S, lambda: check_health(clients[-2], observed)))
    )
    threads.append(
        threading.Thread(
            target=until, args=(stop, ORDINARY_RUN_EVERY_S, lambda: ordinary_run(clients[-1], next(turns), observed))
        )
    )
    for thread in threads:
        thread.start()
    time.sleep(ATTACK_S)
    stop.set()
    for thread in threads:
        thread.join(RUN_BOUND_S + CLIENT_TIMEOUT_S)
    for http in clients:
        http.close()

    deadline = time.monotonic() + DRAIN_BOUND_S
    left = unfinished(client, observed.accepted)
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = unfinished(client, left)
    figures = observed.figures()
    print(f"\n{figures}; {len(observed.accepted)} attack runs accepted, {len(left)} unfinished")

    assert not observed.health_failures, f"{observed.health_failures[:3]}: {figures}"
    assert observed.health_s and percentile(observed.health_s, 99) < HEALTH_P99_BOUND_S, figures
    assert not observed.run_failures, f"{observed.run_failures[:3]}: {figures}"
    assert observed.run_s and max(observed.run_s) < RUN_BOUND_S, figures
    assert not observed.attack_answers.keys() - {202, 429}, f"attack answers beside 202 and 429: {figures}"
    assert observed.accepted, f"no attack run was accepted: {figures}"
    assert not left, f"{len(left)} accepted runs not terminal {DRAIN_BOUND_S:.0f} s after the attack: {figures}"


# --- hostile requests, made by hand ------------------------------------------------------------

ORIGINAL_SOURCE = "print('original')\n"
# Every escape JSON allows in a string, and characters written as themselves (DEL needs no escape),
# then what the string reads as.
WRITTEN = (
    rb'"q\" b\\ s\/ \b\f\n\r\t \u0041\u00e9\u00E9\u20ac \ud83d\ude00 \u0001\u001f\u007f\u2028'
    + " é€😀 \x7f".encode()
    + b'"'
)
READ = 'q" b\\ s/ \b\f\n\r\t Aéé€ 😀 \x01\x1f\x7f\u2028 é€😀 \x7f'


@pytest.fixture
def session_id(client: httpx.Client) -> str:
    python_id = next(item["id"] for item in client.get("/languages").json()["languages"] if item["name"] == "python")
    created = client.post("/code-sessions", json={"language_id": python_id, "source_code": ORIGINAL_SOURCE})
    assert created.status_code == 201, created.text
    return created.json()["session_id"]  # type: ignore[no-any-return]


def assert_refused(response: httpx.Response, status: int, words: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert isinstance(message, str) and words in message, message


def patch_raw(client: httpx.Client, session_id: str, body: bytes) -> httpx.Response:
    return client.patch(f"/code-sessions/{session_id}", content=body, headers={"Content-Type": "application/json"})


def source_of(client: httpx.Client, session_id: str) -> str:
    return client.get(f"/code-sessions/{session_id}").json()["source_code"]  # type: ignore[no-any-return]


def test_every_json_string_escape_is_read_exactly(client: httpx.Client, session_id: str) -> None:
    # An escaped key is the same key.
    saved = patch_raw(client, session_id, b'{"source\\u005fcode": ' + WRITTEN + b"}")
    assert saved.status_code == 200, saved.text
    assert source_of(client, session_id) == READ


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (rb'{"source_code": "\ud800"}', "lone surrogates"),
        (rb'{"source_code": "x\udc00"}', "lone surrogates"),
        (rb'{"source_code": "\ude00\ud83d"}', "lone surrogates"),
        (b'{"source_code": "\xed\xa0\x80"}', ""),  # a surrogate written in UTF-8 itself
        (b'{"files": [{"name": "a.py", "content": "\\udfff"}]}', "lone surrogates"),
        (rb'{"source_code": "\x"}', "not valid JSON"),
        (rb'{"source_code": "\u12"}', "not valid JSON"),
        (b'{"source_code": "tab\tinside"}', "not valid JSON"),  # a control character must be escaped
        (b'{"source_code": "\xff"}', "not valid JSON"),
        (b'{"source_code": "\\u0000"}', "NUL"),
        (b'{"source_code": "print(1)\\u0000"}', "NUL"),
        (b'{"files": [{"name": "a.py", "content": "\\u0000"}]}', "NUL"),
        (b'{"files": [{"name": "a\\u0000.py", "content": ""}]}', ""),
        (b'{"source_code": "a", "source_code": "b"}', 'repeats the key "source_code"'),
        (b'{"source_code": "a", "source\\u005fcode": "b"}', 'repeats the key "source_code"'),
        (b'{"source_code": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "nests deeper"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nests deeper"),
    ],
    ids=[
        "lone high surrogate",
        "lone low surrogate",
        "surrogates reversed",
        "surrogate in UTF-8",
        "surrogate in a file",
        "unknown escape",
        "short escape",
        "raw control character",
        "invalid UTF-8",
        "NUL",
        "NUL after code",
        "NUL in a file",
        "NUL in a file name",
        "duplicate key",
        "duplicate key, escaped",
        "10000 nested arrays",
        "10000 nested objects",
    ],
)
def test_a_refused_string_leaves_the_source_as_it_was(
    client: httpx.Client, session_id: str, body: bytes, words: str
) -> None:
    started = time.monotonic()
    assert_refused(patch_raw(client, session_id, body), 400, words)
    assert time.monotonic() - started < 1.0
    assert source_of(client, session_id) == ORIGINAL_SOURCE


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("multipart/form-data; boundary=x", 415),
        ("application/jsonp", 415),
        ("application/json-patch+json", 415),
        ("", 415),  # sent without a Content-Type at all
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
    ],
)
def test_a_body_must_be_declared_json(client: httpx.Client, session_id: str, content_type: str, status: int) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.patch(f"/code-sessions/{session_id}", content=b'{"source_code": "print(2)"}', headers=headers)
    if status == 200:
        assert response.status_code == 200, response.text
        assert source_of(client, session_id) == "print(2)"
    else:
        assert_refused(response, status, "Content-Type: application/json")
        assert source_of(client, session_id) == ORIGINAL_SOURCE


def test_an_empty_body_needs_no_content_type(client: httpx.Client, session_id: str) -> None:
    # The body of a run is optional: no body, no type. (The session is closed: nothing runs.)
    assert client.patch(f"/code-sessions/{session_id}/close").status_code == 200
    assert_refused(client.post(f"/code-sessions/{session_id}/run"), 409)
    assert_refused(client.post(f"/code-sessions/{session_id}/run", headers={"Content-Type": "text/plain"}), 409)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"time_limit_ms": 1e999}', "out of range"),
        (b'{"time_limit_ms": ' + b"1" + b"0" * 400 + b"}", "out of range"),
        (b'{"time_limit_ms": -' + b"9" * 400 + b"}", "out of range"),
        (b'{"time_limit_ms": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b'{"time_limit_ms": -0}', "between 100 and 60000, got 0"),
        (b'{"time_limit_ms": 1.0}', "must be an integer"),
        (b'{"time_limit_ms": 2e3}', "must be an integer"),
        (b'{"memory_limit_mb": 4294967424}', "out of range"),
        (b'{"time_limit_ms": NaN}', "NaN is not a JSON value"),
        (b'{"compare": "tokens", "float_tolerance": Infinity, "tests": [{}]}', "Infinity is not a JSON value"),
        (b'{"compare": "tokens", "float_tolerance": -Infinity, "tests": [{}]}', "-Infinity is not a JSON value"),
        (b'{"compare": "tokens", "float_tolerance": -1e999, "tests": [{}]}', "out of range"),
        (b'{"args": ["a\\u0000b"]}', "NUL"),
        (b'{"stdin": "\\ud800"}', "lone surrogates"),
        (b'{"encoding": "base64", "stdin": "\\u00f5"}', "stdin is not valid base64"),
        (b'{"encoding": "base64", "stdin": "not base64!"}', "stdin is not valid base64"),
        (b'{"time_limit_ms": 1000, "time_limit_ms": 2000}', "repeats the key"),
    ],
)
def test_a_refused_run_creates_nothing(client: httpx.Client, session_id: str, body: bytes, words: str) -> None:
    response = client.post(
        f"/code-sessions/{session_id}/run", content=body, headers={"Content-Type": "application/json"}
    )
    assert_refused(response, 400, words)
    assert client.get(f"/code-sessions/{session_id}/executions").json()["executions"] == []


def test_nul_in_stdin_is_data(client: httpx.Client, session_id: str) -> None:
    saved = client.patch(
        f"/code-sessions/{session_id}", json={"source_code": "import sys\nprint(sys.stdin.buffer.read().hex())\n"}
    )
    assert saved.status_code == 200, saved.text
    accepted = client.post(f"/code-sessions/{session_id}/run?wait=30", json={"stdin": "a\u0000b"})
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["status"], accepted.json()["stdout"]) == ("COMPLETED", "610062\n")


def raw_exchange(stack: Stack, request: bytes) -> bytes:
    """Sends `request` on a connection of its own and reads until the server closes it."""
    with socket.create_connection((stack.config.host, stack.config.gateway_port), timeout=CLIENT_TIMEOUT_S) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def json_refusal(answer: bytes, status: int) -> str:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].split()[1] == str(status), answer[:300]
    assert "content-type: application/json" in (line.lower() for line in lines[1:])
    return json.loads(body)["error"]  # type: ignore[no-any-return]


def test_a_request_of_too_many_header_fields_is_refused(hostile_stack: Stack) -> None:
    fields = "".join(f"X-Field-{n}: {n}\r\n" for n in range(500)).encode()
    answer = raw_exchange(hostile_stack, b"GET /health HTTP/1.1\r\nHost: lce\r\n" + fields + b"\r\n")
    assert "more than 100 header fields" in json_refusal(answer, 431)
    # As many as a browser and a proxy or two send are served.
    fields = "".join(f"X-Field-{n}: {n}\r\n" for n in range(60)).encode()
    answer = raw_exchange(
        hostile_stack, b"GET /health HTTP/1.1\r\nHost: lce\r\nConnection: close\r\n" + fields + b"\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /health HTTP/1.1\r\nHost: lce\r\nX-Nul: a\x00b\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: lce\r\nBad Name: x\r\n\r\n",
        b"POST /code-sessions HTTP/1.1\r\nHost: lce\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
        b"POST /code-sessions HTTP/1.1\r\nHost: lce\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /code-sessions HTTP/1.1\r\nHost: lce\r\nContent-Length: -1\r\n\r\n",
        b"NOT-HTTP\r\n\r\n",
    ],
    ids=["NUL in a header", "space in a name", "length and chunks", "two lengths", "negative length", "not HTTP"],
)
def test_a_malformed_request_is_refused_in_json(hostile_stack: Stack, request_bytes: bytes) -> None:
    assert json_refusal(raw_exchange(hostile_stack, request_bytes), 400) == "malformed HTTP request"
