"""API keys and tenants on a stack of their own with LCE_AUTH=on: who gets in, and who sees what."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from devstack import Stack
from lce.execution.v1 import execution_pb2, execution_pb2_grpc
from tests.conftest import RedisServer, fresh_database
from tests.integration.conftest import TERMINAL, stack_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = "import time\ntime.sleep(3)\nprint('done')\n"


class Secured:
    def __init__(self, stack: Stack, database_url: str) -> None:
        self.stack = stack
        self.database_url = database_url
        self.url = stack.config.gateway_url

    def keys(self, *args: str) -> list[str]:
        """Runs the key command against the stack's database; its output lines."""
        env = {**os.environ, "LCE_DATABASE_URL": self.database_url}
        done = subprocess.run(
            [sys.executable, "-m", "execution_service.keys", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.splitlines()

    def new_key(self, tenant: str, *options: str) -> tuple[str, dict[str, Any]]:
        secret, record = self.keys("create", "--tenant", tenant, *options)
        return secret, json.loads(record)

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def secured_stack(redis_server: RedisServer, tmp: Path, database_prefix: str, **env: str) -> Iterator[Secured]:
    """A stack of one executor with LCE_AUTH=on (and `env`), on a database of its own and a Redis
    database of its own (the session's stack takes its jobs from database 0)."""
    own_redis = redis_server.url.rsplit("/", 1)[0] + "/4"
    with fresh_database(database_prefix) as database_url:
        config = stack_config(tmp, database_url=database_url, redis_url=own_redis, LCE_AUTH="on", **env)
        config.executors = 1
        stack = Stack(config)
        stack.start()
        try:
            yield Secured(stack, database_url)
        finally:
            stack.stop()


@pytest.fixture(scope="module")
def secured(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    with secured_stack(redis_server, tmp_path_factory.mktemp("secured"), "lce_auth") as running:
        yield running


def python_session(api: httpx.Client, source: str = "print(42)\n") -> str:
    languages = api.get("/languages")
    assert languages.status_code == 200, languages.text
    python = next(language["id"] for language in languages.json()["languages"] if language["name"] == "python")
    created = api.post("/code-sessions", json={"language_id": python, "source_code": source})
    assert created.status_code == 201, created.text
    return str(created.json()["session_id"])


def finished(api: httpx.Client, execution_id: str) -> dict[str, Any]:
    answer = api.get(f"/executions/{execution_id}", params={"wait": 30}).json()
    assert answer["status"] in TERMINAL, answer
    return answer  # type: ignore[no-any-return]


def test_no_key_or_an_unknown_one_is_401(secured: Secured) -> None:
    with secured.client(None) as anonymous:
        refused = anonymous.get("/languages")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert "API key" in refused.json()["error"]
        assert anonymous.get("/health").status_code == 200  # probes need no key
        assert anonymous.get("/openapi.json").status_code == 200
    with secured.client("lce_not-a-key") as unknown:
        assert unknown.get("/languages").status_code == 401
    secret, _ = secured.new_key("acme")
    with httpx.Client(base_url=secured.url, headers={"X-API-Key": secret}) as by_header:
        assert by_header.get("/languages").status_code == 200


def test_tenants_never_see_each_other(secured: Secured) -> None:
    acme_key, _ = secured.new_key("acme")
    globex_key, _ = secured.new_key("globex")
    with secured.client(acme_key) as acme, secured.client(globex_key) as globex:
        session_id = python_session(acme)
        run = acme.post(f"/code-sessions/{session_id}/run")
        assert run.status_code == 202, run.text
        execution_id = run.json()["execution_id"]
        assert finished(acme, execution_id)["stdout"] == "42\n"
        # Everything of acme's is 404 to globex, never 403: ids leak nothing.
        probes = [
            globex.get(f"/code-sessions/{session_id}"),
            globex.patch(f"/code-sessions/{session_id}", json={"source_code": "x"}),
            globex.post(f"/code-sessions/{session_id}/run"),
            globex.get(f"/code-sessions/{session_id}/executions"),
            globex.get(f"/executions/{execution_id}"),
            globex.get(f"/executions/{execution_id}", params={"wait": 1}),
            globex.get(f"/executions/{execution_id}/events"),
            globex.get(f"/executions/{execution_id}/stream"),
            globex.patch(f"/code-sessions/{session_id}/close"),
        ]
        assert [probe.status_code for probe in probes] == [404] * len(probes), [p.text for p in probes]
        url = secured.url.replace("http://", "ws://") + f"/executions/{execution_id}/interact"
        with pytest.raises(InvalidStatus) as denied:
            connect(url, additional_headers={"Authorization": f"Bearer {globex_key}"}).close()
        assert denied.value.response.status_code == 404
        # acme's own still work, and the session was neither changed nor closed by globex.
        mine = acme.get(f"/code-sessions/{session_id}").json()
        assert (mine["status"], mine["source_code"]) == ("ACTIVE", "print(42)\n")
        assert acme.get(f"/code-sessions/{session_id}/executions").json()["executions"][0]["execution_id"] == (
            execution_id
        )


def test_a_key_over_its_rate_gets_429(secured: Secured) -> None:
    secret, _ = secured.new_key("acme", "--runs-per-minute", "2")
    with secured.client(secret) as api:
        sessions = [python_session(api) for _ in range(3)]  # three sessions: their own limits never bind
        answers = [api.post(f"/code-sessions/{session_id}/run") for session_id in sessions]
    assert [answer.status_code for answer in answers] == [202, 202, 429]
    assert int(answers[2].headers["retry-after"]) >= 1
    assert "API key" in answers[2].json()["error"] or answers[2].json()["error"] == "Rate limit exceeded"


def test_a_key_over_its_concurrency_gets_429(secured: Secured) -> None:
    secret, _ = secured.new_key("acme", "--concurrent-runs", "1")
    with secured.client(secret) as api:
        first = api.post(f"/code-sessions/{python_session(api, SLEEPER)}/run")
        second = api.post(f"/code-sessions/{python_session(api)}/run")
        assert (first.status_code, second.status_code) == (202, 429)
        assert second.headers["retry-after"] == "1"
        finished(api, first.json()["execution_id"])
        assert api.post(f"/code-sessions/{python_session(api)}/run").status_code == 202


def test_a_key_caps_the_limits_a_run_may_ask_for(secured: Secured) -> None:
    secret, _ = secured.new_key("acme", "--max-time-limit-ms", "1000", "--max-memory-limit-mb", "128")
    with secured.client(secret) as api:
        session_id = python_session(api)
        assert api.post(f"/code-sessions/{session_id}/run", json={"time_limit_ms": 2000}).status_code == 400
        assert api.post(f"/code-sessions/{session_id}/run", json={"memory_limit_mb": 256}).status_code == 400
        run = api.post(f"/code-sessions/{session_id}/run").json()  # the language's defaults, lowered to the key's
        execution = finished(api, run["execution_id"])
        assert (execution["time_limit_ms"], execution["memory_limit_mb"]) == (1000, 128)


def test_admin_endpoints_need_an_admin_key(secured: Secured) -> None:
    user, _ = secured.new_key("acme")
    admin, _ = secured.new_key("ops", "--admin")
    with secured.client(user) as api:
        assert api.get("/admin/keys").status_code == 403
    with secured.client(admin) as api:
        listed = api.get("/admin/keys")
    assert listed.status_code == 200
    assert {"acme", "ops"} <= {key["tenant"] for key in listed.json()["keys"]}
    assert user not in listed.text and admin not in listed.text  # secrets are never stored or shown


def test_operators_search_and_retry_with_an_admin_key_only(secured: Secured) -> None:
    user, _ = secured.new_key("acme")
    admin, _ = secured.new_key("ops", "--admin")
    with secured.client(user) as api:
        execution_id = api.post(f"/code-sessions/{python_session(api)}/run").json()["execution_id"]
        assert api.get("/executions", params={"status": "FAILED"}).status_code == 403
        assert api.post(f"/executions/{execution_id}/retry").status_code == 403
    with secured.client(admin) as api:
        found = api.get("/executions", params={"limit": 100})
        assert found.status_code == 200, found.text
        assert execution_id in {e["execution_id"] for e in found.json()["executions"]}  # every tenant's
        bad = api.get("/executions", params={"status": "DONE"})
        assert bad.status_code == 400 and "status must be one of" in bad.json()["error"]
        assert api.get("/executions", params={"reason": "none"}).status_code == 400
        assert api.get("/executions", params={"page_token": "x" * 201}).status_code == 400
        assert api.get("/executions", params={"page_token": "forged"}).status_code == 400
        # The run (print(42)) ends COMPLETED, or is still going: neither is the machinery's failure.
        refused = api.post(f"/executions/{execution_id}/retry")
        assert refused.status_code == 409 and "can be retried" in refused.json()["error"]
        assert api.post("/executions/00000000-0000-4000-8000-000000000000/retry").status_code == 404


def test_system_is_for_admin_keys_only(secured: Secured) -> None:
    user, _ = secured.new_key("acme")
    admin, _ = secured.new_key("ops", "--admin")
    with secured.client(None) as anonymous:
        assert anonymous.get("/system").status_code == 401
    with secured.client(user) as api:
        refused = api.get("/system")
    assert (refused.status_code, refused.json()) == (403, {"error": "this endpoint needs an admin API key"})
    with secured.client(admin) as api:
        answer = api.get("/system")
    assert answer.status_code == 200, answer.text
    assert "executor-1" in {executor["id"] for executor in answer.json()["executors"]}
    assert len(answer.json()["queues"]) == 16  # eight languages, two lanes each
    # A key of its own sent straight to execution_service is judged the same way.
    address = f"127.0.0.1:{secured.stack.config.execution_port}"
    with grpc.insecure_channel(address) as channel:
        stub = execution_pb2_grpc.ExecutionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as denied:
            stub.GetSystem(execution_pb2.GetSystemRequest(), metadata=[("authorization", f"Bearer {user}")], timeout=10)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        allowed = stub.GetSystem(
            execution_pb2.GetSystemRequest(), metadata=[("authorization", f"Bearer {admin}")], timeout=10
        )
        assert len(allowed.queues) == 16


def test_a_revoked_key_stops_working(secured: Secured) -> None:
    secret, record = secured.new_key("acme")
    with secured.client(secret) as api:
        assert api.get("/languages").status_code == 200
        revoked = json.loads(secured.keys("revoke", record["id"])[0])
        assert revoked["revoked_at"] is not None
        deadline = time.monotonic() + 15  # cached for at most 5 s by the gateway and by execution_service
        while api.get("/languages").status_code != 401:
            assert time.monotonic() < deadline, "the revoked key still works"
            time.sleep(0.5)
