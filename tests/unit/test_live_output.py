"""A run's output in its event stream (executor/live_output.py over a real Redis), and how the gateway
replays a finished run whose stream is gone (gateway/run_stream.py)."""

from __future__ import annotations

import base64
import json
import socket
import time

import redis

from common.job import Encoding
from common.run_events import Kind, RunEvents, is_entry_id, stream_key
from executor.live_output import LiveOutput
from gateway import run_stream


def entries(redis_url: str, execution_id: str) -> list[dict[str, str]]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return [fields for _, fields in client.xrange(stream_key(execution_id))]


def test_a_character_split_between_reads_is_sent_whole_at_its_offset(redis_url: str) -> None:
    live = LiveOutput(RunEvents(redis.Redis.from_url(redis_url)), "e-1", 2, Encoding.UTF8)
    snowman = "☃".encode()  # three bytes
    live.write("stdout", b"ab" + snowman[:1])
    live._flush(final=False)
    live.write("stdout", snowman[1:] + b"c")
    live.write("stderr", b"\xff")
    live.close()
    sent = entries(redis_url, "e-1")
    stdout = [(e["offset"], e["data"]) for e in sent if e["kind"] == "stdout"]
    assert stdout == [("0", "ab"), ("2", "☃c")]
    assert [(e["offset"], e["data"], e["attempt"]) for e in sent if e["kind"] == "stderr"] == [("0", "\ufffd", "2")]


def test_base64_entries_carry_their_own_bytes(redis_url: str) -> None:
    live = LiveOutput(RunEvents(redis.Redis.from_url(redis_url)), "e-2", 1, Encoding.BASE64)
    live.write("stdout", b"\x00\xff")
    live._flush(final=False)
    live.write("stdout", b"\x80")
    live.close()
    stdout = [(int(e["offset"]), base64.b64decode(e["data"])) for e in entries(redis_url, "e-2")]
    assert stdout == [(0, b"\x00\xff"), (2, b"\x80")]


def test_nothing_is_sent_for_a_run_that_wrote_nothing(redis_url: str) -> None:
    LiveOutput(RunEvents(redis.Redis.from_url(redis_url)), "e-3", 1, Encoding.UTF8).close()
    assert entries(redis_url, "e-3") == []


FINISHED = {"execution_id": "e-4", "status": "COMPLETED", "stdout": "out\n", "stderr": "", "exit_code": 0}


def test_a_finished_run_without_a_stream_is_replayed_from_its_result() -> None:
    events = [event.sse().decode() for event in run_stream._replay(FINISHED, "0-0")]
    assert events == [
        'id: 0-1\nevent: status\ndata: {"status": "COMPLETED"}\n\n',
        'id: 0-2\nevent: stdout\ndata: {"offset": 0, "data": "out\\n"}\n\n',
        f"id: 0-3\nevent: result\ndata: {json.dumps(FINISHED)}\n\n",
    ]
    assert [event.id for event in run_stream._replay(FINISHED, "0-2")] == ["0-3"]


def test_events_as_websocket_messages() -> None:
    status, stdout, result = run_stream._replay(FINISHED, "0-0")
    assert json.loads(status.message()) == {"type": "status", "id": "0-1", "status": "COMPLETED"}
    assert json.loads(stdout.message()) == {"type": "stdout", "id": "0-2", "offset": 0, "data": "out\n"}
    assert json.loads(result.message()) == {"type": "result", "id": "0-3", "execution": FINISHED}


def test_only_stream_entry_ids_resume_a_stream() -> None:
    assert is_entry_id("1733370000000-0") and is_entry_id("0-3")
    for value in (None, "", "-", "1-", "-1", "a-1", "1-1-1", "1 -1", "٣-1", "1" * 50 + "-1"):
        assert not is_entry_id(value), value


def test_a_redis_that_hangs_costs_one_timeout_then_appends_pause() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        events = RunEvents.from_url(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        started = time.monotonic()
        for n in range(20):
            events.append("e-5", Kind.STDOUT, attempt=1, offset=n, data="x")  # never raises
        waited = time.monotonic() - started
    assert waited < 2 * 2.0  # one read timeout (2 s), not twenty


def test_a_flood_is_appended_in_entries_of_at_most_64_kib(redis_url: str) -> None:
    live = LiveOutput(RunEvents(redis.Redis.from_url(redis_url)), "e-6", 1, Encoding.UTF8)
    live.write("stdout", b"x" * (200 * 1024))
    live.close()
    sent = [(int(e["offset"]), len(e["data"])) for e in entries(redis_url, "e-6")]
    assert sent == [(0, 65536), (65536, 65536), (131072, 65536), (196608, 8192)]


def test_a_long_replayed_output_goes_in_pieces_with_byte_offsets() -> None:
    finished = {**FINISHED, "stdout": "é" * 70_000}
    pieces = [json.loads(e.data) for e in run_stream._replay(finished, "0-0")][1:-1]
    assert [(p["offset"], len(p["data"])) for p in pieces] == [(0, 65536), (131072, 4464)]
