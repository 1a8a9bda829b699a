"""The playground page, one behaviour per test, in a real chromium against the real services."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.playground_page import (
    RUN_TIMEOUT_MS,
    editor_text,
    open_page,
    pick,
    put_code,
    session_of,
    status,
    wait_finished,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

C_LIVE = r"""#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("first line\n");
    fflush(stdout);
    fprintf(stderr, "a warning on stderr\n");
    sleep(2);
    printf("second line\n");
    return 0;
}
"""
PY_SUM = "a, b = map(int, input().split())\nprint(a + b)\n"


def test_page_loads_with_every_language_and_its_version(page: Page, api: httpx.Client) -> None:
    open_page(page)
    expect(page).to_have_title("LCE playground")
    options = page.locator("#language option")
    languages = api.get("/languages").json()["languages"]
    expect(options).to_have_count(len(languages))
    labels = options.all_inner_texts()
    for language in languages:
        assert any(language["version"] in label for label in labels), (language, labels)
    # A new visitor starts on Python's template, highlighted, with no session yet.
    expect(page.locator(".cm-content")).to_contain_text('print("Hello World")')
    assert page.locator(".cm-content span").count() > 0
    assert "session" not in page.url


def test_picking_c_loads_its_template_and_highlighting(page: Page) -> None:
    open_page(page)
    pick(page, "c")
    expect(page.locator(".cm-content")).to_contain_text("#include <stdio.h>")
    assert "int main(void)" in editor_text(page)
    # Keywords are highlighted by the C grammar: spans of their own, styled apart from the plain text.
    keyword = page.locator(".cm-content span", has_text=re.compile(r"^return$")).first
    plain = page.locator(".cm-line").first
    assert keyword.evaluate("n => getComputedStyle(n).color") != plain.evaluate("n => getComputedStyle(n).color")


def test_typing_a_program_indents_it_and_autosaves_it(page: Page, api: httpx.Client) -> None:
    open_page(page)
    pick(page, "c")
    page.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.type("int main(void) {")
    page.keyboard.press("Enter")
    page.keyboard.type("return 0;")
    # The editor closed the brace and indented the body, as an editor does.
    assert editor_text(page) == "int main(void) {\n    return 0;\n}"
    expect(page.locator("#save-state")).to_have_text("Saved")
    saved = api.get(f"/code-sessions/{session_of(page)}").json()
    assert saved["source_code"] == "int main(void) {\n    return 0;\n}"
    assert saved["language_name"] == "c"


def test_run_streams_stdout_and_stderr_apart(page: Page) -> None:
    open_page(page)
    pick(page, "c")
    put_code(page, C_LIVE)
    page.keyboard.press("Control+Enter")
    # The first line shows while the program still sleeps: output is live, not read at the end.
    expect(page.locator("#output .out").first).to_contain_text("first line", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#output")).not_to_contain_text("second line")
    assert status(page) == "RUNNING"
    expect(page.locator("#output .err")).to_have_text("a warning on stderr\n")
    wait_finished(page)
    expect(page.locator("#output .out").last).to_contain_text("second line")
    expect(page.locator('#status [data-field="time"]')).to_contain_text(" ms")
    expect(page.locator('#status [data-field="memory"]')).to_contain_text("B")
    expect(page.locator('#status [data-field="exit code"]')).to_have_text("exit code: 0")


def test_run_with_stdin_and_arguments(page: Page) -> None:
    open_page(page)
    put_code(page, "import sys\n" + PY_SUM + "print(sys.argv[1:])\n")
    page.fill("#stdin", "40 2\n")
    page.fill("#args", '--name "two words"')
    page.click("#run")
    wait_finished(page)
    expect(page.locator("#output")).to_have_text("42\n['--name', 'two words']\n")


def test_interactive_program_reads_what_is_typed(page: Page) -> None:
    open_page(page)
    put_code(page, 'name = input("name? ")\nprint(f"hello {name}")\nprint(input("again? ") * 2)\n')
    page.check("#interactive")
    page.click("#run")
    # The prompt arrives before anything is typed: the program is waiting on its open stdin.
    expect(page.locator("#output")).to_have_text("name? ", timeout=RUN_TIMEOUT_MS)
    assert status(page) == "RUNNING"
    page.fill("#typed", "Ada")
    page.press("#typed", "Enter")
    expect(page.locator("#output")).to_contain_text("hello Ada\nagain? ")
    page.fill("#typed", "ab")
    page.press("#typed", "Enter")
    wait_finished(page)
    expect(page.locator("#output")).to_have_text("name? Ada\nhello Ada\nagain? ab\nabab\n")
    expect(page.locator("#output .typed").first).to_have_text("Ada\n")
    expect(page.locator("#typing")).to_be_hidden()


def test_a_saved_key_does_no_harm_where_keys_are_off(page: Page) -> None:
    page.add_init_script("localStorage.setItem('lce.apiKey', 'lce_from-another-server')")
    open_page(page)
    put_code(page, 'print(input("? ") + "!")\n')
    page.check("#interactive")
    page.click("#run")  # the WebSocket offers the key as a subprotocol: it must still be accepted
    expect(page.locator("#output")).to_have_text("? ", timeout=RUN_TIMEOUT_MS)
    page.fill("#typed", "hi")
    page.press("#typed", "Enter")
    wait_finished(page)
    expect(page.locator("#output")).to_have_text("? hi\nhi!\n")


def test_reload_and_shared_link_restore_the_code(page: Page) -> None:
    open_page(page)
    pick(page, "ruby")
    put_code(page, 'puts "kept across reloads"\n')
    link = page.url
    page.reload()
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    assert editor_text(page) == 'puts "kept across reloads"\n'
    assert page.locator("#language option:checked").get_attribute("data-name") == "ruby"
    # Another visitor (a fresh browser context: nothing stored) opening the link sees the same.
    other = page.context.browser.new_context()
    try:
        shared = other.new_page()
        shared.goto(link)
        expect(shared.locator(".cm-content")).to_contain_text('puts "kept across reloads"')
    finally:
        other.close()


def test_judge_panel_shows_each_case_passed_or_failed(page: Page) -> None:
    open_page(page)
    put_code(page, PY_SUM)
    page.click("#tests-panel summary")
    first = page.locator(".case").nth(0)
    first.locator(".case-stdin").fill("2 3\n")
    first.locator(".case-expected").fill("5\n")
    page.click("#add-case")
    second = page.locator(".case").nth(1)
    second.locator(".case-stdin").fill("1 1\n")
    second.locator(".case-expected").fill("3\n")
    page.click("#run-tests")
    expect(page.locator("#tests-summary")).to_have_text("1/2 passed", timeout=RUN_TIMEOUT_MS)
    expect(first).to_have_class(re.compile(r"\bpassed\b"))
    expect(first.locator(".verdict")).to_have_text("✓ passed")
    expect(second).to_have_class(re.compile(r"\bfailed\b"))
    expect(second.locator(".case-actual")).to_contain_text("got: 2")
    expect(page.locator('#status [data-field="tests"]')).to_have_text("tests: 1/2 passed")


def test_closed_session_is_explained_and_can_go_on_in_a_new_one(page: Page, api: httpx.Client) -> None:
    open_page(page)
    put_code(page, 'print("still here")\n')
    closed = session_of(page)
    assert api.patch(f"/code-sessions/{closed}/close").status_code == 200
    page.click("#run")
    notice = page.locator("#notice")
    expect(notice).to_be_visible()
    expect(page.locator("#notice-text")).to_have_text(re.compile(r"^This session is closed"))
    assert "{" not in page.locator("#notice-text").inner_text()  # words, not the JSON answer
    page.click("#notice-action")
    expect(page).not_to_have_url(re.compile(closed))
    page.click("#run")
    wait_finished(page)
    expect(page.locator("#output")).to_have_text("still here\n")


def test_rate_limit_is_explained_with_its_retry_time(page: Page, api: httpx.Client) -> None:
    open_page(page)
    put_code(page, "pass\n")
    session_id = session_of(page)
    answers = [api.post(f"/code-sessions/{session_id}/run").status_code for _ in range(10)]
    assert answers == [202] * 10  # the session's runs of this minute, all taken
    page.click("#run")
    expect(page.locator("#notice-text")).to_have_text(re.compile(r"^Too many runs: try again in \d+ s\.$"))
    expect(page.locator("#status .badge")).to_have_text("NOT RUN")


def test_too_large_input_is_explained(page: Page) -> None:
    open_page(page)
    page.locator("#stdin").evaluate("(node) => { node.value = 'x'.repeat(1024 * 1024 + 1); }")
    page.click("#run")
    expect(page.locator("#notice-text")).to_have_text(re.compile(r"^Too large for the server \(.*stdin"))
    expect(page.locator("#status .badge")).to_have_text("NOT RUN")


def test_docs_work_without_internet(page: Page) -> None:
    outside: list[str] = []

    def local_only(route: Route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    page.goto("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("LCE")
    expect(page.locator(".opblock-summary-path", has_text="/code-sessions/{session_id}/run").first).to_be_visible()
    assert outside == []
