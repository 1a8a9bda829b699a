"""The playground page with API keys on (LCE_AUTH=on): the page and /docs open to anyone, every API
call with the visitor's key, the live output and the interactive WebSocket included."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from devstack import Stack
from tests.browser.playground_page import RUN_TIMEOUT_MS, open_page, put_code, wait_finished
from tests.integration import test_tenancy
from tests.integration.test_tenancy import Secured

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# The stack of tests/integration/test_tenancy.py (keys on, one executor), as this module's own.
secured = test_tenancy.secured


@pytest.fixture(scope="module")
def stack(secured: Secured) -> Stack:
    """The page fixture's stack: this module's, with keys on."""
    return secured.stack


def test_page_and_docs_need_no_key_but_the_api_does(secured: Secured) -> None:
    with secured.client(None) as anonymous:
        page = anonymous.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        bundle = re.search(r'src="(/playground/app-[\w-]+\.js)"', page.text)
        assert bundle is not None, page.text
        assert anonymous.get(bundle.group(1)).status_code == 200
        assert anonymous.get("/docs").status_code == 200
        assert anonymous.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
        assert anonymous.get("/languages").status_code == 401
        assert anonymous.get("/playground/no-such-file.js").status_code == 404


def test_page_asks_for_a_key_and_runs_with_it(page: Page, secured: Secured) -> None:
    secret, _ = secured.new_key("playground")
    page.goto("/")
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#key-reason")).to_have_text(re.compile(r"needs an API key"))
    page.fill("#key-input", "lce_not-a-key")
    page.click("#key-dialog button[value=save]")
    expect(page.locator("#key-reason")).to_have_text(re.compile(r"refused your API key"))
    page.fill("#key-input", secret)
    page.click("#key-dialog button[value=save]")
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    expect(page.locator("#key-button")).to_have_text("API key ✓")
    put_code(page, 'print("with a key")\n')
    page.keyboard.press("Control+Enter")
    wait_finished(page)
    expect(page.locator("#output")).to_have_text("with a key\n")


def test_interactive_run_with_a_key(page: Page, secured: Secured) -> None:
    secret, _ = secured.new_key("playground")
    page.add_init_script(f"localStorage.setItem('lce.apiKey', {secret!r})")
    open_page(page)
    put_code(page, 'print(input("? ").upper())\n')
    page.check("#interactive")
    page.click("#run")
    expect(page.locator("#output")).to_have_text("? ", timeout=RUN_TIMEOUT_MS)
    page.fill("#typed", "typed through the socket")
    page.press("#typed", "Enter")
    wait_finished(page)
    expect(page.locator("#output")).to_contain_text("TYPED THROUGH THE SOCKET\n")
