"""common.grpc_server's capacity over real channels: each service's own threads, health answered while
they are all busy, calls whose caller left dropped unrun, a bound on calls in flight, message sizes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common import healthcheck
from common.grpc_client import MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, channel
from common.grpc_server import RunningServer, start_server

BUSY = "lce.test.Busy"
OTHER = "lce.test.Other"
# Generous for a loaded 2-core machine; an answer that waits behind a busy thread would take WAIT_S.
PROMPT_S = 1.0
WAIT_S = 5.0


class Busy:
    """A service whose Hold calls hold their thread until released, and an echo beside it."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.started = 0
        self._lock = threading.Lock()

    def hold(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.started += 1
        self.released.wait(WAIT_S * 2)
        return b"held"

    def register(self, server: grpc.Server) -> None:
        echo = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    BUSY, {"Hold": grpc.unary_unary_rpc_method_handler(self.hold), "Echo": echo}
                ),
                grpc.method_handlers_generic_handler(OTHER, {"Echo": echo}),
            )
        )

    def wait_started(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while self.started < count:
            assert time.monotonic() < deadline, f"{self.started} of {count} calls started"
            time.sleep(0.01)


@contextmanager
def serving(busy: Busy, **capacity: int) -> Iterator[tuple[RunningServer, grpc.Channel]]:
    running = start_server("127.0.0.1:0", busy.register, [BUSY, OTHER], **capacity)
    client = channel(f"127.0.0.1:{running.port}")
    try:
        yield running, client
    finally:
        busy.released.set()
        client.close()
        running.stop(0)


def call(client: grpc.Channel, method: str) -> Callable[..., bytes]:
    return client.unary_unary(method)  # type: ignore[no-any-return]


def hold(client: grpc.Channel, count: int, timeout: float = WAIT_S * 2) -> list[grpc.Future]:
    return [call(client, f"/{BUSY}/Hold").future(b"", timeout=timeout) for _ in range(count)]


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def health_check(client: grpc.Channel) -> None:
    answer = health_pb2_grpc.HealthStub(client).Check(health_pb2.HealthCheckRequest(service=BUSY), timeout=WAIT_S)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_health_and_other_services_answer_while_every_thread_of_one_service_is_busy() -> None:
    busy = Busy()
    with serving(busy, threads_per_service=2) as (_, client):
        held = hold(client, 6)  # two running, four waiting for a thread of their service
        busy.wait_started(2)
        assert timed(lambda: health_check(client)) < PROMPT_S
        assert timed(lambda: call(client, f"/{OTHER}/Echo")(b"hi", timeout=WAIT_S)) < PROMPT_S
        # The busy service's own calls wait their turn: none is refused, none overtakes.
        echo = call(client, f"/{BUSY}/Echo").future(b"hi", timeout=WAIT_S * 2)
        time.sleep(0.2)
        assert not echo.done()
        busy.released.set()
        assert echo.result() == b"hi"
        assert [future.result() for future in held] == [b"held"] * 6


def test_each_method_answers_as_itself_on_every_call_and_unknown_ones_stay_unknown() -> None:
    """Handlers are wrapped once per method (common/grpc_server.py): later calls must still reach
    their own method, and a made-up name must never come to stand for one."""
    with serving(Busy()) as (_, client):
        for round_ in range(3):
            for service in (BUSY, OTHER):
                assert call(client, f"/{service}/Echo")(f"{service} {round_}".encode(), timeout=WAIT_S) == (
                    f"{service} {round_}".encode()
                )
            for name in (f"/{BUSY}/Nope", f"/{OTHER}/Hold", "/lce.test.Nowhere/Echo"):
                with pytest.raises(grpc.RpcError) as unknown:
                    call(client, name)(b"", timeout=WAIT_S)
                assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_call_whose_caller_left_while_it_waited_is_never_run() -> None:
    busy = Busy()
    with serving(busy, threads_per_service=1) as (_, client):
        first = hold(client, 1)[0]
        busy.wait_started(1)
        abandoned = hold(client, 1, timeout=0.3)[0]
        with pytest.raises(grpc.RpcError) as gave_up:
            abandoned.result()
        assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        busy.released.set()
        assert first.result() == b"held"
        time.sleep(0.2)
        assert busy.started == 1


def test_calls_beyond_the_bound_in_flight_are_refused_at_once() -> None:
    busy = Busy()
    with serving(busy, threads_per_service=1, max_calls_in_flight=3) as (running, client):
        held = hold(client, 3)
        busy.wait_started(1)
        with pytest.raises(grpc.RpcError) as refused:
            call(client, f"/{OTHER}/Echo")(b"hi", timeout=WAIT_S)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The bound refuses health checks too: the probe reads that as busy, not dead.
        assert healthcheck.check(f"127.0.0.1:{running.port}", timeout_s=WAIT_S)
        busy.released.set()
        assert [future.result() for future in held] == [b"held"] * 3
        assert call(client, f"/{OTHER}/Echo")(b"hi", timeout=WAIT_S) == b"hi"


def test_requests_up_to_the_bound_pass_and_larger_ones_are_refused_by_the_server() -> None:
    busy = Busy()
    with serving(busy) as (running, client):
        largest = b"x" * (MAX_REQUEST_BYTES - 64)
        assert len(call(client, f"/{OTHER}/Echo")(largest, timeout=WAIT_S)) == len(largest)
        # A client with no size limit of its own: only the server can refuse (the request, unread).
        limits = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        unbounded = grpc.insecure_channel(f"127.0.0.1:{running.port}", limits)
        with unbounded, pytest.raises(grpc.RpcError) as refused:
            unbounded.unary_unary(f"/{OTHER}/Echo")(b"x" * (MAX_REQUEST_BYTES + 1), timeout=WAIT_S)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_answers_over_the_response_bound_are_not_sent() -> None:
    def register(server: grpc.Server) -> None:
        sizes = grpc.unary_unary_rpc_method_handler(lambda request, context: b"x" * int(request))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(OTHER, {"Sized": sizes}),))

    running = start_server("127.0.0.1:0", register, [OTHER])
    try:
        with channel(f"127.0.0.1:{running.port}") as client:
            sized = client.unary_unary(f"/{OTHER}/Sized")
            assert len(sized(str(MAX_RESPONSE_BYTES - 64).encode(), timeout=WAIT_S)) == MAX_RESPONSE_BYTES - 64
            with pytest.raises(grpc.RpcError) as refused:
                sized(str(MAX_RESPONSE_BYTES + 1).encode(), timeout=WAIT_S)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        running.stop(0)
