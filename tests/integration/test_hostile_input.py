"""Hostile input through the whole system: the worst sources we know, 1 MiB each, run from several
sessions at once as fast as the rate limits let them through, while an ordinary client checks
health and runs a hello world. The ordinary client must be answered promptly throughout, and
every run accepted must end. The figures (health and whole-run latency under attack) are printed
with -s and carried by every failure message.

The system under attack is a stack of its own (own database, Redis database and queue): a
service frozen by the attack is stopped with it, and no other test waits behind its queue.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from devstack import Stack
from tests.conftest import RedisServer, fresh_database
from tests.integration.conftest import TERMINAL, stack_config

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
# How long the attack lasts, and the bounds on what the ordinary client sees meanwhile.
ATTACK_S = 20.0
HEALTH_P99_BOUND_S = 3.0
RUN_BOUND_S = 30.0
# The accepted attack runs still queued when it stops need this at most on two executors.
DRAIN_BOUND_S = 60.0
HEALTH_EVERY_S = 0.05
ORDINARY_RUN_EVERY_S = 2.0
ATTACK_PAUSE_S = 0.5
# A client's own timeout: far above every bound, so that a frozen service is measured, not waited for.
CLIENT_TIMEOUT_S = 15.0


def filled(prefix: str, unit: str, suffix: str = "") -> str:
    """prefix + unit repeated + suffix, as close to 1 MiB of UTF-8 as the unit allows."""
    return prefix + unit * ((MIB - len(prefix) - len(suffix)) // len(unit)) + suffix


# (language, source): each was slow, or worse, for some scanner, parser or compiler somewhere.
HOSTILE_SOURCES = {
    # Half a million escaped quotes and no closing one: a backtracking string pattern goes quadratic.
    "js_unclosed_string": ("javascript", filled('let s = "', '\\"')),
    "js_endless_loops": ("javascript", filled("", "while(1){")),
    "js_deep_nesting": ("javascript", filled("x = ", "[")),
    "go_endless_loops": ("go", filled("package main\nfunc main() {\n", "for {")),
    "python_long_list": ("python", filled("a = 1\ny = [", "a,", "]\n")),
    "python_deep_nesting": ("python", filled("x = ", "(")),
    "c_unclosed_comments": ("c", filled("int main(void) { return 0; }\n", "/*")),
}
HELLO = "print('hello')\n"


@dataclass
class Observed:
    """What the clients saw; threads append, the test reads once they are done."""

    health_s: list[float] = field(default_factory=list)
    health_failures: list[str] = field(default_factory=list)
    run_s: list[float] = field(default_factory=list)
    run_failures: list[str] = field(default_factory=list)
    attack_answers: Counter[int] = field(default_factory=Counter)
    accepted: list[str] = field(default_factory=list)

    def figures(self) -> str:
        return (
            f"hostile input: health {spread(self.health_s)}; ordinary run {spread(self.run_s)};"
            f" attack answers {dict(self.attack_answers)}"
        )


def percentile(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, (len(ordered) * q) // 100)]


def spread(values: list[float]) -> str:
    if not values:
        return "none measured"
    p50, p99, top = (percentile(values, q) * 1000 for q in (50, 99, 100))
    return f"p50 {p50:.0f} ms p99 {p99:.0f} ms max {top:.0f} ms (n={len(values)})"


@pytest.fixture(scope="module")
def hostile_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("hostile")
    own_redis = redis_server.url.rsplit("/", 1)[0] + "/7"
    with fresh_database("lce_hostile") as database_url:
        stack = Stack(stack_config(tmp, database_url=database_url, redis_url=own_redis, LCE_QUEUE_NAME="lce-hostile"))
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


@pytest.fixture(scope="module")
def client(hostile_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hostile_stack.config.gateway_url, timeout=CLIENT_TIMEOUT_S) as http:
        yield http


def session_with(client: httpx.Client, language_ids: dict[str, str], language: str, source: str) -> str:
    created = client.post("/code-sessions", json={"language_id": language_ids[language]})
    assert created.status_code == 201, created.text
    session_id: str = created.json()["session_id"]
    saved = client.patch(f"/code-sessions/{session_id}", json={"source_code": source})
    assert saved.status_code == 200, f"{language} source of {len(source.encode())} bytes: {saved.text}"
    return session_id


def until(stop: threading.Event, every_s: float, action: Callable[[], None]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        action()
        stop.wait(max(0.0, every_s - (time.monotonic() - started)))


def check_health(http: httpx.Client, observed: Observed) -> None:
    started = time.monotonic()
    try:
        answer = http.get("/health")
        if answer.status_code != 200:
            observed.health_failures.append(f"{answer.status_code} {answer.text}")
    except httpx.HTTPError as err:
        observed.health_failures.append(repr(err))
    observed.health_s.append(time.monotonic() - started)


def ordinary_run(http: httpx.Client, session_id: str, observed: Observed) -> None:
    """One hello world, from the POST to its terminal status seen."""
    started = time.monotonic()
    try:
        accepted = http.post(f"/code-sessions/{session_id}/run", json={})
        if accepted.status_code != 202:
            observed.run_failures.append(f"run answered {accepted.status_code}: {accepted.text}")
            return
        execution_id = accepted.json()["execution_id"]
        while time.monotonic() - started < RUN_BOUND_S:
            body = http.get(f"/executions/{execution_id}").json()
            if body["status"] in TERMINAL:
                if (body["status"], body["stdout"]) != ("COMPLETED", "hello\n"):
                    observed.run_failures.append(f"{execution_id} ended {body['status']}: {body}")
                observed.run_s.append(time.monotonic() - started)
                return
            time.sleep(0.05)
        observed.run_failures.append(f"{execution_id} not terminal {RUN_BOUND_S:.0f} s after its POST")
    except httpx.HTTPError as err:
        observed.run_failures.append(repr(err))
    observed.run_s.append(time.monotonic() - started)


def attack(http: httpx.Client, session_id: str, observed: Observed, stop: threading.Event) -> None:
    """Runs the session's source again and again: at once after a 202, as soon as allowed (or
    ATTACK_PAUSE_S, if sooner) after a 429, ATTACK_PAUSE_S after anything else."""
    while not stop.is_set():
        try:
            answer = http.post(f"/code-sessions/{session_id}/run", json={})
        except httpx.HTTPError:
            observed.attack_answers[0] += 1
            continue
        observed.attack_answers[answer.status_code] += 1
        if answer.status_code == 202:
            observed.accepted.append(answer.json()["execution_id"])
        else:
            retry_after = answer.json().get("retryAfter", ATTACK_PAUSE_S) if answer.status_code == 429 else 0
            stop.wait(min(float(retry_after), ATTACK_PAUSE_S) or ATTACK_PAUSE_S)


def unfinished(http: httpx.Client, execution_ids: list[str]) -> list[str]:
    return [e for e in execution_ids if http.get(f"/executions/{e}").json()["status"] not in TERMINAL]


def test_ordinary_clients_are_served_while_hostile_sources_are_run(client: httpx.Client) -> None:
    language_ids = {language["name"]: language["id"] for language in client.get("/languages").json()["languages"]}
    attackers = [session_with(client, language_ids, *hostile) for hostile in HOSTILE_SOURCES.values()]
    # Two sessions take turns, so that the ordinary client stays within its own rate limit.
    ordinary = [session_with(client, language_ids, "python", HELLO) for _ in range(2)]
    turns = iter(ordinary * 100)

    observed = Observed()
    stop = threading.Event()
    clients = [httpx.Client(base_url=client.base_url, timeout=CLIENT_TIMEOUT_S) for _ in range(len(attackers) + 2)]
    threads = [
        threading.Thread(target=attack, args=(http, session_id, observed, stop))
        for http, session_id in zip(clients, attackers, strict=False)
    ]
    threads.append(
        threading.Thread(target=until, args=(stop, HEALTH_EVERY_S, lambda: check_health(clients[-2], observed)))
    )
    threads.append(
        threading.Thread(
            target=until, args=(stop, ORDINARY_RUN_EVERY_S, lambda: ordinary_run(clients[-1], next(turns), observed))
        )
    )
    for thread in threads:
        thread.start()
    time.sleep(ATTACK_S)
    stop.set()
    for thread in threads:
        thread.join(RUN_BOUND_S + CLIENT_TIMEOUT_S)
    for http in clients:
        http.close()

    deadline = time.monotonic() + DRAIN_BOUND_S
    left = unfinished(client, observed.accepted)
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = unfinished(client, left)
    figures = observed.figures()
    print(f"\n{figures}; {len(observed.accepted)} attack runs accepted, {len(left)} unfinished")

    assert not observed.health_failures, f"{observed.health_failures[:3]}: {figures}"
    assert observed.health_s and percentile(observed.health_s, 99) < HEALTH_P99_BOUND_S, figures
    assert not observed.run_failures, f"{observed.run_failures[:3]}: {figures}"
    assert observed.run_s and max(observed.run_s) < RUN_BOUND_S, figures
    assert not observed.attack_answers.keys() - {202, 429}, f"attack answers beside 202 and 429: {figures}"
    assert observed.accepted, f"no attack run was accepted: {figures}"
    assert not left, f"{len(left)} accepted runs not terminal {DRAIN_BOUND_S:.0f} s after the attack: {figures}"
