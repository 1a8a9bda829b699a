"""The rules of executions: what may be run, when a session is throttled, how a run moves through its states.

    QUEUED ──> RUNNING ──> COMPLETED | FAILED | TIMEOUT
      ^ └─────────│────────────^
      └─RETRIED───┘  (the machinery failed an attempt; attempts.py)
A terminal state is final, but for an operator's retry of a dead letter (FAILED internal_error ->
QUEUED, `retry_dead_letter`). A repeated or late report changes nothing; the database's
conditional updates (repository.py) are what make that hold between concurrent replicas.
Only the current attempt may start, and only its executor, while its lease lasts, runs it.
"""

from __future__ import annotations

import base64
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.exceptions
from prometheus_client import Counter

from common import logs
from common.config import DEFAULT_COMPILE_MEMORY_LIMIT_MB, DEFAULT_COMPILE_TIME_LIMIT_MS
from common.errors import (
    DeadlinePassed,
    InvalidArgument,
    NotFound,
    NotInteractive,
    NotRetryable,
    PayloadTooLarge,
    RateLimited,
    SessionClosed,
    Unavailable,
)
from common.ids import parse_uuid
from common.job import Compare, Encoding, ExecutionJob, Lane, Suite, encode_output
from common.outcome import TERMINAL, UNFINISHED, Reason, RunOutcome, Status
from common.run_events import Kind, RunEvents, decode_entry, is_entry_id
from common.run_input import MAX_CHUNK_BYTES, MAX_INPUT_BYTES, Appended, RunInput
from execution_service import callback_targets
from execution_service.api_keys import ApiKey
from execution_service.attempts import INTERNAL_ERROR, RetryPolicy, is_infrastructure_failure
from execution_service.callback_targets import AllowList
from execution_service.job_queue import JobQueue
from execution_service.models import Event, Execution, FinishedRun, RunEvent
from execution_service.rate_limit import SlidingWindowLimiter
from execution_service.repository import PENDING, Repository
from execution_service.run_counts import RunCounts
from execution_service.session_client import SessionClient, SessionSnapshot

log = logging.getLogger(__name__)

TIME_LIMIT_MS = (100, 60_000)
MEMORY_LIMIT_MB = (32, 2048)
# A compile's limits: from these up to the deployment's own (CompileLimits).
MIN_COMPILE_TIME_LIMIT_MS = 100
MIN_COMPILE_MEMORY_LIMIT_MB = 32
MAX_STDIN_BYTES = 1024 * 1024
MAX_ARGS = 64
MAX_ARG_BYTES = 4096
MAX_TEST_CASES = 100
MAX_TEST_NAME_CHARS = 200
# All of a suite's stdin and expected output: what a request body carries.
MAX_SUITE_INPUT_BYTES = 4 * 1024 * 1024
LIST_LIMIT = (1, 100)
DEFAULT_LIST_LIMIT = 10
# What of an executor's internal_error message goes into the attempt's reason (logged, and shown in events).
MAX_INTERNAL_DETAIL_CHARS = 200
# What is kept of an executor's advice: it comes from a peer, and is stored and shown as it is.
MAX_WARNINGS = 10
MAX_WARNING_CHARS = 500
# WatchExecution: a read of the run's stream waits this long (within the Redis client's read timeout),
# takes this many entries, and after this long without any the row is read (a result Redis lost).
WATCH_BLOCK_MS = 1000
WATCH_READ_COUNT = 16
WATCH_QUIET_S = 15.0
# A run is not created with less of its caller's deadline left than this: the write and the answer
# would come after the caller gave up, and a caller that retries would run it twice.
MIN_TIME_TO_CREATE_S = 0.25

IDEMPOTENCY_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

# Counted by the replica that commits the transition (each run is created and ends once, whichever
# replica does it); served by common.metrics at LCE_METRICS_LISTEN.
RUNS_CREATED = Counter("lce_executions_created", "Runs accepted, by language", ["language"])
RUNS_FINISHED = Counter(
    "lce_executions_finished",
    "Runs that reached a terminal state, by language, status and reason (internal_error: the machinery gave up)",
    ["language", "status", "reason"],
)
RETRIES = Counter(
    "lce_execution_retries",
    "Attempts the machinery failed that were followed by a new attempt, by why the attempt failed",
    ["reason"],
)


@dataclass(frozen=True)
class Limits:
    time_limit_ms: int
    memory_limit_mb: int


