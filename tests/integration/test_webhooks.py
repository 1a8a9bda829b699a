"""Webhooks on a stack of their own (a secret, a loopback receiver admitted by LCE_CALLBACK_ALLOW):
delivered signed, retried after a failure, kept across a restart of execution_service, and refused
where a request could reach inside (SSRF)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from devstack import Stack
from tests.conftest import RedisServer, free_port, fresh_database
from tests.integration.conftest import stack_config, wait_terminal

pytestmark = pytest.mark.integration

SECRET = "w" * 40
BOUND_S = 60


class Receiver:
    """An HTTP server on loopback that records each POST and answers from a script of statuses (then 200)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived_at: list[float] = []  # when each POST arrived (Unix seconds)
        self.script: list[int | str] = []  # a status, "redirect" or "drip" (an answer a byte at a time)
        self.arrived = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = receiver.script.pop(0) if receiver.script else 200
                if answer == "drip":
                    with contextlib.suppress(OSError):  # cut off by the sender, as it must be
                        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(0.1)
                elif answer == "redirect":
                    self.send_response(307)
                    self.send_header("Location", receiver.url("/elsewhere"))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_response(int(answer))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                with receiver.arrived:
                    receiver.arrived_at.append(time.time())
                    receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    receiver.arrived.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int) -> list[tuple[dict[str, str], bytes]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, BOUND_S), self.received
            return list(self.received)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class Hooked:
    def __init__(self, stack: Stack, receiver: Receiver, idle: Receiver) -> None:
        self.stack = stack
        self.receiver = receiver
        self.idle = idle  # admitted, but nothing listens until a test starts it
        self.api = httpx.Client(base_url=stack.config.gateway_url, timeout=30)


@pytest.fixture(scope="module")
def hooked(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooked]:
    receiver, idle = Receiver(free_port()), Receiver(free_port())
    with fresh_database("lce_hooks") as database_url:
        config = stack_config(
            tmp_path_factory.mktemp("hooked"),
            database_url=database_url,
            redis_url=redis_server.url.rsplit("/", 1)[0] + "/5",  # not the session stack's: its executors
            LCE_WEBHOOK_SECRET=SECRET,
            LCE_CALLBACK_ALLOW=f"127.0.0.1:{receiver.port},127.0.0.1:{idle.port}",
            # Quick retries, and enough of them to outlast a restart of execution_service.
            LCE_WEBHOOK_RETRY_S="0.3,1,1,1,2,2,2,5,5,5",
            LCE_WEBHOOK_TIMEOUT_S="1",  # a whole attempt, answer included
        )
        config.executors = 1
        stack = Stack(config)
        stack.start()
        receiver.start()
        hooked = Hooked(stack, receiver, idle)
        try:
            yield hooked
        finally:
            hooked.api.close()
            receiver.stop()
            idle.stop()
            stack.stop()


def run_with_callback(api: httpx.Client, callback_url: str, source: str = "print(6 * 7)\n") -> httpx.Response:
    languages = api.get("/languages").json()["languages"]
    python = next(language["id"] for language in languages if language["name"] == "python")
    session = api.post("/code-sessions", json={"language_id": python, "source_code": source}).json()["session_id"]
    return api.post(f"/code-sessions/{session}/run", json={"callback_url": callback_url})


def verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> None:
    """What a receiver does (README "Webhooks"): recompute the signature over the timestamp and the body."""
    fields = dict(part.split("=", 1) for part in headers["lce-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"])
    assert abs(time.time() - int(fields["t"])) < BOUND_S


