"""The pages a person opens in a browser: the playground at `/` and the API explorer at `/docs`.

Both are files built at setup (`make playground`: playground/build.mjs) into playground/dist, never at
run time: the page and its bundle under /playground/, Swagger UI's own files under /docs/assets/, so
that neither needs a CDN. Without a build, `/` answers 503 saying how to make one. They are open
without an API key (gateway/auth.py): they hold no data, and the page asks for a key itself.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

DIST = Path(__file__).resolve().parents[1] / "playground" / "dist"
PAGE_PATH = "/"
BUNDLE_PREFIX = "/playground"
DOCS_PATH = "/docs"
DOCS_ASSETS_PREFIX = "/docs/assets"
DOCS_OAUTH2_REDIRECT = "/docs/oauth2-redirect"

# What anyone may fetch without a key: the pages, and the files under the prefixes.
OPEN_PATHS = frozenset({PAGE_PATH, DOCS_PATH, DOCS_OAUTH2_REDIRECT})
OPEN_PREFIXES = (f"{BUNDLE_PREFIX}/", f"{DOCS_ASSETS_PREFIX}/")

NOT_BUILT = "the playground page is not built: run `make playground` (npm ci and the build, in playground/)"


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class _BuiltFiles:
    """The files of one folder of the build; 503 while there is no build."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = StaticFiles(directory=directory, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.directory.is_dir():
            await _not_built()(scope, receive, send)
            return
        await self.files(scope, receive, send)


def _not_built() -> Response:
    return JSONResponse({"error": NOT_BUILT}, status_code=503)


def routes(dist: Path = DIST) -> list[BaseRoute]:
    """The page, its bundle, and Swagger UI served from the build (FastAPI's docs_url is off)."""

    async def page(request: Request) -> Response:
        index = dist / "index.html"
        if not index.is_file():
            return _not_built()
        # The page names its bundle by content hash: the page itself must be asked for again each time.
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    async def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="LCE API",
            swagger_js_url=f"{DOCS_ASSETS_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS_PREFIX}/favicon-32x32.png",
            oauth2_redirect_url=DOCS_OAUTH2_REDIRECT,
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    return [
        Route(PAGE_PATH, page, methods=["GET"]),
        Mount(BUNDLE_PREFIX, app=_BuiltFiles(dist / "playground")),
        Route(DOCS_PATH, docs, methods=["GET"]),
        Route(DOCS_OAUTH2_REDIRECT, oauth2_redirect, methods=["GET"]),
        Mount(DOCS_ASSETS_PREFIX, app=_BuiltFiles(dist / "docs")),
    ]
