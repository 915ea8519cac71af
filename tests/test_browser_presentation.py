"""Presentation in a real headless Chromium: light/dark theme, projector mode, Esc to stop,
Enter and Shift+Enter, copy buttons on code blocks, and the phone layout.

Fixtures (`browser`, `page`, `fake_openai`) and helpers come from tests/conftest.py and
tests/browser.py. The app runs on SQLite only: nothing here depends on the database.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import (  # noqa: F401
    ARTIFACTS,
    TIMEOUT_MS,
    bot,
    browser_fixture,
    chat_requests,
    live,
    message_box,
    open_app,
    page_fixture,
    playwright_fixture,
    send,
    wait_until,
)
from tests.conftest import RunningApp
from tests.fake_openai import Reply, last_user_text

DARK = re.compile(r"\bdark\b")
PROJECTOR = re.compile(r"\bparley-projector\b")
OPEN = re.compile(r"\bopen\b")


@pytest.fixture
def app(sqlite_app: RunningApp) -> RunningApp:
    """Parley on SQLite only (overrides conftest's app, which also runs PostgreSQL)."""
    return sqlite_app


@contextmanager
def new_page(browser: Browser, **options: Any) -> Iterator[Page]:
    """A page in a fresh browser context of its own (colour scheme, viewport, permissions)."""
    context = browser.new_context(**({"viewport": {"width": 1280, "height": 860}} | options))
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        yield page
    finally:
        context.close()


def stored(page: Page, key: str) -> str | None:
    value = page.evaluate("key => localStorage.getItem(key)", key)
    return value if isinstance(value, str) else None


def reload(page: Page) -> None:
    """Reload and wait, as open_app does, until the page's load events have run."""
    page.reload()
    expect(page.locator("#models-note")).to_contain_text("models from")


def font_px(page: Page, selector: str) -> float:
    size = page.locator(selector).first.evaluate("el => getComputedStyle(el).fontSize")
    return float(str(size).removesuffix("px"))


# ---- theme and projector mode ----------------------------------------------------------------


def test_theme_toggle_switches_dark_and_survives_reload(app: RunningApp, browser: Browser) -> None:
    with new_page(browser, color_scheme="light") as page:
        body = page.locator("body")
        open_app(page, app)
        expect(body).not_to_have_class(DARK)  # nothing stored: the system's light

        page.locator("#theme-toggle").click()
        expect(body).to_have_class(DARK)
        assert stored(page, "parley-theme") == "dark"
        reload(page)
        expect(body).to_have_class(DARK)

        # A theme named in the URL wins; choosing one with the button drops it from the URL.
        page.goto(app.url + "?__theme=light")
        expect(page.locator("#models-note")).to_contain_text("models from")
        expect(body).not_to_have_class(DARK)
        page.locator("#theme-toggle").click()
        expect(body).to_have_class(DARK)
        assert "__theme" not in page.url

        page.locator("#theme-toggle").click()
        expect(body).not_to_have_class(DARK)
        assert stored(page, "parley-theme") == "light"
        reload(page)
        expect(body).not_to_have_class(DARK)


def test_stored_light_theme_beats_a_dark_system_preference(
    app: RunningApp, browser: Browser
) -> None:
    with new_page(browser, color_scheme="dark") as page:
        body = page.locator("body")
        open_app(page, app)
        expect(body).to_have_class(DARK)  # nothing stored: Gradio follows the system
        page.locator("#theme-toggle").click()
        expect(body).not_to_have_class(DARK)
        reload(page)
        expect(body).not_to_have_class(DARK)


def test_projector_mode_enlarges_chat_text_and_survives_reload(app: RunningApp, page: Page) -> None:
    answer = '#chatbot [data-testid="bot"] .message-content'
    open_app(page, app)
    send(page, "Projector check")
    expect(bot(page, "Echo: Projector check")).to_be_visible()
    chat_before = font_px(page, answer)
    box_before = font_px(page, "#message textarea")

    page.locator("#projector-toggle").click()
    expect(page.locator("body")).to_have_class(PROJECTOR)
    assert font_px(page, answer) >= 1.3 * chat_before
    assert font_px(page, "#message textarea") > box_before
    assert stored(page, "parley-projector") == "on"

    reload(page)
    expect(page.locator("body")).to_have_class(PROJECTOR)
    page.locator("#conversations label", has_text="Projector check").click()
    expect(bot(page, "Echo: Projector check")).to_be_visible()
    assert font_px(page, answer) >= 1.3 * chat_before

    page.locator("#projector-toggle").click()
    expect(page.locator("body")).not_to_have_class(PROJECTOR)
    assert font_px(page, answer) == chat_before
    assert stored(page, "parley-projector") == "off"


# ---- keyboard --------------------------------------------------------------------------------


def test_escape_stops_a_streaming_answer(app: RunningApp, page: Page) -> None:
    # Role chunk + 3 content chunks of 5 characters, then silence until the client leaves.
    app.fake.enqueue(
        Reply(content="Partial answer that never finishes.", chunk_chars=5, stall_after=4)
    )
    open_app(page, app)
    page.keyboard.press("Escape")  # nothing streams: Esc does nothing
    send(page, "Tell me a long story")
    expect(live(page)).to_contain_text("Partial answer")
    expect(page.locator("#message button.stop-button")).to_be_visible()

    page.keyboard.press("Escape")
    assert app.fake.wait_for_disconnect(timeout=5), "the upstream stream was not closed"
    chat = page.locator("#chatbot")
    expect(chat).to_contain_text("Stopped by you")
    expect(chat).not_to_contain_text("never finishes")
    assert len(chat_requests(app)) == 1


def test_escape_stops_a_compare_run(app: RunningApp, page: Page) -> None:
    for _ in range(2):
        app.fake.enqueue(
            Reply(content="Partial compare that never ends", chunk_chars=5, stall_after=3)
        )
    open_app(page, app)
    page.get_by_role("tab", name="Compare").click()
    for column, model in enumerate(app.fake.models[:2]):
        field = page.locator(f"#compare-model-{column} input")
        expect(field).not_to_have_value("")  # the provider's default arrived: type over it
        field.fill(model)
        field.press("Enter")
        field.blur()
        expect(field).to_have_value(model)
    page.keyboard.press("Escape")  # nothing streams yet: Esc leaves Compare alone
    page.locator("#compare-prompt textarea").fill("Tell me a long story")
    page.locator("#compare-send").click()
    for column in (0, 1):
        expect(page.locator(f"#compare-col-{column}")).to_contain_text("Partial co")

    page.keyboard.press("Escape")
    assert app.fake.wait_for_disconnect(timeout=5, count=2), "the upstream streams stayed open"
    for column in (0, 1):
        expect(page.locator(f"#compare-col-{column}")).to_contain_text("Stopped by you")


def test_shift_enter_adds_a_line_and_enter_sends(app: RunningApp, page: Page) -> None:
    open_app(page, app)
    box = message_box(page)
    box.click()
    box.press_sequentially("first line")
    box.press("Shift+Enter")
    box.press_sequentially("second line")
    expect(box).to_have_value("first line\nsecond line")  # still in the box: not sent
    assert chat_requests(app) == []

    box.press("Enter")
    expect(bot(page, "Echo: first line")).to_contain_text("second line")
    expect(box).to_have_value("")
    requests = chat_requests(app)
    assert len(requests) == 1
    assert last_user_text(requests[0]["json"]) == "first line\nsecond line"


# ---- code blocks -----------------------------------------------------------------------------

CODE = 'def greet(name):\n    return f"Hello, {name}!"'


def test_code_block_copy_button_puts_the_code_on_the_clipboard(
    app: RunningApp, browser: Browser
) -> None:
    app.fake.enqueue(Reply(content=f"Here you go:\n\n```python\n{CODE}\n```\n\nThat is all."))
    with new_page(browser, permissions=["clipboard-read", "clipboard-write"]) as page:
        open_app(page, app)
        page.evaluate("navigator.clipboard.writeText('nothing yet')")
        send(page, "Write a greeting function")
        answer = bot(page, "Here you go")
        expect(answer).to_contain_text("That is all.")
        button = answer.locator(".code_wrap button.copy_code_button")
        expect(button).to_have_count(1)
        expect(button).to_be_visible()
        button.click()
        wait_until(page, "async (code) => (await navigator.clipboard.readText()) === code", CODE)


# ---- phone -----------------------------------------------------------------------------------

NO_SIDEWAYS_SCROLL = "() => document.scrollingElement.scrollWidth <= window.innerWidth"


def test_phone_layout_has_no_sideways_scroll_and_chats(app: RunningApp, browser: Browser) -> None:
    wide = "x = 'a long line of code that would widen the page' * 1000"
    app.fake.enqueue(Reply(content=f"Answer on a phone.\n\n```python\n{wide}\n```"))
    phone = {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 2,
    }
    with new_page(browser, **phone) as page:
        open_app(page, app)
        expect(page.locator("#sidebar")).not_to_have_class(OPEN)  # closed: the chat shows
        box = message_box(page)
        expect(box).to_be_in_viewport()
        expect(page.locator("#chatbot")).to_be_in_viewport()
        assert page.evaluate(NO_SIDEWAYS_SCROLL)
        # The settings column follows the chat in the normal flow.
        settings = page.locator("#settings").bounding_box()
        chat = page.locator("#chatbot").bounding_box()
        assert settings is not None and chat is not None
        assert settings["y"] >= chat["y"] + chat["height"]
        assert page.locator("#settings").evaluate("el => getComputedStyle(el).position") == (
            "static"
        )

        box.tap()
        box.fill("Hello from a phone")
        page.locator("#message button.submit-button").tap()
        answer = bot(page, "Answer on a phone")
        expect(answer.locator("pre")).to_be_visible()
        expect(page.locator("#chatbot")).to_contain_text("completion")  # the final stats line
        assert page.evaluate(NO_SIDEWAYS_SCROLL)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "phone.png"))

        # The sidebar opens on demand and gets out of the way once a chat is picked.
        page.locator("#sidebar .toggle-button").tap()
        expect(page.locator("#sidebar")).to_have_class(OPEN)
        page.locator("#conversations label", has_text="Hello from a phone").tap()
        expect(page.locator("#sidebar")).not_to_have_class(OPEN)
        expect(box).to_be_in_viewport()
