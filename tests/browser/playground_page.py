"""Steps on the playground page that its tests share."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from playwright.sync_api import Page, expect

RUN_TIMEOUT_MS = 60_000


def open_page(page: Page, path: str = "/") -> None:
    page.goto(path)
    expect(page.locator("body[data-ready=true]")).to_be_attached()


def pick(page: Page, language: str) -> None:
    value = page.locator(f'#language option[data-name="{language}"]').get_attribute("value")
    page.select_option("#language", value=value)
    expect(page.locator(f"body[data-language={language}]")).to_be_attached()  # its template is in


def editor_text(page: Page) -> str:
    """The editor's lines (all drawn: the programs here are shorter than the viewport)."""
    return "\n".join(page.locator(".cm-content .cm-line").all_text_contents())


def put_code(page: Page, source: str) -> None:
    """Replaces the editor's text as a paste does (typing would auto-close brackets and indent)."""
    page.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(source)
    expect(page.locator("#save-state")).to_have_text("Saved")


def session_of(page: Page) -> str:
    return parse_qs(urlparse(page.url).query)["session"][0]


def status(page: Page) -> str:
    return page.locator("#status .badge").inner_text()


def wait_finished(page: Page, expected: str = "COMPLETED") -> None:
    expect(page.locator("#status .badge")).to_have_text(expected, timeout=RUN_TIMEOUT_MS)
