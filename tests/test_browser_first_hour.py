"""What a new user tripped on in the first hour, each shown fixed in a real Chromium.

Dollar amounts stay text while formulas render; nothing flashes after an answer or while a
conversation opens; the model note follows the provider of the conversation opened; the sidebar
lists one entry per row. Fixtures and helpers come from tests/conftest.py and tests/browser.py;
the app runs on SQLite only (storage is covered elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import bot, choose_model, open_app, send, wait_until
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply


@pytest.fixture
def app(sqlite_app: RunningApp) -> RunningApp:
    """Parley on SQLite only (overrides conftest's app, which also runs PostgreSQL)."""
    return sqlite_app


# ---- 1. dollar amounts are not math ------------------------------------------------------------

def test_dollar_amounts_stay_text_and_formulas_still_render(app: RunningApp, page: Page) -> None:
    app.fake.enqueue(Reply(content="It costs $5 and $10 today.\n\n"
                                   "Area $x^2$, angle $\\alpha$.\n\n$$\\frac{1}{2}$$"))
    open_app(page, app)
    send(page, "Prices and formulas?")
    answer = bot(page, "It costs")
    expect(page.locator("#chatbot")).to_contain_text("completion")  # the final render
    money = answer.locator("p", has_text="It costs")
    expect(money).to_have_text("It costs $5 and $10 today.")
    expect(money.locator(".katex, em")).to_have_count(0)
    formulas = answer.locator("p", has_text="Area").locator(".katex")
    expect(formulas).to_have_count(2)
    expect(formulas.first.locator("annotation")).to_have_text("x^2")
    expect(formulas.last.locator("annotation")).to_have_text("\\alpha")
    expect(answer.locator(".katex-display annotation")).to_have_text("\\frac{1}{2}")


# ---- 2. nothing flashes after an answer or while a conversation opens ----------------------------

# Records each progress overlay (Gradio's status tracker, shown unless it has `hide`) and each
# "•••" typing bubble (`.pending`) as it appears, by the component it covers: any on the sidebar
# or the settings, and on the chat or the message box once `final` (the answer's last render)
# is on the page. (The chat's own tracker, shown while the answer streams, goes with the event.)
WATCH_FLASHES = """(final) => {
  const seen = window.__parleyFlashes = [];
  let shown = new Set();
  const check = () => {
    const done = final === null || document.querySelector('#chatbot').innerText.includes(final);
    const now = new Set(document.querySelectorAll(
      '[data-testid="status-tracker"]:not(.hide), .pending'));
    for (const el of now) {
      const owner = el.closest('#chatbot, #conversations, #settings, #message');
      if (shown.has(el) || owner === null) continue;
      if (owner.id !== 'conversations' && owner.id !== 'settings' && !done) continue;
      const what = `${el.closest('[id]').id}: ${el.getAttribute('class')}`;
      if (!seen.includes(what)) seen.push(what);
    }
    shown = now;
  };
  new MutationObserver(check).observe(document.body, {
    subtree: true, childList: true, attributes: true, attributeFilter: ['class']});
  check();
}"""
QUIET = ("() => document.querySelectorAll('[data-testid=\"status-tracker\"]:not(.hide)')"
         ".length === 0")


def flashes(page: Page) -> list[str]:
    return list(page.evaluate("() => window.__parleyFlashes"))


def test_nothing_flashes_after_an_answer_or_while_a_conversation_opens(
    app: RunningApp, page: Page
) -> None:
    app.fake.models = ["Qwen/Qwen3-32B", "deepseek-ai/DeepSeek-V3"]
    app.fake.enqueue(Reply(content="Thinking models answer here.", delay=0.02),
                     Reply(content="Plain models answer here.", delay=0.02))
    stop = page.locator("#message button.stop-button")
    open_app(page, app)
    page.evaluate(WATCH_FLASHES, "completion")
    send(page, "First question")
    expect(page.locator("#chatbot")).to_contain_text("completion")  # the answer's last render
    expect(stop).to_be_hidden()  # Send is back: the refresh after the turn has run
    wait_until(page, QUIET)
    assert flashes(page) == []

    page.locator("#new-chat").click()
    choose_model(page, "deepseek-ai/DeepSeek-V3")
    expect(page.locator("#param-enable_thinking")).to_be_hidden()  # not a thinking model
    send(page, "Second question")
    expect(bot(page, "Plain models answer")).to_be_visible()
    expect(page.locator("#chatbot")).to_contain_text("completion")
    expect(stop).to_be_hidden()
    wait_until(page, QUIET)

    entry = page.locator("#conversations label", has_text="First question")

    page.evaluate(WATCH_FLASHES, None)
    entry.click()
    expect(bot(page, "Thinking models answer")).to_be_visible()
    expect(page.locator("#model input")).to_have_value("Qwen/Qwen3-32B")
    expect(page.locator("#param-enable_thinking")).to_be_visible()  # the settings followed
    wait_until(page, QUIET)
    assert flashes(page) == []


# ---- 3. the model note follows the provider --------------------------------------------------

@pytest.fixture
def two_providers(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[RunningApp]:
    """SiliconFlow (the default) and jiekou.ai, both with a key."""
    running = start_app(fake_openai, tmp_path / "parley.db", JIEKOU_API_KEY="test-key-jiekou")
    try:
        yield running
    finally:
        running.close()


def test_the_model_note_follows_the_provider_of_the_conversation_opened(
    two_providers: RunningApp, page: Page
) -> None:
    app = two_providers
    note = page.locator("#models-note")
    open_app(page, app, note="models from SiliconFlow.")
    page.locator("#provider input").click()
    page.get_by_role("option", name="jiekou.ai", exact=True).click()
    expect(note).to_contain_text("models from jiekou.ai.")
    send(page, "Asked on jiekou")
    expect(page.locator("#chatbot")).to_contain_text("completion")

    page.goto(app.url)  # a fresh page starts on the default provider
    expect(note).to_contain_text("models from SiliconFlow.")
    page.locator("#conversations label", has_text="Asked on jiekou").click()
    expect(page.locator("#provider input")).to_have_value("jiekou.ai")
    expect(note).to_contain_text("models from jiekou.ai.")
