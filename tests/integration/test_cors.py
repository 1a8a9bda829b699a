"""CORS over real HTTP: a gateway of its own with LCE_CORS_ORIGINS set, in front of the shared
stack's services, answers preflights and marks its answers for the allowed origins only; the
shared stack's gateway, which has none set, sends no CORS header at all."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from devstack import Stack
from gateway.cors import MAX_AGE_S
from tests.integration.conftest import start_gateway

pytestmark = pytest.mark.integration

ALLOWED = "https://ide.example.com"
ALSO_ALLOWED = "http://localhost:5173"
OTHER = "https://evil.example.net"
API_HEADERS = {"authorization", "content-type", "idempotency-key", "last-event-id", "x-api-key"}


@pytest.fixture(scope="module")
def cors_gateway(stack: Stack) -> Iterator[httpx.Client]:
    gateway, url = start_gateway(stack, "gateway-cors", LCE_CORS_ORIGINS=f"{ALLOWED}, {ALSO_ALLOWED}")
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client
    finally:
        stack.stop_service(gateway)


def preflight(client: httpx.Client, path: str, origin: str, method: str, headers: str = "") -> httpx.Response:
    asked = {"Access-Control-Request-Headers": headers} if headers else {}
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method, **asked})


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("access-control-")}


def listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


@pytest.mark.parametrize(
    ("origin", "path", "method", "headers"),
    [
        (ALLOWED, "/code-sessions", "POST", "content-type, authorization"),
        (ALLOWED, f"/code-sessions/{uuid.uuid4()}", "PATCH", "Content-Type, X-API-Key"),
        (ALLOWED, f"/code-sessions/{uuid.uuid4()}/run", "POST", "content-type,idempotency-key,authorization"),
        (ALSO_ALLOWED, f"/executions/{uuid.uuid4()}/stream", "GET", "last-event-id, authorization"),
        (ALSO_ALLOWED, "/languages", "GET", ""),
    ],
)
def test_a_preflight_from_an_allowed_origin_is_answered(
    cors_gateway: httpx.Client, origin: str, path: str, method: str, headers: str
) -> None:
    response = preflight(cors_gateway, path, origin, method, headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    found = cors_headers(response)
    assert found["access-control-allow-origin"] == origin
    assert listed(found["access-control-allow-methods"]) == {"get", "patch", "post"}
    assert listed(found["access-control-allow-headers"]) == API_HEADERS
    assert found["access-control-max-age"] == str(MAX_AGE_S)
    assert "access-control-allow-credentials" not in found
    assert "origin" in listed(response.headers["vary"])


@pytest.mark.parametrize(
    ("origin", "method", "headers", "words"),
    [
        (OTHER, "POST", "content-type", f"origin {OTHER} is not allowed"),
        ("null", "POST", "content-type", "origin null is not allowed"),
        (ALLOWED + ".evil.example.net", "GET", "", "is not allowed"),
        (ALLOWED.replace("https", "http"), "GET", "", "is not allowed"),
        (ALLOWED, "DELETE", "", "method DELETE is not allowed"),
        (ALLOWED, "POST", "content-type, x-forwarded-for", "header x-forwarded-for is not allowed"),
    ],
)
def test_a_preflight_from_another_origin_or_for_another_method_or_header_is_refused(
    cors_gateway: httpx.Client, origin: str, method: str, headers: str, words: str
) -> None:
    response = preflight(cors_gateway, "/code-sessions", origin, method, headers)
    assert response.status_code == 403, response.text
    assert words in response.json()["error"]
    assert cors_headers(response) == {}


def test_answers_to_an_allowed_origin_say_so_refusals_included(
    cors_gateway: httpx.Client, languages: dict[str, dict[str, str]]
) -> None:
    origin = {"Origin": ALLOWED}
    created = cors_gateway.post("/code-sessions", json={"language_id": languages["python"]["id"]}, headers=origin)
    refused = cors_gateway.post("/code-sessions", json={"language_id": "python"}, headers=origin)
    wrong_type = cors_gateway.post("/code-sessions", content=b"{}", headers={**origin, "Content-Type": "text/plain"})
    for response, status in ((created, 201), (refused, 400), (wrong_type, 415)):
        assert response.status_code == status, response.text
        assert cors_headers(response) == {
            "access-control-allow-origin": ALLOWED,
            "access-control-expose-headers": "Retry-After",
        }
        assert "origin" in listed(response.headers["vary"])


def test_answers_to_another_origin_or_to_none_carry_no_cors_header(cors_gateway: httpx.Client) -> None:
    # The request is served (a browser, not the server, keeps the page from reading the answer)...
    for headers in ({"Origin": OTHER}, {}):
        response = cors_gateway.get("/languages", headers=headers)
        assert response.status_code == 200
        assert cors_headers(response) == {}
        # ...and a cache keeps it apart from the answers to an allowed origin.
        assert "origin" in listed(response.headers["vary"])


def test_a_websocket_from_another_origin_is_refused(cors_gateway: httpx.Client) -> None:
    url = str(cors_gateway.base_url.copy_with(scheme="ws", path=f"/executions/{uuid.uuid4()}/interact"))
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin=Origin(OTHER)).close()
    assert refused.value.response.status_code == 403
    # From an allowed origin the socket reaches the route, which finds no such execution.
    with pytest.raises(InvalidStatus) as unknown:
        connect(url, origin=Origin(ALLOWED)).close()
    assert unknown.value.response.status_code == 404


def test_without_origins_configured_no_answer_carries_a_cors_header(api: httpx.Client) -> None:
    asked = preflight(api, "/code-sessions", ALLOWED, "POST", "content-type")
    assert asked.status_code == 405  # an OPTIONS like any other: no route takes it
    assert asked.json()["error"]
    served = api.get("/languages", headers={"Origin": ALLOWED})
    assert served.status_code == 200
    for response in (asked, served):
        assert cors_headers(response) == {}


def test_a_preflight_needs_no_api_key(stack: Stack) -> None:
    """With API keys required, a preflight (which never carries one) is still answered, and the
    401 of a request without a key reaches the page."""
    gateway, url = start_gateway(stack, "gateway-cors-auth", LCE_CORS_ORIGINS=ALLOWED, LCE_AUTH="on")
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            asked = preflight(client, "/code-sessions", ALLOWED, "POST", "content-type, authorization")
            assert asked.status_code == 204, asked.text
            assert asked.headers["access-control-allow-origin"] == ALLOWED
            refused = client.get("/languages", headers={"Origin": ALLOWED})
            assert refused.status_code == 401, refused.text
            assert refused.headers["access-control-allow-origin"] == ALLOWED
    finally:
        stack.stop_service(gateway)


@pytest.mark.parametrize(
    "origins",
    ["https://ide.example.com/", "ide.example.com", "https://IDE.example.com", "null", f"*,{ALLOWED}"],
)
def test_a_gateway_refuses_to_start_with_origins_no_browser_sends(stack: Stack, origins: str) -> None:
    with pytest.raises(RuntimeError, match="exited with"):
        gateway, _ = start_gateway(stack, "gateway-cors-misconfigured", LCE_CORS_ORIGINS=origins)
        stack.stop_service(gateway)  # it started: the test fails, leaving nothing running
