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
waits for Redis. Announcements it could not send are dropped, and the next round trip that
goes through first announces a gap (the origin alone): every other replica then ends its
streams the same way. Whatever slips through all that expires within a second at the gateways.
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
# A publishing round trip carries about this much at most, whatever the backlog (up to 64 MiB).
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
        self._lock = threading.Lock()
        self._ended = False

    def __iter__(self) -> Iterator[ExecutionChange]:
        while (change := self._changes.get()) is not None:
            yield change

    def tell(self, change: ExecutionChange) -> bool:
        """False once the stream is over, or when this change ends it: its caller fell too far behind."""
        with self._lock:
            if self._ended:
                return False
            try:
                self._changes.put_nowait(change)
                return True
            except queue.Full:
                self._end()  # its caller misses changes from here on: ending the stream tells it so
                return False

    def end(self) -> None:
        """Never blocks; nothing is forwarded after it."""
        with self._lock:
            self._end()

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        # The end goes last: what was not sent yet makes room for it (the caller drops everything anyway).
        while True:
            try:
                self._changes.put_nowait(None)
                return
            except queue.Full:
                with suppress(queue.Empty):
                    self._changes.get_nowait()


class ChangeFeed:
    def __init__(
        self,
        publisher: redis.Redis,
        listener: redis.Redis,
        channel: str,
        *,
        max_watchers: int = MAX_WATCHERS,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._publisher = publisher
        self._channel = channel
        self._listener = listener
        self._max_watchers = max_watchers
        self._lock = threading.Lock()
        self._watchers: set[Watcher] = set()
        self._listening = False
        self._serving = True  # False once the streams were ended for good (end_streams)
        self._stop = threading.Event()
        self._dropped = threading.Event()  # an announcement never reached Redis
        self._pending: queue.Queue[bytes] = queue.Queue(maxsize=max_pending)
        self._origin = os.urandom(_ORIGIN_BYTES)
        self._threads = [
            threading.Thread(target=self._listen, name="lce-change-listener", daemon=True),
            threading.Thread(target=self._publish_pending, name="lce-change-publisher", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def end_streams(self) -> None:
        """Ends every stream and refuses new ones (a draining server then has none left to wait for);
        the changes that the calls still draining commit are published all the same."""
        with self._lock:
            self._serving = False
        self._set_listening(False)

    def close(self) -> None:
        """Ends the streams, sends what is pending, stops listening and publishing."""
        self.end_streams()
        self._stop.set()
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
            self._dropped.set()
            log.warning("change announcements are backed up; dropping one", extra={"execution_id": change.execution_id})

    def _publish_pending(self) -> None:
        """Sends what is pending, about MAX_BATCH_BYTES a round trip, until told to stop and all is sent."""
        owe_gap = False
        while not (self._stop.is_set() and self._pending.empty()):
            batch = self._next_batch()
            if self._dropped.is_set():
                self._dropped.clear()
                owe_gap = True
            if not batch and not owe_gap:
                continue
            pipeline = self._publisher.pipeline(transaction=False)
            if owe_gap:
                pipeline.publish(self._channel, self._origin)  # the origin alone: a gap
            for message in batch:
                pipeline.publish(self._channel, message)
            try:
                pipeline.execute()
                owe_gap = False
            except redis.exceptions.RedisError as err:
                owe_gap = True  # told to the other replicas once Redis takes a round trip again
                log.warning("could not publish changes", extra={"error": repr(err)})

    def _next_batch(self) -> list[bytes]:
        """What is pending, up to about MAX_BATCH_BYTES, after waiting a while for the first; [] if none came."""
        try:
            batch = [self._pending.get(timeout=_STOP_CHECK_S)]
        except queue.Empty:
            return []
        size = len(batch[0])
        while size < MAX_BATCH_BYTES and not self._pending.empty():
            batch.append(self._pending.get_nowait())
            size += len(batch[-1])
        return batch

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
            # A replica's gap, or a message that is none of ours: whatever it stood for was missed.
            log.warning("changes were missed on the change channel; its streams are ended", extra={"gap": not body})
            self._set_listening(False)
            self._set_listening(True)
            return
        self._tell(change)

    def _tell(self, change: ExecutionChange) -> None:
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            if not watcher.tell(change):
                with self._lock:
                    self._watchers.discard(watcher)  # its stream is over: its slot is free

    def _set_listening(self, listening: bool) -> None:
        """Going deaf ends every stream: changes may be missed from now on."""
        with self._lock:
            self._listening = listening and self._serving
            ended = [] if self._listening else list(self._watchers)
            if ended:
                self._watchers.clear()
        for watcher in ended:
            watcher.end()