@dataclass(frozen=True)
class CompileLimits:
    """The compile stage's limits: the deployment's defaults, which a run may only lower."""

    time_limit_ms: int = DEFAULT_COMPILE_TIME_LIMIT_MS
    memory_limit_mb: int = DEFAULT_COMPILE_MEMORY_LIMIT_MB

    def lowered(self, time_limit_ms: int | None, memory_limit_mb: int | None) -> CompileLimits:
        """The limits of one run: those requested, checked against this deployment's, else its own."""
        if time_limit_ms is not None:
            _check_range("compile_time_limit_ms", time_limit_ms, (MIN_COMPILE_TIME_LIMIT_MS, self.time_limit_ms))
        if memory_limit_mb is not None:
            _check_range(
                "compile_memory_limit_mb", memory_limit_mb, (MIN_COMPILE_MEMORY_LIMIT_MB, self.memory_limit_mb)
            )
        return CompileLimits(
            time_limit_ms=self.time_limit_ms if time_limit_ms is None else time_limit_ms,
            memory_limit_mb=self.memory_limit_mb if memory_limit_mb is None else memory_limit_mb,
        )


def _check_range(field: str, value: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if not low <= value <= high:
        raise InvalidArgument(f"{field} must be between {low} and {high}, got {value}")


def check_limits(time_limit_ms: int | None, memory_limit_mb: int | None) -> None:
    """Refuses a requested limit outside its range; an absent one is left to the language's default."""
    if time_limit_ms is not None:
        _check_range("time_limit_ms", time_limit_ms, TIME_LIMIT_MS)
    if memory_limit_mb is not None:
        _check_range("memory_limit_mb", memory_limit_mb, MEMORY_LIMIT_MB)


def resolve_limits(time_limit_ms: int | None, memory_limit_mb: int | None, session: SessionSnapshot) -> Limits:
    """The limits a run gets: those requested (already checked), else its language's defaults."""
    return Limits(
        time_limit_ms=session.default_time_limit_ms if time_limit_ms is None else time_limit_ms,
        memory_limit_mb=session.default_memory_mb if memory_limit_mb is None else memory_limit_mb,
    )


def check_input(stdin: bytes, args: Sequence[str], field: str = "") -> None:
    """What the program is given: bounded, and arguments an argv can hold (`field` prefixes the names)."""
    if len(stdin) > MAX_STDIN_BYTES:
        raise PayloadTooLarge(f"{field}stdin is {len(stdin)} bytes, over the {MAX_STDIN_BYTES} bytes allowed")
    if len(args) > MAX_ARGS:
        raise InvalidArgument(f"at most {MAX_ARGS} {field}args, got {len(args)}")
    for index, arg in enumerate(args):
        if len(arg.encode()) > MAX_ARG_BYTES:
            raise InvalidArgument(f"{field}args[{index}] is over {MAX_ARG_BYTES} bytes")
        if "\0" in arg:
            raise InvalidArgument(f"{field}args[{index}] contains a NUL character")


def check_suite(suite: Suite, stdin: bytes, args: Sequence[str], interactive: bool) -> None:
    """A test suite: 1 to MAX_TEST_CASES cases, each with a run's rules for its input, within one cap in all."""
    if stdin or args or interactive:
        raise InvalidArgument("a test suite takes stdin and args per case, and is never interactive")
    if not 1 <= len(suite.cases) <= MAX_TEST_CASES:
        raise InvalidArgument(f"tests must have 1 to {MAX_TEST_CASES} cases, got {len(suite.cases)}")
    total = 0
    for index, case in enumerate(suite.cases):
        if len(case.name) > MAX_TEST_NAME_CHARS or "\0" in case.name:
            raise InvalidArgument(f"tests[{index}].name must be at most {MAX_TEST_NAME_CHARS} characters, no NUL")
        check_input(case.stdin, case.args, field=f"tests[{index}].")
        total += len(case.stdin) + len((case.expected_output or "").encode())
    if total > MAX_SUITE_INPUT_BYTES:
        raise PayloadTooLarge(f"the cases' stdin and expected output are over {MAX_SUITE_INPUT_BYTES} bytes in all")
    tolerance = suite.float_tolerance
    if tolerance is not None and (suite.compare != Compare.TOKENS or not 0 <= tolerance < math.inf):
        raise InvalidArgument("float_tolerance must be a finite number >= 0, with compare: tokens")


def resolve_lane(requested: Lane | None, suite: Suite | None, key: ApiKey | None) -> Lane:
    """The run's lane: as asked, else batch for a test suite and interactive for one run; never above
    what its API key allows (a batch key's runs are batch)."""
    lane = requested or (Lane.BATCH if suite is not None else Lane.INTERACTIVE)
    if key is not None and key.max_priority is Lane.BATCH and lane is Lane.INTERACTIVE:
        if requested is Lane.INTERACTIVE:
            raise InvalidArgument("this API key's runs are batch: priority interactive is not allowed")
        lane = Lane.BATCH
    return lane


def check_key_limits(key: ApiKey, time_limit_ms: int | None, memory_limit_mb: int | None) -> None:
    """A run may not ask for more than its API key allows (the defaults are lowered to it instead)."""
    if time_limit_ms is not None and time_limit_ms > key.max_time_limit_ms:
        raise InvalidArgument(f"time_limit_ms is over this API key's {key.max_time_limit_ms}")
    if memory_limit_mb is not None and memory_limit_mb > key.max_memory_limit_mb:
        raise InvalidArgument(f"memory_limit_mb is over this API key's {key.max_memory_limit_mb}")


def lowered_to_key(limits: Limits, key: ApiKey) -> Limits:
    return Limits(
        min(limits.time_limit_ms, key.max_time_limit_ms), min(limits.memory_limit_mb, key.max_memory_limit_mb)
    )


def key_window(key: ApiKey) -> str:
    """The rate window of an API key, beside those of sessions (which are named by their uuid)."""
    return f"key:{key.id}"


def resolve_list_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIST_LIMIT
    _check_range("limit", limit, LIST_LIMIT)
    return limit


def failure_cooldown_remaining_s(
    recent: Sequence[FinishedRun], streak_limit: int, cooldown_s: int, now: datetime
) -> int:
    """Seconds a session must still wait after `streak_limit` consecutive FAILED/TIMEOUT runs; 0 if none.

    `recent` is the session's last finished runs, newest first. A COMPLETED run among the last
    `streak_limit` breaks the streak, unless it is a suite whose program failed in a case (a wrong
    answer alone is not a failure); the cooldown counts from the newest failure's finish.
    """
    streak = recent[:streak_limit]
    if len(streak) < streak_limit or not all(run.failed for run in streak):
        return 0
    remaining = (streak[0].finished_at + timedelta(seconds=cooldown_s) - now).total_seconds()
    return math.ceil(remaining) if remaining > 0 else 0


def utc_now() -> datetime:
    return datetime.now(UTC)


class Executions:
    def __init__(
        self,
        repository: Repository,
        sessions: SessionClient,
        limiter: SlidingWindowLimiter,
        queue: JobQueue,
        *,
        failure_streak_limit: int,
        failure_cooldown_s: int,
        retries: RetryPolicy,
        lease_s: int,
        idempotency_window_s: int,
        compile_limits: CompileLimits = CompileLimits(),
        enqueue_grace_s: float = 5.0,
        clock: Callable[[], datetime] = utc_now,
        on_change: Callable[[str, Execution | None], None] = lambda execution_id, finished: None,
        run_events: RunEvents | None = None,
        run_input: RunInput | None = None,
        callbacks: AllowList | None = None,
        run_counts: RunCounts | None = None,
    ) -> None:
        self.repository = repository
        self.sessions = sessions
        self.limiter = limiter
        self.queue = queue
        self.failure_streak_limit = failure_streak_limit
        self.failure_cooldown_s = failure_cooldown_s
        self.retries = retries
        self.lease = timedelta(seconds=lease_s)
        self.idempotency_window = timedelta(seconds=idempotency_window_s)
        self.compile_limits = compile_limits
        # The reconciler leaves a new row to its creator this long before enqueueing it itself.
        self.enqueue_grace = timedelta(seconds=enqueue_grace_s)
        self.clock = clock
        # Told the id of every execution whose state changed once the change is committed, and, when the
        # change ended the run, the finished execution (change_feed.py).
        self.on_change = on_change
        # Each run's own stream of states, for live readers (common/run_events.py).
        self.run_events = run_events
        # Interactive runs' stdin, as their clients send it (common/run_input.py).
        self.run_input = run_input
        # Where webhooks may go (callback_targets.py); None: webhooks are off (no LCE_WEBHOOK_SECRET).
        self.callbacks = callbacks
        # The states runs reached lately, for /system (run_counts.py).
        self.run_counts = run_counts

    def create(
        self,
        session_id: str,
        time_limit_ms: int | None,
        memory_limit_mb: int | None,
        *,
        timeout: float,
        idempotency_key: str | None = None,
        compile_time_limit_ms: int | None = None,
        compile_memory_limit_mb: int | None = None,
        encoding: Encoding = Encoding.UTF8,
        stdin: bytes = b"",
        args: Sequence[str] = (),
        interactive: bool = False,
        suite: Suite | None = None,
        tenant: str = "",
        key: ApiKey | None = None,
        callback_url: str | None = None,
        priority: Lane | None = None,
        time_left: Callable[[], float | None] = lambda: None,
    ) -> Execution:
        """Snapshots the session's code and queues a run of it. Once this returns, the run is never lost:
        the row is written before the job, and a job that could not be written is left to the reconciler.
        Nothing is written once `time_left()` (seconds of the caller's deadline; None: no deadline) is
        too short for the answer to reach the caller: DeadlinePassed says the run was not created.

        With an idempotency key already used in this session within the window, returns that
        execution instead, whatever the session's state or limits are now: the request it answers
        was accepted then, so its repetition must be answered the same way.

        The run belongs to `tenant`, whose session it must be; `key` (the caller's API key)
        adds its own limits to the session's."""
        session_id = parse_uuid(session_id, "session_id")
        check_limits(time_limit_ms, memory_limit_mb)
        if key is not None:
            check_key_limits(key, time_limit_ms, memory_limit_mb)
        compile_limits = self.compile_limits.lowered(compile_time_limit_ms, compile_memory_limit_mb)
        check_input(stdin, args)
        if suite is not None:
            check_suite(suite, stdin, args, interactive)
        if callback_url is not None:
            self._check_callback(callback_url)
        lane = resolve_lane(priority, suite, key)
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
            earlier = self._earlier_execution(session_id, idempotency_key, tenant)
            if earlier is not None:
                return earlier
        # The session is asked for, and its last finished runs are read while the answer travels.
        pending = self.sessions.request_session(session_id, timeout, tenant)
        try:
            recent = self.repository.last_finished(session_id, self.failure_streak_limit)
        except BaseException:
            pending.cancel()
            raise
        session = pending.result()
        if not session.active:
            raise SessionClosed(f"session {session_id} is closed")
        limits = resolve_limits(time_limit_ms, memory_limit_mb, session)
        if key is not None:
            limits = Limits(
                min(limits.time_limit_ms, key.max_time_limit_ms), min(limits.memory_limit_mb, key.max_memory_limit_mb)
            )
            self._refuse_over_concurrency(key)
        self._refuse_during_failure_cooldown(recent)

        _refuse_when_too_late(time_left())
        execution_id = str(uuid.uuid4())
        logs.execution_id.set(execution_id)
        self._admit(session_id, execution_id, key)
        if callback_url is not None:
            try:
                self._check_callback_addresses(callback_url)
            except BaseException:
                self._release_admission(session_id, execution_id, key)
                raise
        now = self.clock()
        execution = Execution(
            id=execution_id,
            session_id=session_id,
            status=Status.QUEUED,
            language=session.language,
            source_code=session.source_code,
            files=session.files,
            suite=suite,
            time_limit_ms=limits.time_limit_ms,
            memory_limit_mb=limits.memory_limit_mb,
            created_at=now,
            started_at=None,
            finished_at=None,
            attempt=1,
            executor_id="",
            outcome=None,
            idempotency_key=idempotency_key,
            compile_time_limit_ms=compile_limits.time_limit_ms,
            compile_memory_limit_mb=compile_limits.memory_limit_mb,
            encoding=encoding,
            stdin=stdin,
            args=tuple(args),
            interactive=interactive,
            tenant=tenant,
            api_key_id=key.id if key is not None else None,
            callback_url=callback_url,
            callback_state=PENDING if callback_url is not None else None,
            priority=lane,
        )
        try:
            inserted = self.repository.insert_queued(execution, not_before=now + self.enqueue_grace)
        except BaseException:
            # Not accepted (the database is unavailable): the run must not count against the window.
            self._release_admission(session_id, execution_id, key)
            raise
        if not inserted:
            # A concurrent request with the same key won the unique index: answer its execution,
            # and give back the window slot this one took, so one key counts once.
            self._release_admission(session_id, execution_id, key)
            assert idempotency_key is not None
            winner = self.repository.find_by_key(session_id, idempotency_key)
            if winner is None:
                raise Unavailable("the execution of this idempotency key was not found; retry")
            return winner
        RUNS_CREATED.labels(session.language).inc()
        log.info("execution queued", extra={"session_id": session_id, "language": session.language})
        # Before the job: a fast executor's RUNNING must follow it in the run's stream.
        self._append_event(execution_id, Kind.STATUS, status=Status.QUEUED.value, attempt=1)
        self._enqueue(execution)
        return execution

    def get(self, execution_id: str, tenant: str | None = None) -> Execution:
        """The execution; NotFound for an unknown one, or one of another tenant than `tenant` (None: any)."""
        execution_id = parse_uuid(execution_id, "execution_id")
        execution = self.repository.get(execution_id)
        if execution is None or (tenant is not None and execution.tenant != tenant):
            raise NotFound(f"execution {execution_id} not found")
        return execution

    def events(self, execution_id: str, tenant: str | None = None) -> list[Event]:
        execution = self.get(execution_id, tenant)
        return self.repository.events(execution.id)

    def watch(
        self, execution_id: str, after: str, watching: Callable[[], bool], tenant: str | None = None
    ) -> Iterator[RunEvent]:
        """A run's events after the id `after` (empty: all), while `watching()`, ending with its result.
        A finished run whose stream is gone (expired, or lost with Redis) gives its result alone."""
        execution = self.get(execution_id, tenant)
        events = self.run_events
        if events is None:
            raise Unavailable("this service keeps no run streams")
        after = after or "0-0"
        if not is_entry_id(after):
            raise InvalidArgument("after must be an event id as a stream gave it")
        if execution.status in TERMINAL and not events.exists(execution.id):
            yield RunEvent("0-1", Kind.RESULT.value, {"status": execution.status.value}, execution)
            return
        quiet_since = time.monotonic()
        while watching():
            entries = events.read(execution.id, after, block_ms=WATCH_BLOCK_MS, count=WATCH_READ_COUNT)
            if not entries and time.monotonic() - quiet_since >= WATCH_QUIET_S:
                # Quiet for a while: a run whose result never reached its stream (Redis lost it) ends here.
                quiet_since, execution = time.monotonic(), self.get(execution.id)
                if execution.status in TERMINAL:
                    yield RunEvent(after, Kind.RESULT.value, {"status": execution.status.value}, execution)
                    return
            for entry_id, fields in entries:
                after, quiet_since = entry_id, time.monotonic()
                kind, data = decode_entry(fields)
                if kind == Kind.RESULT:
                    yield RunEvent(entry_id, kind, data, self.get(execution.id))
                    return
                yield RunEvent(entry_id, kind, data)

    def open_interaction(self, execution_id: str, tenant: str | None = None) -> Execution:
        """The run a client talks to: NotInteractive unless it was created interactive."""
        execution = self.get(execution_id, tenant)
        if not execution.interactive:
            raise NotInteractive(f"execution {execution.id} was not created with interactive: true")
        if self.run_input is None or self.run_events is None:
            raise Unavailable("this service keeps no run streams")
        return execution

    def send_input(self, execution_id: str, data: bytes | None) -> None:
        """Sends data to an interactive run's stdin (of open_interaction), or closes it (None); what
        comes after the close is dropped. Raises RedisError."""
        assert self.run_input is not None
        if data is not None and len(data) > MAX_CHUNK_BYTES:
            raise PayloadTooLarge(f"a message of input is at most {MAX_CHUNK_BYTES} bytes")
        if self.run_input.append(execution_id, data) is Appended.FULL:
            raise PayloadTooLarge(f"an interactive run takes at most {MAX_INPUT_BYTES} bytes of input in all")

    def list_for_session(
        self, session_id: str, limit: int | None, *, timeout: float, tenant: str = ""
    ) -> list[Execution]:
        session_id = parse_uuid(session_id, "session_id")
        count = resolve_list_limit(limit)
        found = self.repository.list_for_session(session_id, count)
        if found:
            # A run carries its session's tenant, and sessions are never deleted: the runs answer alone.
            if found[0].tenant != tenant:
                raise NotFound(f"session {session_id} not found")
            return found
        # Asked so that an unknown session (or another tenant's) is told apart from one without runs yet.
        self.sessions.get_session(session_id, timeout, tenant)
        return found

    def find(
        self, status: Status | None, reason: Reason | None, limit: int | None, page_token: str = ""
    ) -> tuple[list[Execution], str]:
        """Executions of every tenant by status and reason, newest first, and the next page's token
        ("" after the last page). For operators: the servicer checks who asks."""
        count = resolve_list_limit(limit)
        found = self.repository.find(status, reason, count, parse_page_token(page_token))
        last = found[-1] if len(found) == count else None
        return found, page_token_after(last) if last else ""

    def retry_dead_letter(self, execution_id: str, operator: str) -> Execution:
        """A new attempt of a run the machinery failed (FAILED, internal_error), queued now with the
        same snapshot. NotRetryable for any other run, or an interactive one whose input is gone."""
        execution_id = parse_uuid(execution_id, "execution_id")
        ended = self.get(execution_id)
        reason = ended.outcome.reason if ended.outcome else None
        if ended.status != Status.FAILED or reason is not Reason.INTERNAL_ERROR:
            shown = ended.outcome.reason_text if ended.outcome else ""
            raise NotRetryable(
                f"only a run the machinery failed (FAILED, internal_error) can be retried; this one is "
                f"{ended.status.value}{f' ({shown})' if shown else ''}, the program's own result"
                if ended.status in TERMINAL
                else f"only a run the machinery failed can be retried; this one is {ended.status.value}"
            )
        if ended.interactive:
            raise NotRetryable("an interactive run cannot be retried: the input its client sent cannot be replayed")
        queued = self.repository.requeue(execution_id, ended, f"operator_retry by {operator}", self.clock())
        if queued is None:
            raise NotRetryable("the run changed meanwhile (another operator retried it)")
        self.on_change(execution_id, None)
        if self.run_events is not None:
            fields = {"status": Status.QUEUED.value, "attempt": queued.attempt, "reason": "operator_retry"}
            self.run_events.start_over(execution_id, Kind.STATUS, **fields)
        self._enqueue(queued)
        log.warning("dead letter retried by an operator", extra={"attempt": queued.attempt, "operator": operator})
        return queued

    def report_started(self, execution_id: str, executor_id: str, attempt: int) -> bool:
        """Hands the current attempt to the executor that reports it, under a lease; False when the run
        is over or the attempt is not the current one (a stale delivery), which must then not run.
        A repeated report of the holder of the lease is answered True again and changes nothing."""
        execution_id = parse_uuid(execution_id, "execution_id")
        now = self.clock()
        if self.repository.start(execution_id, executor_id, attempt, now, now + self.lease):
            self.on_change(execution_id, None)
            self._append_event(execution_id, Kind.STATUS, status=Status.RUNNING.value, attempt=attempt)
            log.info("execution running", extra={"executor_id": executor_id, "attempt": attempt})
            return True
        execution = self.get(execution_id)
        current = (execution.status, execution.attempt, execution.executor_id)
        holds_it = current == (Status.RUNNING, attempt, executor_id)
        if not holds_it:
            log.info("stale start refused", extra={"executor_id": executor_id, "attempt": attempt})
        return holds_it

    def renew_lease(self, execution_id: str, executor_id: str, attempt: int) -> bool:
        """Extends the running executor's lease; False when it lost the run (its lease expired and
        the run went to a newer attempt) or the run is over."""
        execution_id = parse_uuid(execution_id, "execution_id")
        if self.repository.renew_lease(execution_id, executor_id, attempt, self.clock() + self.lease):
            return True
        self.get(execution_id)  # NotFound for an unknown id
        return False

    def report_result(
        self, execution_id: str, executor_id: str, attempt: int, outcome: RunOutcome, warnings: Sequence[str] = ()
    ) -> Status:
        """Records a terminal result once, with the executor's advice about the source; later reports
        change nothing. Returns the status after the report. A result saying the machinery failed
        (internal_error) ends the attempt instead, retried while retries are left."""
        execution_id = parse_uuid(execution_id, "execution_id")
        if outcome.status not in TERMINAL:
            raise InvalidArgument(f"a result's status must be COMPLETED, FAILED or TIMEOUT, got {outcome.status}")
        if is_infrastructure_failure(outcome):
            detail = outcome.stderr.strip()[:MAX_INTERNAL_DETAIL_CHARS]
            reason = f"{INTERNAL_ERROR}: {detail}" if detail else INTERNAL_ERROR
            self.end_attempt(execution_id, attempt, executor_id, reason)
        elif finished := self.repository.finish(
            execution_id, executor_id, attempt, outcome, self.clock(), warnings=bounded_warnings(warnings)
        ):
            count_finished(finished)
            self.on_change(execution_id, finished)
            self._append_event(execution_id, Kind.RESULT, status=finished.status.value)
            log.info(
                "execution finished",
                extra={"status": outcome.status.value, "reason": outcome.reason_text, "executor_id": executor_id},
            )
            return outcome.status
        return self.get(execution_id).status

    def end_attempt(
        self, execution_id: str, attempt: int, executor_id: str, reason: str, *, allowed: frozenset[Status] = UNFINISHED
    ) -> bool:
        """The machinery failed `attempt`: queue the next one after its backoff, or, with no retry
        left, end the run FAILED with reason internal_error. An interactive run that started is never
        retried: what its client sent cannot be replayed. Nothing happens (False) when `attempt` is no
        longer the current one or the row's status left `allowed` (another replica or a report decided first)."""
        now = self.clock()
        execution = self.repository.get(execution_id)
        replayable = execution is None or not (execution.interactive and execution.status == Status.RUNNING)
        backoff = self.retries.backoff_before(attempt + 1) if replayable else None
        encoding = execution.encoding if execution is not None else Encoding.UTF8
        token = logs.execution_id.set(execution_id)
        try:
            if backoff is not None:
                retry_at = now + timedelta(seconds=backoff)
                if self.repository.retry(execution_id, attempt, executor_id, reason, now, retry_at, allowed=allowed):
                    self.on_change(execution_id, None)
                    retried = {
                        "status": Status.QUEUED.value,
                        "attempt": attempt + 1,
                        "reason": reason[:MAX_INTERNAL_DETAIL_CHARS],
                    }
                    self._append_event(execution_id, Kind.STATUS, **retried)
                    # The kind of failure only: an internal error's detail would make a series per message.
                    RETRIES.labels(reason.partition(":")[0]).inc()
                    log.warning("attempt failed; retrying", extra={"attempt": attempt, "reason": reason})
                    return True
            elif finished := self.repository.finish(
                execution_id, executor_id, attempt, gave_up(attempt, reason, encoding, replayable), now, allowed=allowed
            ):
                count_finished(finished)
                self.on_change(execution_id, finished)
                self._append_event(execution_id, Kind.RESULT, status=finished.status.value)
                log.error("attempt failed; no retry left", extra={"attempt": attempt, "reason": reason})
                return True
            return False
        finally:
            logs.execution_id.reset(token)

    def _earlier_execution(self, session_id: str, idempotency_key: str, tenant: str) -> Execution | None:
        """The execution this key created within the window; a key whose window is over is released.
        Another tenant's session does not exist for the caller, whatever key it names."""
        earlier = self.repository.find_by_key(session_id, idempotency_key)
        if earlier is None:
            return None
        if earlier.tenant != tenant:
            raise NotFound(f"session {session_id} not found")
        if idempotency_key_expired(earlier.created_at, self.clock(), self.idempotency_window):
            self.repository.release_key(earlier.id, idempotency_key)
            return None
        return earlier

    def _check_callback(self, url: str) -> None:
        """The URL's form at once; its addresses (a DNS lookup, up to 2 s) only once the run is admitted."""
        if self.callbacks is None:
            raise InvalidArgument("webhooks are off on this deployment (it has no LCE_WEBHOOK_SECRET)")
        try:
            callback_targets.parse(url)
        except callback_targets.RefusedTarget as refused:
            raise InvalidArgument(str(refused)) from refused

    def _check_callback_addresses(self, url: str) -> None:
        assert self.callbacks is not None
        try:
            callback_targets.checked_addresses(callback_targets.parse(url), self.callbacks)
        except callback_targets.RefusedTarget as refused:
            raise InvalidArgument(str(refused)) from refused
        except callback_targets.ResolverBusy as busy:
            raise Unavailable(str(busy)) from busy

    def _refuse_during_failure_cooldown(self, recent: Sequence[FinishedRun]) -> None:
        wait_s = failure_cooldown_remaining_s(recent, self.failure_streak_limit, self.failure_cooldown_s, self.clock())
        if wait_s > 0:
            raise RateLimited(
                f"{self.failure_streak_limit} consecutive failed runs; runs resume after a cooldown",
                retry_after_s=wait_s,
            )

    def _refuse_over_concurrency(self, key: ApiKey) -> None:
        if self.repository.unfinished_of_key(key.id) >= key.concurrent_runs:
            raise RateLimited(f"at most {key.concurrent_runs} unfinished runs per API key", retry_after_s=1)

    def _admit(self, session_id: str, execution_id: str, key: ApiKey | None = None) -> None:
        try:
            if key is not None:
                self.limiter.admit(key_window(key), execution_id, limit=key.runs_per_minute, per="API key")
            try:
                self.limiter.admit(session_id, execution_id)
            except RateLimited:
                if key is not None:
                    self.limiter.release(key_window(key), execution_id)
                raise
        except _REDIS_DOWN as err:
            # The window lives in Redis; while Redis is down the run is still accepted (the
            # reconciler queues it later) rather than refusing every run of every session.
            log.warning("rate limit not checked: redis unavailable", extra={"error": repr(err)})

    def _release_admission(self, session_id: str, execution_id: str, key: ApiKey | None = None) -> None:
        try:
            self.limiter.release(session_id, execution_id)
            if key is not None:
                self.limiter.release(key_window(key), execution_id)
        except _REDIS_DOWN as err:
            log.warning("rate limit slot not released: redis unavailable", extra={"error": repr(err)})

    def _enqueue(self, execution: Execution) -> None:
        try:
            self.queue.enqueue(job_for(execution))
        except _REDIS_DOWN as err:
            log.warning("job not enqueued: redis unavailable; the reconciler will", extra={"error": repr(err)})

    def _append_event(self, execution_id: str, kind: Kind, **fields: str | int) -> None:
        """Tells the run's stream of a state it reached, and counts the state (a retry's QUEUED as RETRIED)."""
        if self.run_events is not None:
            self.run_events.append(execution_id, kind, **fields)
        if self.run_counts is not None:
            retried = fields["status"] == Status.QUEUED.value and int(fields.get("attempt", 1)) > 1
            self.run_counts.record("RETRIED" if retried else str(fields["status"]))


def _refuse_when_too_late(seconds_left: float | None) -> None:
    if seconds_left is not None and seconds_left < MIN_TIME_TO_CREATE_S:
        raise DeadlinePassed("the request's deadline passed before the run could be created; it was not created")


def count_finished(finished: Execution) -> None:
    reason = finished.outcome.reason_text if finished.outcome is not None else ""
    RUNS_FINISHED.labels(finished.language, finished.status.value, reason).inc()


def bounded_warnings(warnings: Sequence[str]) -> list[str]:
    return [warning[:MAX_WARNING_CHARS] for warning in warnings[:MAX_WARNINGS]]


def page_token_after(last: Execution) -> str:
    """Where the next page of FindExecutions starts: just after this execution (newest first)."""
    return base64.urlsafe_b64encode(f"{last.created_at.isoformat()}|{last.id}".encode()).decode()


def parse_page_token(token: str) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        created_at, _, execution_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        after = datetime.fromisoformat(created_at)
        if after.tzinfo is None:
            raise ValueError("a page token's time has its zone")
        return after, parse_uuid(execution_id, "page_token")
    except (ValueError, InvalidArgument) as exc:
        raise InvalidArgument("page_token is not one a previous page gave") from exc


def check_idempotency_key(key: str) -> None:
    """1..255 visible ASCII characters: what an HTTP header carries safely and an index holds."""
    if not IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
        raise InvalidArgument("Idempotency-Key must be 1 to 255 visible ASCII characters")


def idempotency_key_expired(created_at: datetime, now: datetime, window: timedelta) -> bool:
    return now - created_at >= window


def gave_up(attempt: int, reason: str, encoding: Encoding = Encoding.UTF8, replayable: bool = True) -> RunOutcome:
    """The result of a run whose last attempt failed in the machinery."""
    if replayable:
        message = f"LCE could not run the program: attempt {attempt} failed ({reason}) and no retry is left\n"
    else:
        message = (
            f"LCE lost the interactive run: attempt {attempt} failed ({reason}) after it started, "
            "and it is not retried, since the input it was sent cannot be replayed\n"
        )
    return RunOutcome(
        status=Status.FAILED, reason=Reason.INTERNAL_ERROR, stderr=encode_output(message.encode(), encoding)
    )


def job_for(execution: Execution) -> ExecutionJob:
    return ExecutionJob(
        execution_id=execution.id,
        language=execution.language,
        source_code=execution.source_code,
        time_limit_ms=execution.time_limit_ms,
        memory_limit_mb=execution.memory_limit_mb,
        attempt=execution.attempt,
        compile_time_limit_ms=execution.compile_time_limit_ms,
        compile_memory_limit_mb=execution.compile_memory_limit_mb,
        encoding=execution.encoding,
        stdin=execution.stdin,
        args=execution.args,
        interactive=execution.interactive,
        files=execution.files,
        suite=execution.suite,
        lane=execution.priority,
    )
