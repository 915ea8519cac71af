"""Browser-test fixtures and helpers: Debian's headless Chromium driven by Playwright.

Registered as a pytest plugin by tests/conftest.py (``pytest_plugins``), so the fixtures
``playwright``, ``browser`` and ``page`` are available to every test module and one Chromium
serves the whole session. Needs /usr/bin/chromium (`apt-get install -y chromium`); Playwright's
own browser download is not used. Waits are Playwright's auto-waiting `expect` /
`wait_until`, never fixed sleeps.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Browser, Locator, Page, Playwright, expect, sync_playwright

if TYPE_CHECKING:
    from tests.conftest import RunningApp

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TIMEOUT_MS = 10_000

expect.set_options(timeout=TIMEOUT_MS)


# The fixtures are imported by the test_browser*.py modules, so that only
# they load Playwright. Named with `name=`: the imported names cannot clash with a test's
# `page` argument.
# Module scope: a running sync Playwright holds an event loop that breaks later asyncio tests.
@pytest.fixture(scope="module", name="playwright")
def playwright_fixture() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module", name="browser")
def browser_fixture(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
    yield browser
    browser.close()


@pytest.fixture(name="page")
def page_fixture(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


# ---- helpers ---------------------------------------------------------------------------------


def wait_until(page: Page, predicate: str, arg: Any = None, timeout_ms: int = TIMEOUT_MS) -> Any:
    """page.wait_for_function without eval in the page, which Parley's CSP forbids.

    `predicate` is a JavaScript function of `arg`, run once per animation frame through
    Playwright's evaluate (CDP, not page script) until it returns something truthy, which is
    returned.
    """
    check = (
        "async (arg) => { await new Promise(r => requestAnimationFrame(r)); "
        f"return await ({predicate})(arg); }}"
    )
    deadline = time.monotonic() + timeout_ms / 1000
    while not (value := page.evaluate(check, arg)):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_ms} ms: {predicate}")
    return value


def open_app(page: Page, app: RunningApp, note: str = "models from") -> None:
    """Load the page and wait until its load events have run (the model list is filled)."""
    page.goto(app.url)
    expect(page.locator("#models-note")).to_contain_text(note)


def message_box(page: Page) -> Locator:
    return page.locator("#message textarea")


def send(page: Page, text: str) -> None:
    box = message_box(page)
    box.fill(text)
    box.press("Enter")


def bot(page: Page, text: str) -> Locator:
    """The bot message item whose source text starts with `text`."""
    return page.locator(f'#chatbot [data-testid="bot"][aria-label^="bot\'s message: {text}"]')


def live(page: Page) -> Locator:
    """The answer while it streams: the live view the page fills from /parley/live/…."""
    return page.locator("#chatbot .parley-live")


def answer(page: Page, text: str) -> Locator:
    """The answer starting with `text`, streaming (the live view) or final (the bot message)."""
    return live(page).filter(has_text=text).or_(bot(page, text))


def thinking(page: Page) -> Locator:
    return page.locator("#chatbot .thought-group").filter(
        has=page.locator(".title", has_text="Thinking")
    )


def expand(page: Page, block: Locator) -> None:
    """Open a collapsed Thinking block and wait for its slide-open animation to end."""
    block.locator(".title").click()
    expect(block.locator(".title")).to_have_class(re.compile(r"\bexpanded\b"))
    wait_until(page, "el => el.getAnimations({subtree: true}).length === 0", block.element_handle())


def chat_requests(app: RunningApp) -> list[dict]:
    return [r for r in app.fake.requests if r["path"].endswith("/chat/completions")]


def choose_model(page: Page, model: str) -> None:
    """Pick a model listed in the Chat tab's model dropdown."""
    page.locator("#model input").click()
    page.get_by_role("option", name=model, exact=True).click()
    expect(page.locator("#model input")).to_have_value(model)


def pick_compare_model(page: Page, column: int, model: str) -> None:
    """Type a model id into a Compare column's model box."""
    box = page.locator(f"#compare-model-{column} input")
    box.click()
    box.fill(model)
    box.press("Enter")
    box.blur()
    expect(box).to_have_value(model)
