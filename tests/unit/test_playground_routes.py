"""gateway/playground.py's routes on a build of the test's own (or none), and which paths go without a key."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from gateway import auth, playground


def client(dist: Path) -> httpx.AsyncClient:
    app = Starlette(routes=playground.routes(dist))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


@pytest.fixture
def built(tmp_path: Path) -> Path:
    (tmp_path / "playground").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "index.html").write_text("<title>LCE playground</title>")
    (tmp_path / "playground" / "app-X.js").write_text("console.log(1)")
    (tmp_path / "docs" / "swagger-ui.css").write_text("body{}")
    (tmp_path / "secret.txt").write_text("not for the web")
    return tmp_path


@pytest.mark.anyio
async def test_the_build_is_served(built: Path) -> None:
    web = client(built)
    page = await web.get("/")
    assert page.status_code == 200 and "LCE playground" in page.text
    assert page.headers["cache-control"] == "no-cache"
    assert (await web.get("/playground/app-X.js")).text == "console.log(1)"
    assert (await web.get("/docs/assets/swagger-ui.css")).text == "body{}"
    docs = await web.get("/docs")
    assert docs.status_code == 200
    assert '"/docs/assets/swagger-ui-bundle.js"' in docs.text and "cdn" not in docs.text.lower()
    assert (await web.get("/docs/oauth2-redirect")).status_code == 200


@pytest.mark.anyio
async def test_nothing_outside_the_build_folders(built: Path) -> None:
    web = client(built)
    for path in ("/playground/../secret.txt", "/playground/%2e%2e/secret.txt", "/docs/assets/../index.html"):
        answer = await web.get(path)
        assert answer.status_code == 404 and "not for the web" not in answer.text, path


@pytest.mark.anyio
async def test_without_a_build_the_page_says_how_to_make_one(tmp_path: Path) -> None:
    web = client(tmp_path / "missing")
    for path in ("/", "/playground/app-X.js"):
        answer = await web.get(path)
        assert answer.status_code == 503
        assert answer.json() == {"error": playground.NOT_BUILT}
    assert "make playground" in playground.NOT_BUILT
    assert (await web.get("/docs")).status_code == 200  # the page itself; its assets wait for the build


def scope(kind: str, path: str, **extra: object) -> dict[str, object]:
    return {"type": kind, "path": path, "method": "GET", "headers": [], **extra}


@pytest.mark.parametrize(
    ("path", "guarded"),
    [
        ("/", False),
        ("/playground/app-X.js", False),
        ("/docs", False),
        ("/docs/assets/swagger-ui.css", False),
        ("/health", False),
        ("/languages", True),
        ("/code-sessions", True),
        ("/playground", True),  # only what is under the prefix
        ("/docsx", True),
        ("/docs/other", True),
    ],
)
def test_only_the_pages_and_their_files_go_without_a_key(path: str, guarded: bool) -> None:
    assert auth._guarded(scope("http", path)) is guarded


def test_a_websocket_is_never_a_page() -> None:
    assert auth._guarded(scope("websocket", "/"))


def test_a_browser_websocket_names_its_key_as_a_subprotocol() -> None:
    offered = scope("websocket", "/executions/x/interact", subprotocols=["lce", "lce.key.lce_abc-_9"])
    assert auth._presented_key(offered) == "lce_abc-_9"
    assert auth._presented_key(scope("websocket", "/executions/x/interact", subprotocols=["lce"])) == ""
