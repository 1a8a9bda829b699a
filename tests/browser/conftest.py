"""The playground page in Debian's chromium (headless, driven by Playwright), against the real services
as processes: a stack of this folder's own (one executor), one browser for the module, a fresh browser
context (no cookies, no storage) per test, and a screenshot of each test's page kept in test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from devstack import Stack
from gateway.playground import DIST
from tests.conftest import REPO_ROOT, RedisServer, fresh_database
from tests.integration.conftest import stack_config

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: `make test` installs it (scripts/install-system-deps.sh)
ARTIFACTS = REPO_ROOT / "test-artifacts"
# Headless in a container as root, and nothing of its own on the network (no updates, sync or QUIC probes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    assert (DIST / "index.html").is_file(), "the playground is not built: run `make playground`"
    with fresh_database("lce_browser") as database_url:
        # Its own Redis database number, so its queue never meets the other stacks'.
        redis_url = redis_server.url.replace("/0", "/3")
        config = stack_config(tmp_path_factory.mktemp("browser"), database_url=database_url, redis_url=redis_url)
        config.executors = 1
        running = Stack(config)
        running.start()
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (make test does)"
    # Playwright gives each launch a fresh profile directory of its own (--user-data-dir).
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(base_url=stack.config.gateway_url, viewport={"width": 1280, "height": 760})
    context.set_default_timeout(30_000)
    opened = context.new_page()
    try:
        yield opened
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        opened.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        context.close()
