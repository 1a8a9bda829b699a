"""The REST API fuzzed from its own OpenAPI document (schemathesis, on Hypothesis) against the real
stack: every operation, with path ids, query parameters, headers and bodies that the document
allows and that it does not (schemathesis's examples, coverage and fuzzing phases, positive and
negative). Half the ids generated are swapped for those of a real language, session and
execution, so that the cases reach the services. It passes when no answer is a server error (but
the documented 503 with Retry-After) and every error is the documented {"error": "..."}.

The run is derandomized, with a fixed budget: LCE_FUZZ_EXAMPLES (300) cases per operation for the
fuzzing phase, beside the other phases' own, about 3,500 in all. A longer run on demand, e.g.
`LCE_FUZZ_EXAMPLES=1000 pytest tests/integration/test_fuzz.py -s`; -s prints the figures.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from devstack import Stack
from gateway.app import create_app
from gateway.settings import GatewayConfig
from tests.integration.conftest import new_session, run

pytestmark = pytest.mark.integration

FUZZ_EXAMPLES = int(os.environ.get("LCE_FUZZ_EXAMPLES", "300"))
# The document the gateway serves (test_the_fuzzed_document_is_the_one_served): schemathesis needs
# it when pytest collects, before the stack is up.
NOWHERE = "127.0.0.1:1"
DOCUMENT = create_app(GatewayConfig(session_service_addr=NOWHERE, execution_service_addr=NOWHERE)).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)


class Tally:
    """Cases sent and answers seen, by operation; the figures printed at the end."""

    def __init__(self) -> None:
        self.answers: Counter[tuple[str, int]] = Counter()

    def record(self, operation: str, status: int) -> None:
        self.answers[operation, status] += 1

    def unreached(self) -> list[str]:
        """Operations whose every answer was a refusal of the request itself (400, 405, 415...)."""
        operations = {operation for operation, _ in self.answers}
        # 409 and 429: the service looked at the session; 413: at the source's size.
        reached = {operation for (operation, status) in self.answers if status < 400 or status in (409, 413, 429)}
        return sorted(operations - reached)

    def figures(self) -> str:
        statuses: Counter[int] = Counter()
        for (_, status), count in self.answers.items():
            statuses[status] += count
        by_status = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
        operations = len({operation for operation, _ in self.answers})
        return f"fuzzing: {statuses.total()} cases on {operations} operations; answers {by_status}"


TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    print(f"\n{TALLY.figures()}")
    unreached = TALLY.unreached()
    assert not unreached, f"operations whose every case was refused before reaching a service: {unreached}"


@pytest.fixture(scope="module")
def real_ids(api: httpx.Client, languages: dict[str, dict[str, Any]]) -> dict[str, str]:
    python_id = languages["python"]["id"]
    session_id = new_session(api, python_id, "print(1)\n")
    return {"language_id": python_id, "session_id": session_id, "execution_id": run(api, session_id)["execution_id"]}


def no_server_error(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """No 5xx, but a 503 telling when to retry (a backend down or overloaded, as documented)."""
    if response.status_code == 503 and "retry-after" in response.headers:
        return
    assert response.status_code < 500, f"server error {response.status_code}: {response.content[:500]!r}"


def errors_are_json(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case) -> None:
    if response.status_code < 400:
        return
    assert response.headers.get("content-type") == ["application/json"], response.headers
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body


def documented_body(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """The body matches the documented schema. A stream's events are described in prose, not in a schema."""
    if response.headers.get("content-type", [""])[0].startswith("text/event-stream"):
        return
    response_schema_conformance(ctx, response, case)


def swapped(generated: Any, real: str) -> Any:
    """The real id for half the values generated, chosen by a hash of the value: a case replayed (as
    Hypothesis does to report a failure) is the same case."""
    return real if zlib.crc32(repr(generated).encode()) % 2 else generated


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzz(case: schemathesis.Case, real_ids: dict[str, str], stack: Stack) -> None:
    if case.path_parameters:
        case.path_parameters = {
            name: swapped(value, real_ids[name]) if name in real_ids else value
            for name, value in case.path_parameters.items()
        }
    if isinstance(case.body, dict) and "language_id" in case.body:
        case.body = {**case.body, "language_id": swapped(case.body["language_id"], real_ids["language_id"])}
    response = case.call(base_url=stack.config.gateway_url, timeout=60)
    TALLY.record(case.operation.label, response.status_code)
    case.validate_response(
        response, checks=[no_server_error, errors_are_json, documented_body, content_type_conformance]
    )


def test_the_fuzzed_document_is_the_one_served(api: httpx.Client) -> None:
    assert api.get("/openapi.json").json() == DOCUMENT
