"""A run's events as they arrive: Server-Sent Events lines (GET /executions/{id}/stream) and WebSocket
messages (GET /executions/{id}/interact) both become `Event`s (the format: gateway/run_stream.py)."""

from __future__ import annotations

import json
from typing import Any

from lce_client.errors import UnreachableError
from lce_client.models import Event, Execution


class SseParser:
    """Fed a stream's lines one by one; gives an Event at each blank line that ends one. Comments
    (keep-alives) and fields other than id, event and data are skipped, as the standard says."""

    def __init__(self) -> None:
        self._id = ""
        self._kind = ""
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            self._id = value
        elif name == "event":
            self._kind = value
        elif name == "data":
            self._data.append(value)
        return None

    def _dispatch(self) -> Event | None:
        kind, data = self._kind or "message", "\n".join(self._data)
        self._kind, self._data = "", []
        if not data:
            return None
        fields = json.loads(data)
        if kind == "result":
            return Event(kind, self._id, {}, Execution.from_json(fields))
        return Event(kind, self._id, fields)


def from_message(text: str | bytes) -> Event:
    """An Event of a WebSocket message: {"type", "id"?, fields...}; a result carries "execution"."""
    message: dict[str, Any] = json.loads(text)
    kind = message.pop("type")
    event_id = message.pop("id", "")
    if kind == "result":
        return Event(kind, event_id, {}, Execution.from_json(message["execution"]))
    return Event(kind, event_id, message)


MAX_RECONNECTS = 5  # in a row without an event between them
RECONNECT_PAUSE_S = 0.5


class StreamFollower:
    """Follows a run's event stream across connections: parses the lines of each, remembers the last
    event id to resume from (Last-Event-ID) and says when to give up."""

    def __init__(self, last_event_id: str | None) -> None:
        self.last_event_id = last_event_id
        self.done = False  # the result came: the stream is over
        self._parser = SseParser()
        self._failures = 0

    def take(self, line: str) -> Event | None:
        event = self._parser.feed(line)
        if event is not None:
            self.last_event_id = event.id or self.last_event_id
            self.done = event.kind == "result"
            self._failures = 0
        return event

    def ended(self, why: str) -> float:
        """The connection ended before the result: how long to pause before the next. Raises
        UnreachableError once it keeps ending without an event."""
        self._parser = SseParser()
        self._failures += 1
        if self._failures > MAX_RECONNECTS:
            raise UnreachableError(f"the run's event stream keeps breaking ({why})")
        return RECONNECT_PAUSE_S
