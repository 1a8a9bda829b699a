"""Answers GET /executions/{id} from memory, before any routing or backend call.

Each gateway process keeps two kinds of answer:
- A terminal execution's (TerminalExecutions). It changes again only when an operator retries a run
  the machinery failed (POST /executions/{id}/retry): the change feed announces that, and its answer
  goes; so does every one when the feed was away. Otherwise anyone reading it again costs the
  gateway one dictionary lookup. Bounded in bytes, least recently used out first.
- An unfinished execution's (LiveExecutions), which is what a client polling for a result asks
  over and over. It is kept only while the change feed (gateway/change_feed.py) vouches that
  execution_service announced no change of it since it was read, and never longer than
  LIVE_TTL_S: a feed failing in a way nobody noticed costs at most that much staleness.
Large answers are not kept.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth import PRINCIPAL

PREFIX = "/executions/"
MAX_BYTES = 32 * 1024 * 1024
MAX_ENTRY_BYTES = 256 * 1024
LIVE_TTL_S = 1.0
MAX_LIVE_ENTRIES = 10_000
# Changes remembered by execution id, so that a read that overlapped a change is not kept.
MAX_REMEMBERED_CHANGES = 10_000


class TerminalExecutions:
    """Serialized answers by canonical execution id, least recently used evicted first."""

    def __init__(self, max_bytes: int = MAX_BYTES, max_entry_bytes: int = MAX_ENTRY_BYTES) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._bytes = 0
        self._answers: OrderedDict[str, tuple[str, bytes]] = OrderedDict()  # id -> (tenant, answer)

    def get(self, execution_id: str, tenant: str) -> bytes | None:
        """The answer, if the execution is `tenant`'s (another tenant's is not there at all)."""
        entry = self._answers.get(execution_id)
        if entry is None or entry[0] != tenant:
            return None
        self._answers.move_to_end(execution_id)
        return entry[1]

    def put(self, execution_id: str, tenant: str, answer: bytes) -> None:
        if len(answer) > self.max_entry_bytes or execution_id in self._answers:
            return
        self._answers[execution_id] = (tenant, answer)
        self._bytes += len(answer)
        while self._bytes > self.max_bytes:
            _, (_, evicted) = self._answers.popitem(last=False)
            self._bytes -= len(evicted)

    def discard(self, execution_id: str) -> None:
        """The execution is unfinished again (an operator retried it)."""
        entry = self._answers.pop(execution_id, None)
        if entry is not None:
            self._bytes -= len(entry[1])

    def clear(self) -> None:
        self._answers.clear()
        self._bytes = 0


@dataclass(frozen=True)
class Ticket:
    """Taken before a backend read: the feed's state then, which decides whether the answer may be kept."""

    epoch: int
    changes: int


class LiveExecutions:
    """Answers about unfinished executions, by canonical id, valid until the feed announces a change.

    The feed's events arrive on the same event loop as the requests, so there is no lock: the
    race to close is a read in flight while its execution changes. A read takes a ticket first;
    its answer is kept only if no change of that execution was announced since, and the feed
    stayed up all along (a reconnect may have missed changes: the epoch moves).
    """

    def __init__(
        self,
        *,
        ttl_s: float = LIVE_TTL_S,
        max_entries: int = MAX_LIVE_ENTRIES,
        max_remembered: int = MAX_REMEMBERED_CHANGES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_remembered = max_remembered
        self._clock = clock
        # id -> (expires at, tenant, answer)
        self._answers: OrderedDict[str, tuple[float, str, bytes]] = OrderedDict()
        self._changed: OrderedDict[str, int] = OrderedDict()  # id -> number of its latest change
        self._changes = 0
        self._forgotten_up_to = 0  # changes numbered up to this may be forgotten from _changed
        self._epoch = 0
        self._live = False

    @property
    def live(self) -> bool:
        return self._live

    def ticket(self) -> Ticket:
        return Ticket(self._epoch, self._changes)

    def vouches(self, execution_id: str, ticket: Ticket) -> bool:
        """Whether the feed, live since the ticket was taken, announced no change of the execution since."""
        if not self._live or ticket.epoch != self._epoch or ticket.changes < self._forgotten_up_to:
            return False
        return self._changed.get(execution_id, 0) <= ticket.changes

    def put(self, execution_id: str, tenant: str, answer: bytes, ticket: Ticket) -> None:
        if not self.vouches(execution_id, ticket) or len(answer) > MAX_ENTRY_BYTES:
            return
        self._answers[execution_id] = (self._clock() + self.ttl_s, tenant, answer)
        self._answers.move_to_end(execution_id)
        if len(self._answers) > self.max_entries:
            self._answers.popitem(last=False)

    def get(self, execution_id: str, tenant: str) -> bytes | None:
        """The answer, if still vouched for and the execution is `tenant`'s."""
        entry = self._answers.get(execution_id)
        if entry is None:
            return None
        expires_at, owner, answer = entry
        if self._clock() >= expires_at:
            del self._answers[execution_id]
            return None
        return answer if owner == tenant else None

    def changed(self, execution_id: str) -> bool:
        """Forgets the execution's answer; True when one was kept and fresh (someone polls it)."""
        entry = self._answers.pop(execution_id, None)
        kept = entry is not None and self._clock() < entry[0]
        self._changes += 1
        self._changed[execution_id] = self._changes
        self._changed.move_to_end(execution_id)
        if len(self._changed) > self.max_remembered:
            _, self._forgotten_up_to = self._changed.popitem(last=False)
        return kept

    def feed_up(self) -> None:
        """The feed is live: every change from now on will be announced."""
        self._epoch += 1
        self._live = True

    def feed_down(self) -> None:
        """Changes may be missed from now on: nothing kept can be vouched for."""
        self._epoch += 1
        self._live = False
        self._answers.clear()
        self._changed.clear()
        self._forgotten_up_to = self._changes


class ServeKnownExecutions:
    """ASGI middleware: an answer kept in memory leaves at once; everything else goes on to the app."""

    def __init__(self, app: ASGIApp, terminal: TerminalExecutions, live: LiveExecutions) -> None:
        self.app = app
        self.terminal = terminal
        self.live = live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self._known(scope)
        if answer is None:
            await self.app(scope, receive, send)
            return
        headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    def _known(self, scope: Scope) -> bytes | None:
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        path: str = scope["path"]
        if not path.startswith(PREFIX) or b"wait" in scope.get("query_string", b""):
            return None  # a read that waits for the run to end (or a malformed one) is the route's to answer
        # Ids are stored in canonical (lowercase) form; an upper-case spelling of one is the same execution.
        execution_id = path[len(PREFIX) :].lower()
        tenant = PRINCIPAL.get().caller.tenant  # set by the authentication in front (gateway/auth.py)
        # A terminal answer only while the change feed is live: it is what announces an operator's retry.
        terminal = self.terminal.get(execution_id, tenant) if self.live.live else None
        return terminal or self.live.get(execution_id, tenant)
