"""API keys at the front door: who is calling, for which tenant.

Every request but the open ones (health, the API's documents, the pages of gateway/playground.py,
CORS preflights) carries a key, as `Authorization: Bearer <key>` or `X-API-Key: <key>` (a browser's
WebSocket, which cannot set headers, offers the subprotocols `lce` and `lce.key.<key>`): none, or an
unknown or revoked one, is 401. The key is checked with execution_service (which owns keys) and the
answer kept for a few seconds. The caller's tenant and key then ride on every backend call the
request makes (the stubs are wrapped by `with_caller`), and the services keep each tenant to its own
sessions and executions. Authentication is off only where the deployment says so (LCE_AUTH=off, the default
on a loopback address), and the gateway says so at start.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.tenancy import Caller
from gateway import playground
from gateway.http_errors import HttpError, rpc_error_response
from lce.execution.v1 import execution_pb2, execution_pb2_grpc

# Paths anyone may call: what probes, browsers and API explorers fetch before they hold a key (and the
# pages, playground.is_open).
OPEN_PATHS = frozenset({"/health", "/openapi.json"})
# A WebSocket's key as a subprotocol, offered beside WEBSOCKET_PROTOCOL, which the accepted socket speaks.
WEBSOCKET_PROTOCOL = "lce"
WEBSOCKET_KEY_PREFIX = "lce.key."
CACHE_S = 5.0  # a revoked key stops working within this long
_CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class Principal:
    caller: Caller
    admin: bool = False


ANONYMOUS = Principal(Caller())  # without keys: the tenant ""
# The principal of the request being served (the asyncio task's context).
PRINCIPAL: ContextVar[Principal] = ContextVar("lce_principal", default=ANONYMOUS)


class KeyCheck:
    """Asks execution_service whose key it is; keeps each answer CACHE_S (by the key's hash)."""

    def __init__(self, access: execution_pb2_grpc.AccessServiceStub, deadline_s: float) -> None:
        self.access = access
        self.deadline_s = deadline_s
        self._known: dict[str, tuple[float, Principal]] = {}

    async def principal(self, key: str) -> Principal:
        """Raises AioRpcError (UNAUTHENTICATED for an unknown or revoked key)."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        known = self._known.get(digest)
        now = time.monotonic()
        if known is not None and known[0] > now:
            return known[1]
        response = await self.access.Authenticate(
            execution_pb2.AuthenticateRequest(api_key=key), timeout=self.deadline_s
        )
        principal = Principal(Caller(response.key.tenant, response.key.id), admin=response.key.admin)
        if len(self._known) >= _CACHE_ENTRIES:
            self._known.clear()
        self._known[digest] = (now + CACHE_S, principal)
        return principal


class Authentication:
    """ASGI middleware: sets PRINCIPAL for the request, or answers 401 without going further."""

    def __init__(self, app: ASGIApp, required: bool, keys: Callable[[], KeyCheck]) -> None:
        self.app = app
        self.required = required  # False: authentication is off (LCE_AUTH=off)
        self.keys = keys  # made in the app's lifespan, with the backends

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and WEBSOCKET_PROTOCOL in scope.get("subprotocols", ()):
            send = _speaking_lce(send)
        if not self.required or not _guarded(scope):
            await self.app(scope, receive, send)
            return
        keys = self.keys()
        key = _presented_key(scope)
        if not key:
            await _refuse(scope, receive, send, 401, {"error": "an API key is required: Authorization: Bearer <key>"})
            return
        try:
            principal = await keys.principal(key)
        except grpc.aio.AioRpcError as err:
            failed = rpc_error_response(err)
            body = {"error": "unknown or revoked API key"} if failed.status == 401 else failed.body
            await _refuse(scope, receive, send, failed.status, body, failed.headers)
            return
        token = PRINCIPAL.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            PRINCIPAL.reset(token)


def _guarded(scope: Scope) -> bool:
    if scope["type"] not in ("http", "websocket"):
        return False
    preflight = scope["type"] == "http" and scope["method"] == "OPTIONS"
    page = scope["type"] == "http" and playground.is_open(scope["path"])
    return not preflight and not page and scope["path"] not in OPEN_PATHS


def _presented_key(scope: Scope) -> str:
    headers = dict(scope["headers"])
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    for protocol in scope.get("subprotocols", ()):
        if protocol.startswith(WEBSOCKET_KEY_PREFIX):
            return str(protocol.removeprefix(WEBSOCKET_KEY_PREFIX))
    return headers.get(b"x-api-key", b"").decode("latin-1").strip()


def _speaking_lce(send: Send) -> Send:
    """A browser that offered subprotocols drops a socket accepted without one: accept with `lce`."""

    async def sending(message: Message) -> None:
        if message["type"] == "websocket.accept" and not message.get("subprotocol"):
            message = {**message, "subprotocol": WEBSOCKET_PROTOCOL}
        await send(message)

    return sending


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    """An HTTP answer, or for a WebSocket handshake the same as its denial response."""
    prefix = "http.response"
    if scope["type"] == "websocket":
        await receive()  # the handshake's websocket.connect comes first
        prefix = "websocket.http.response"
    payload = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if status == 401:
        raw_headers.append((b"www-authenticate", b"Bearer"))
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": f"{prefix}.start", "status": status, "headers": raw_headers})
    await send({"type": f"{prefix}.body", "body": payload})


def require_admin() -> None:
    """Raises 403 unless the request's key is an admin's (or authentication is off)."""
    principal = PRINCIPAL.get()
    if principal.caller.key_id is not None and not principal.admin:
        raise HttpError(403, "this endpoint needs an admin API key")


class _WithCaller:
    """A stub whose every call carries the request's tenant and key (common/tenancy.py), or `fixed`."""

    def __init__(self, stub: object, fixed: Caller | None) -> None:
        self._stub = stub
        self._fixed = fixed

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)

        def call(request: Any, **kwargs: Any) -> Any:
            caller = self._fixed or PRINCIPAL.get().caller
            return method(request, metadata=caller.metadata(), **kwargs)

        return call


def with_caller(stub: Any, fixed: Caller | None = None) -> Any:
    return _WithCaller(stub, fixed)
