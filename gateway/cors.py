"""CORS: which web pages may call the API from a browser (LCE_CORS_ORIGINS; none by default, and
then this middleware is not installed and no answer carries a CORS header).

A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here, before any
other check (a preflight carries no API key): 204 for an allowed origin asking for this API's
methods and headers, else 403 without CORS headers. Other answers to an allowed origin say so.
Credentials (cookies, HTTP authentication) are never allowed, for any origin: API keys travel in
headers the page sets itself, which needs none. So "*" (any origin) is answered "*", which
browsers never combine with credentials. A WebSocket, which browsers open without CORS, is
refused to an origin not allowed.
"""

from __future__ import annotations

import functools

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ANY_ORIGIN = "*"
ALLOWED_METHODS = ("GET", "PATCH", "POST")
# Content-Type too: application/json is not one of the values a browser sends without asking.
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "X-API-Key")
# What a page may read beside the headers every response shows: when to retry a 429 or a 503.
EXPOSED_HEADERS = ("Retry-After",)
# How long a browser may reuse a preflight's answer: a change of LCE_CORS_ORIGINS reaches pages within it.
MAX_AGE_S = 600


class Cors:
    """ASGI middleware answering preflights and marking the answers to allowed origins."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self.app = app
        self.any_origin = origins == (ANY_ORIGIN,)
        self.origins = frozenset(origins)
        self._allowed_headers = frozenset(name.lower() for name in ALLOWED_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if scope["type"] == "websocket":
            if origin is not None and not self._allows(origin):
                await receive()  # websocket.connect; a close before accepting refuses the handshake (403)
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        if origin is not None and scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin, headers)(scope, receive, send)
            return
        await self.app(scope, receive, functools.partial(self._marked, origin=origin, send=send))

    def _allows(self, origin: str) -> bool:
        return self.any_origin or origin in self.origins

    def _preflight(self, origin: str, headers: Headers) -> Response:
        method = headers["access-control-request-method"]
        asked = [name.strip().lower() for name in headers.get("access-control-request-headers", "").split(",")]
        refused_headers = sorted({name for name in asked if name} - self._allowed_headers)
        if not self._allows(origin):
            refusal = f"CORS: origin {origin} is not allowed"
        elif method not in ALLOWED_METHODS:
            refusal = f"CORS: method {method} is not allowed (allowed: {', '.join(ALLOWED_METHODS)})"
        elif refused_headers:
            refusal = f"CORS: header {refused_headers[0]} is not allowed (allowed: {', '.join(ALLOWED_HEADERS)})"
        else:
            return Response(
                status_code=204,
                headers={
                    "Access-Control-Allow-Origin": self._allow_origin(origin),
                    "Access-Control-Allow-Methods": ", ".join(ALLOWED_METHODS),
                    "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
                    "Access-Control-Max-Age": str(MAX_AGE_S),
                    **self._vary(),
                },
            )
        return JSONResponse({"error": refusal}, status_code=403, headers=self._vary())

    async def _marked(self, message: Message, *, origin: str | None, send: Send) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            if origin is not None and self._allows(origin):
                headers["Access-Control-Allow-Origin"] = self._allow_origin(origin)
                headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
            if not self.any_origin:
                headers.add_vary_header("Origin")
        await send(message)

    def _allow_origin(self, origin: str) -> str:
        return ANY_ORIGIN if self.any_origin else origin

    def _vary(self) -> dict[str, str]:
        """Caches must keep answers apart by Origin, unless every origin gets the same one."""
        return {} if self.any_origin else {"Vary": "Origin"}
