"""Behind a sign-in proxy (AUTH_MODE=header), in Chromium: a visit the proxy did not identify
gets a plain page, and a user name means one account whatever its case."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import (  # noqa: F401
    TIMEOUT_MS,
    bot,
    browser_fixture,
    open_app,
    page_fixture,
    playwright_fixture,
    send,
)
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply


@pytest.fixture
def header_app(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningApp]:
    """The proxy is on loopback (TRUSTED_PROXIES' default) and sets X-Forwarded-User."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    running = start_app(fake_openai, tmp_path / "parley.db", AUTH_MODE="header")
    try:
        yield running
    finally:
        running.close()


def visit(browser: Browser, user: str | None = None, locale: str = "en-US") -> Page:
    """A page in a browser context of its own, as the proxy would pass it on."""
    headers = {"X-Forwarded-User": user} if user is not None else {}
    context = browser.new_context(
        viewport={"width": 1280, "height": 860}, locale=locale, extra_http_headers=headers
    )
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


def test_a_visit_the_proxy_did_not_identify_gets_a_plain_page(
    header_app: RunningApp, browser: Browser
) -> None:
    for locale, title in (
        ("en-US", "Parley does not know who you are"),
        ("zh-CN", "Parley 无法确认你的身份"),
    ):
        page = visit(browser, locale=locale)
        try:
            response = page.goto(header_app.url)
            assert response is not None and response.status == 401
            expect(page.locator("h1")).to_have_text(title)
            expect(page.locator("body")).not_to_contain_text("Not authenticated")
            assert response.headers["content-type"].startswith("text/html")
            assert "content-security-policy" in response.headers
        finally:
            page.context.close()


def test_a_user_name_is_one_account_whatever_its_case(
    header_app: RunningApp, browser: Browser
) -> None:
    header_app.fake.enqueue(Reply(content="Noted, ALICE."))
    first = visit(browser, "ALICE")
    try:
        open_app(first, header_app)
        expect(first.locator("#signed-in")).to_have_text("Signed in as ALICE")
        expect(first.locator("#sign-out")).to_have_count(0)  # the proxy signs people out
        send(first, "Remember me")
        expect(bot(first, "Noted")).to_be_visible()
        expect(first.locator("#chatbot")).to_contain_text("completion")
    finally:
        first.context.close()
    second = visit(browser, "alice")
    try:
        open_app(second, header_app)
        expect(second.locator("#signed-in")).to_have_text("Signed in as ALICE")  # first spelling
        expect(second.locator("#conversations label")).to_have_text(["Remember me"])
    finally:
        second.context.close()


def test_api_callers_without_the_header_still_get_json(header_app: RunningApp) -> None:
    """Only a browser asking for a page gets the page; the page's own calls and API clients
    keep Gradio's JSON."""
    for path in ("", "config", "gradio_api/info"):
        answer = httpx.get(
            header_app.url + path, headers={"Accept": "application/json"}, timeout=10
        )
        assert answer.status_code == 401
        assert answer.headers["content-type"].startswith("application/json"), path
    page = httpx.get(header_app.url, headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 401 and "did not identify you" in page.text
