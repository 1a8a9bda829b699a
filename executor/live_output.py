"""A run's output appended to its event stream while the program writes it (common/run_events.py).

The pump that drains the program's pipes only hands chunks over (`write`); a thread of this run
appends what came every OUTPUT_FLUSH_S, so the program is never slowed by Redis and a program that
writes a byte at a time costs one entry per interval, not one per byte. Each entry carries the
byte offset in its stream where its text begins: in UTF-8 a character split between two reads is
sent whole with the second (an incremental decoder); in base64 each entry encodes its own bytes.
"""

from __future__ import annotations

import base64
import codecs
import threading

from common.job import Encoding, as_text
from common.run_events import Kind, RunEvents

OUTPUT_FLUSH_S = 0.025
# The most output one entry carries: a flood becomes several entries, so a reader holds little at a time.
MAX_ENTRY_BYTES = 64 * 1024
_KINDS = {"stdout": Kind.STDOUT, "stderr": Kind.STDERR}


class LiveOutput:
    def __init__(self, events: RunEvents, execution_id: str, attempt: int, encoding: Encoding) -> None:
        self._events = events
        self._execution_id = execution_id
        self._attempt = attempt
        self._encoding = encoding
        self._pending = {name: bytearray() for name in _KINDS}
        self._sent_up_to = dict.fromkeys(_KINDS, 0)  # byte offset where the next entry's text begins
        self._received = dict.fromkeys(_KINDS, 0)
        self._decoders = {name: codecs.getincrementaldecoder("utf-8")(errors="replace") for name in _KINDS}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._flush_until_closed, name="lce-live-output", daemon=True)
        self._thread.start()

    def write(self, stream: str, chunk: bytes) -> None:
        """Called by the pump with each chunk it keeps of `stream` ("stdout" or "stderr")."""
        with self._lock:
            self._pending[stream] += chunk

    def close(self) -> None:
        """Sends what is left, a character cut at the end included; nothing is appended after."""
        self._closed.set()
        self._thread.join()
        self._flush(final=True)

    def _flush_until_closed(self) -> None:
        while not self._closed.wait(OUTPUT_FLUSH_S):
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        with self._lock:
            taken = {name: bytes(data) for name, data in self._pending.items()}
            for data in self._pending.values():
                data.clear()
        for stream, data in taken.items():
            pieces = [data[start : start + MAX_ENTRY_BYTES] for start in range(0, len(data), MAX_ENTRY_BYTES)]
            for number, piece in enumerate(pieces or [b""]):
                last = number == len(pieces) - 1 or not pieces
                if piece or final:
                    self._send(stream, piece, final and last)

    def _send(self, stream: str, data: bytes, final: bool) -> None:
        self._received[stream] += len(data)
        if self._encoding == Encoding.BASE64:
            text, end = base64.b64encode(data).decode("ascii"), self._received[stream]
        else:
            decoder = self._decoders[stream]
            text = as_text(decoder.decode(data, final))
            end = self._received[stream] - len(decoder.getstate()[0])  # a split character waits for its rest
        if not text:
            return
        offset, self._sent_up_to[stream] = self._sent_up_to[stream], end
        self._events.append(self._execution_id, _KINDS[stream], attempt=self._attempt, offset=offset, data=text)
