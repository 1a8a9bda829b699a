"""Webhooks (README "Webhooks"): when a run with a callback_url ends, its JSON (what GET
/executions/{id} answers) is POSTed there, signed.

The database is the outbox. A run's callback columns say whether its delivery is pending, how many
attempts were made and when the next one is due; each attempt is recorded as a WEBHOOK event of the
execution. A sweep on this service's own thread takes due deliveries (woken at once when a run of
this replica ends, every second otherwise), claims each one in the database, so that replicas never
send the same attempt twice, and sends it from a small pool of threads: a slow receiver holds up
neither a run, an executor, nor the other deliveries. A failed attempt (an error, a timeout, an
answer that is not 2xx) is retried after each of LCE_WEBHOOK_RETRY_S, then given up. A replica that
dies mid-attempt leaves its claim to expire, and the attempt is made again.

The signature: `LCE-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`, keyed by
the run's API key's webhook secret (HMAC of LCE_WEBHOOK_SECRET and the key's id: `python -m
execution_service.keys webhook-secret ID`), or LCE_WEBHOOK_SECRET itself for a run made without a key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from common import logs
from execution_service import callback_targets
from execution_service.callback_targets import Address, AllowList, RefusedTarget, Resolver, ResolverBusy, Target
from execution_service.models import Execution
from execution_service.repository import DELIVERED, GAVE_UP, PENDING, Repository
from execution_service.settings import WebhookConfig

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "LCE-Signature"
SWEEP_INTERVAL_S = 1.0
SWEEP_BATCH = 32
SENDERS = 4
# A replica's claim on an attempt: longer than any attempt lasts (its timeouts), so a live sender
# always records its outcome first.
CLAIM_S = 120
MAX_ANSWER_BYTES = 64 * 1024


def webhook_secret(deployment_secret: str, key_id: str | None) -> str:
    """The secret a receiver verifies with: one per API key, derived, so no tenant can sign for another."""
    if key_id is None:
        return deployment_secret
    return hmac.new(deployment_secret.encode(), f"lce-webhook:{key_id}".encode(), hashlib.sha256).hexdigest()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class Webhooks:
    def __init__(
        self,
        repository: Repository,
        config: WebhookConfig,
        allow: AllowList,
        to_json: Callable[[Execution], dict[str, object]],
        *,
        clock: Callable[[], datetime],
        resolver: Resolver = callback_targets.DELIVERY_LOOKUPS.resolve,
    ) -> None:
        self.repository = repository
        self.config = config
        self.allow = allow
        self.to_json = to_json
        self.clock = clock
        self.resolver = resolver
        self._woken = threading.Event()
        self._stopping = threading.Event()
        self._senders = ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="webhook")
        # Claimed deliveries not yet recorded: never more than the senders, so none waits in a queue
        # while its claim runs out (and another replica sends it as well).
        self._free = threading.BoundedSemaphore(SENDERS)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._sweep_until_stopped, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._woken.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._senders.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        """A run with a callback ended here: send it now rather than at the next sweep."""
        self._woken.set()

    def _sweep_until_stopped(self) -> None:
        while not self._stopping.is_set():
            self._woken.wait(SWEEP_INTERVAL_S)
            self._woken.clear()
            try:
                self.sweep()
            except Exception:  # the database may be away; the next sweep tries again
                log.exception("webhook sweep failed")

    def sweep(self) -> int:
        """Claims as many due deliveries as there are free senders and hands each to one; how many."""
        now = self.clock()
        claimed = 0
        for execution in self.repository.due_callbacks(now, SWEEP_BATCH):
            if not self._free.acquire(blocking=False):
                break  # every sender busy: the rest stay unclaimed for the next sweep, here or elsewhere
            try:
                taken = self.repository.claim_callback(execution, now, now + timedelta(seconds=CLAIM_S))
            except BaseException:
                self._free.release()
                raise
            if taken:
                self._senders.submit(self.deliver, execution)
                claimed += 1
            else:
                self._free.release()
        return claimed

    def deliver(self, execution: Execution) -> None:
        """One attempt, recorded with its outcome, and the next one scheduled if it failed."""
        attempt = execution.callback_attempts + 1
        token = logs.execution_id.set(execution.id)
        try:
            self._deliver(execution, attempt)
        except ResolverBusy:
            log.warning("webhook attempt deferred: DNS lookups are saturated; its claim expires and it is made again")
        except Exception:
            log.exception("webhook attempt failed unexpectedly; its claim expires and it is made again")
        finally:
            self._free.release()
            logs.execution_id.reset(token)

    def _deliver(self, execution: Execution, attempt: int) -> None:
        """Makes the attempt and records it: delivered, due again after its wait, or given up."""
        started = time.monotonic()
        problem = self._attempt(execution)
        took_ms = int((time.monotonic() - started) * 1000)
        now = self.clock()
        if problem is None:
            state, next_at, reason = DELIVERED, None, f"delivered in {took_ms} ms"
        elif attempt <= len(self.config.retry_s):
            wait_s = self.config.retry_s[attempt - 1]
            state, next_at = PENDING, now + timedelta(seconds=wait_s)
            reason = f"{problem} after {took_ms} ms; next attempt in {wait_s:g} s"
        else:
            state, next_at, reason = GAVE_UP, None, f"{problem} after {took_ms} ms; given up"
        self.repository.record_callback(execution, attempt, state, next_at, reason, now)
        log.info("webhook attempt", extra={"attempt": attempt, "state": state, "detail": reason})
        if state == PENDING:  # swept again when its wait is over, not at the next whole sweep
            again = threading.Timer(self.config.retry_s[attempt - 1], self.wake)
            again.daemon = True
            again.start()

    def _attempt(self, execution: Execution) -> str | None:
        """None when the receiver answered 2xx; otherwise what went wrong."""
        assert execution.callback_url is not None
        body = json.dumps(self.to_json(execution), separators=(",", ":")).encode()
        secret = webhook_secret(self.config.secret, execution.api_key_id)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "LCE-Webhooks/1",
            "LCE-Delivery": f"{execution.id}.{execution.attempt}",
            SIGNATURE_HEADER: signature(secret, int(time.time()), body),
        }
        try:
            target = callback_targets.parse(execution.callback_url)
            addresses = callback_targets.checked_addresses(target, self.allow, self.resolver)
        except RefusedTarget as refused:
            return f"refused: {refused}"
        try:
            status = _post(target, addresses[0], body, headers, self.config.timeout_s)
        except (OSError, http.client.HTTPException) as exc:
            return f"failed: {type(exc).__name__}: {exc}"
        return None if 200 <= status < 300 else f"failed: HTTP {status}"


def _post(target: Target, address: Address, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    """POSTs to the checked address (no second lookup), naming the host as the URL does; the status.
    The whole attempt takes at most `timeout_s`: a receiver answering a byte at a time is cut off."""
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = _PinnedHTTPS(target.host, target.port, address, timeout_s)
    else:
        connection = _PinnedHTTP(target.host, target.port, address, timeout_s)
    deadline = threading.Timer(timeout_s, _cut_off, [connection])
    deadline.start()
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read(MAX_ANSWER_BYTES)  # never more: a receiver cannot make the sender read without end
        return answer.status
    except (OSError, http.client.HTTPException) as exc:
        if not deadline.is_alive():  # it fired: what broke is the cut-off, whatever the read made of it
            raise TimeoutError(f"no complete answer within {timeout_s:g} s") from exc
        raise
    finally:
        deadline.cancel()
        connection.close()


def _cut_off(connection: http.client.HTTPConnection) -> None:
    """Wakes the sender blocked on the connection: its next read or write fails."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: Address, timeout_s: float) -> None:
        super().__init__(host, port, timeout=timeout_s)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self._address), self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: Address, timeout_s: float) -> None:
        super().__init__(host, port, timeout=timeout_s, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((str(self._address), self.port), self.timeout)
        # The certificate must be the URL's host's, whatever address it was reached at.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]