def webhook_events(api: httpx.Client, execution_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + BOUND_S
    while True:
        events = [e for e in api.get(f"/executions/{execution_id}/events").json()["events"] if e["type"] == "WEBHOOK"]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def test_a_finished_run_is_posted_signed_and_retried_after_a_failure(hooked: Hooked) -> None:
    hooked.receiver.script = [500]
    before = len(hooked.receiver.received)
    accepted = run_with_callback(hooked.api, hooked.receiver.url())
    assert accepted.status_code == 202, accepted.text
    execution_id = accepted.json()["execution_id"]
    deliveries = hooked.receiver.wait_for(before + 2)[before:]
    headers, body = deliveries[-1]
    first_attempt_at = hooked.receiver.arrived_at[before]
    verify(headers, body)
    assert headers["lce-delivery"] == f"{execution_id}.1" and headers["content-type"] == "application/json"
    posted = json.loads(body)
    assert posted == hooked.api.get(f"/executions/{execution_id}").json()  # exactly what GET answers
    assert (posted["status"], posted["stdout"]) == ("COMPLETED", "42\n")
    events = webhook_events(hooked.api, execution_id, 2)
    assert [e["attempt"] for e in events] == [1, 2]
    assert events[0]["reason"].startswith("failed: HTTP 500") and "next attempt in 0.3 s" in events[0]["reason"]
    assert events[1]["reason"].startswith("delivered in")
    finished_at = datetime.fromisoformat(posted["finished_at"]).timestamp()
    print(f"\nfirst attempt {(first_attempt_at - finished_at) * 1000:.0f} ms after the run ended; {events}")


def test_a_redirect_is_not_followed_and_a_slow_answer_is_cut_off(hooked: Hooked) -> None:
    hooked.receiver.script = ["redirect", "drip"]
    before = len(hooked.receiver.received)
    execution_id = run_with_callback(hooked.api, hooked.receiver.url()).json()["execution_id"]
    events = webhook_events(hooked.api, execution_id, 3)
    assert events[0]["reason"].startswith("failed: HTTP 307")  # its Location was never asked
    assert events[1]["reason"].startswith("failed: TimeoutError")  # 4 s of answer, cut at 1 s
    assert int(events[1]["reason"].split(" after ")[1].split(" ms")[0]) < 2500
    assert events[2]["reason"].startswith("delivered in")
    paths_asked = {headers.get("lce-delivery") for headers, _ in hooked.receiver.received[before:]}
    assert paths_asked == {f"{execution_id}.1"} and len(hooked.receiver.received) - before == 3


def test_a_delivery_survives_a_restart_of_execution_service(hooked: Hooked) -> None:
    accepted = run_with_callback(hooked.api, hooked.idle.url("/later"))
    execution_id = accepted.json()["execution_id"]
    wait_terminal(hooked.api, execution_id)
    assert webhook_events(hooked.api, execution_id, 1)[0]["reason"].startswith("failed: ConnectionRefusedError")
    service = hooked.stack.find("execution_service")
    hooked.stack.stop_service(service)
    hooked.stack.start_service(service)
    hooked.idle.start()  # the receiver comes back only now: the outbox in the database was kept
    (headers, body), *_ = hooked.idle.wait_for(1)
    verify(headers, body)
    assert json.loads(body)["execution_id"] == execution_id
    assert webhook_events(hooked.api, execution_id, 10)[-1]["reason"].startswith("delivered in")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:1/hook", "not public"),  # loopback, a port not admitted
        ("http://localhost:{port}/hook", "not public"),  # a name that resolves to loopback (rebinding's end)
        ("https://169.254.169.254/latest/meta-data", "not public"),  # cloud metadata
        ("https://10.1.2.3/hook", "not public"),
        ("https://[::1]/hook", "not public"),
        ("https://[::ffff:127.0.0.1]/hook", "not public"),
        ("https://0.0.0.0/hook", "not public"),
        ("ftp://example.com/hook", "must be https"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("http:///nohost", "no host"),
        ("https://example.com/" + "x" * 2048, "longer than"),
    ],
)
def test_a_destination_inside_is_refused_at_submission(hooked: Hooked, url: str, why: str) -> None:
    refused = run_with_callback(hooked.api, url.format(port=hooked.receiver.port + 1))
    assert refused.status_code == 400, refused.text
    assert why in refused.json()["error"]


def test_a_callback_url_must_be_a_string(hooked: Hooked) -> None:
    refused = run_with_callback(hooked.api, 42)  # type: ignore[arg-type]
    assert refused.status_code == 400 and "callback_url" in refused.json()["error"]


def test_webhooks_are_off_without_a_secret(api: httpx.Client) -> None:
    refused = run_with_callback(api, "https://example.com/hook")
    assert refused.status_code == 400 and "LCE_WEBHOOK_SECRET" in refused.json()["error"]
