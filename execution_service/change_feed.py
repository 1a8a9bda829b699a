"""Which executions changed state, told as it happens to every replica's watchers (the gateways).

The replica that commits a transition hands the change (an ExecutionChange: the execution id,
and the final state when the run ended) to the WatchExecutions streams it serves at once, and
publishes it on one Redis channel (named after the deployment's queue: pub/sub channels ignore
Redis database numbers); every other replica hears it there and hands it to its own streams.
Each message starts with its publisher's origin, so that a replica skips its own. A gateway
keeps answers about unfinished executions in memory only while its stream vouches that no change
was missed, so that a client polling a running execution costs neither this service nor the
database a call per poll; a result carried by its change is answered without reading it back.

Redis pub/sub keeps nothing: a listener that lost its connection cannot know what it missed.
So it ends every stream it serves, their callers drop what they kept, and new streams are
refused until it listens again. Publishing happens on a thread of its own: a transition never
waits for Redis, and while Redis is away its announcements are dropped (the listeners are
deaf then too, and what the gateways kept expires within a second).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import suppress

import redis
import redis.exceptions
from google.protobuf.message import DecodeError

from common.errors import Unavailable
from lce.execution.v1.execution_pb2 import ExecutionChange

log = logging.getLogger(__name__)

# A stream holds one of the server's worker threads for its whole life: a bound keeps calls served.
MAX_WATCHERS = 8
# Announcements waiting for the publisher thread; beyond this they are dropped (see above).
# A carried result is at most servicer.MAX_CARRIED_BYTES (16 KiB): this bounds the backlog's memory too.
MAX_PENDING = 4_096
# Changes waiting for one stream's caller; a caller this far behind gets its stream ended (a gap).
MAX_UNSENT = 4_096
# One round trip publishes at most this much: Redis cuts off a subscriber that falls 32 MB behind.
MAX_BATCH_BYTES = 1024 * 1024
# A message on the channel: the publishing feed's random origin, then the serialized change.
_ORIGIN_BYTES = 8
# How long the listener blocks for a message before it looks whether it was told to stop.
_STOP_CHECK_S = 1.0
_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 10.0


class Watcher:
    """The changes one stream forwards, in order, until the feed ends it or its caller falls too far behind."""

    def __init__(self, max_unsent: int = MAX_UNSENT) -> None:
        self._changes: queue.Queue[ExecutionChange | None] = queue.Queue(maxsize=max_unsent)  # None: the end

    def __iter__(self) -> Iterator[ExecutionChange]:
        while (change := self._changes.get()) is not None:
            yield change

    def tell(self, change: ExecutionChange) -> None:
        try:
            self._changes.put_nowait(change)
        except queue.Full:
            self.end()  # its caller then misses changes: ending the stream tells it so

    def end(self) -> None:
        """Never blocks: what was not sent yet is dropped to make room for the end."""
        while True:
            try:
                self._changes.put_nowait(None)
                return
            except queue.Full:
                with suppress(queue.Empty):
                    self._changes.get_nowait()


class ChangeFeed:
    def __init__(
        self, publisher: redis.Redis, listener: redis.Redis, channel: str, *, max_watchers: int = MAX_WATCHERS
    ) -> None:
        self._publisher = publisher
        self._channel = channel
        self._listener = listener
        self._max_watchers = max_watchers
        self._lock = threading.Lock()
        self._watchers: set[Watcher] = set()
        self._listening = False
        self._stop = threading.Event()
        self._pending: queue.Queue[bytes] = queue.Queue(maxsize=MAX_PENDING)
        self._origin = os.urandom(_ORIGIN_BYTES)
        self._threads = [
            threading.Thread(target=self._listen, name="lce-change-listener", daemon=True),
            threading.Thread(target=self._publish_pending, name="lce-change-publisher", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Ends every stream (a draining server then has none left to wait for) and stops listening."""
        self._stop.set()
        self._set_listening(False)
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def publish(self, change: ExecutionChange) -> None:
        """Tells this replica's watchers now and every other replica's soon: the transition is
        committed already and must not wait (for Redis: a round trip and two thread hops)."""
        self._tell(change)
        try:
            self._pending.put_nowait(self._origin + change.SerializeToString())
        except queue.Full:
            log.warning("change announcements are backed up; dropping one", extra={"execution_id": change.execution_id})

    def _publish_pending(self) -> None:
        """Sends what is pending, up to MAX_BATCH_BYTES a round trip, until told to stop."""
        while not self._stop.is_set():
            try:
                first = self._pending.get(timeout=_STOP_CHECK_S)
            except queue.Empty:
                continue
            pipeline = self._publisher.pipeline(transaction=False)
            pipeline.publish(self._channel, first)
            batch_bytes = len(first)
            while batch_bytes < MAX_BATCH_BYTES and not self._pending.empty():
                change = self._pending.get_nowait()
                pipeline.publish(self._channel, change)
                batch_bytes += len(change)
            try:
                pipeline.execute()
            except redis.exceptions.RedisError as err:
                # Dropped: what the gateways keep expires on its own (gateway/execution_cache.py).
                log.warning("could not publish changes", extra={"error": repr(err)})

    def watch(self) -> Watcher:
        """A new stream's watcher; Unavailable while this replica is not listening, or serves enough streams."""
        watcher = Watcher()
        with self._lock:
            if not self._listening:
                raise Unavailable("the change feed is not listening to Redis")
            if len(self._watchers) >= self._max_watchers:
                raise Unavailable(f"this replica serves {self._max_watchers} change streams already")
            self._watchers.add(watcher)
        return watcher

    def forget(self, watcher: Watcher) -> None:
        with self._lock:
            self._watchers.discard(watcher)
        watcher.end()

    def _listen(self) -> None:
        backoff = _FIRST_BACKOFF_S
        while not self._stop.is_set():
            try:
                with self._listener.pubsub() as pubsub:
                    pubsub.subscribe(self._channel)
                    while not self._stop.is_set():
                        message = pubsub.get_message(timeout=_STOP_CHECK_S)
                        if message is None:
                            continue
                        if message["type"] == "subscribe":
                            # A second confirmation would mean a silent resubscription: a gap all the same.
                            self._set_listening(False)
                            self._set_listening(True)
                            backoff = _FIRST_BACKOFF_S
                        elif message["type"] == "message":
                            self._heard(message["data"])
            except redis.exceptions.RedisError as err:
                log.warning("change feed lost Redis; its streams are ended", extra={"error": repr(err)})
            finally:
                self._set_listening(False)
            self._stop.wait(backoff)
            backoff = min(_MAX_BACKOFF_S, backoff * 2)

    def _heard(self, data: bytes) -> None:
        origin, body = data[:_ORIGIN_BYTES], data[_ORIGIN_BYTES:]
        if origin == self._origin:
            return  # told already, by publish()
        try:
            change = ExecutionChange.FromString(body)
        except DecodeError:
            change = ExecutionChange()
        if not change.execution_id:
            # Not an announcement of ours: whatever it stood for cannot be passed on, a gap all the same.
            log.warning("undecodable message on the change channel; its streams are ended")
            self._set_listening(False)
            self._set_listening(True)
            return
        self._tell(change)

    def _tell(self, change: ExecutionChange) -> None:
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.tell(change)

    def _set_listening(self, listening: bool) -> None:
        """Going deaf ends every stream: changes may be missed from now on."""
        with self._lock:
            self._listening = listening and not self._stop.is_set()
            ended = [] if self._listening else list(self._watchers)
            if ended:
                self._watchers.clear()
        for watcher in ended:
            watcher.end()
