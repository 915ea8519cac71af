"""What a new user tripped on in the first hour, each shown fixed in a real Chromium.

Dollar amounts stay text while formulas render; nothing flashes after an answer or while a
conversation opens; the model note follows the provider of the conversation opened; the sidebar
lists one entry per row. Fixtures and helpers come from tests/conftest.py and tests/browser.py;
the app runs on SQLite only (storage is covered elsewhere).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from storage import repository as repo
from storage.db import session_factory, unit_of_work
from tests.browser import (  # noqa: F401
    CHROMIUM,
    LAUNCH_ARGS,
    bot,
    browser_fixture,
    choose_model,
    open_app,
    page_fixture,
    playwright_fixture,
    send,
    wait_until,
)
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply
from webapp.app.auth import LOCAL_USER


@pytest.fixture
def app(sqlite_app: RunningApp) -> RunningApp:
    """Parley on SQLite only (overrides conftest's app, which also runs PostgreSQL)."""
    return sqlite_app


# ---- 1. dollar amounts are not math ------------------------------------------------------------


def test_dollar_amounts_stay_text_and_formulas_still_render(app: RunningApp, page: Page) -> None:
    app.fake.enqueue(
        Reply(
            content="It costs $5 and $10 today.\n\nArea $x^2$, angle $\\alpha$.\n\n$$\\frac{1}{2}$$"
        )
    )
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
QUIET = (
    "() => document.querySelectorAll('[data-testid=\"status-tracker\"]:not(.hide)').length === 0"
)


def flashes(page: Page) -> list[str]:
    return list(page.evaluate("() => window.__parleyFlashes"))


def test_nothing_flashes_after_an_answer_or_while_a_conversation_opens(
    app: RunningApp, page: Page
) -> None:
    app.fake.models = ["Qwen/Qwen3-32B", "deepseek-ai/DeepSeek-V3"]
    app.fake.enqueue(
        Reply(content="Thinking models answer here.", delay=0.02),
        Reply(content="Plain models answer here.", delay=0.02),
    )
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


def test_the_refresh_button_is_level_with_the_model_field(app: RunningApp, page: Page) -> None:
    """Seen in the walk-through's screenshots: ⟳ beside the model list was as tall as the
    whole block (label included); it is the field's height, level with it."""
    open_app(page, app)
    field = page.locator("#model .wrap:has(input)").bounding_box()
    button = page.locator("#refresh-models").bounding_box()
    assert field is not None and button is not None
    assert abs(button["y"] - field["y"]) <= 1 and abs(button["height"] - field["height"]) <= 1
    assert button["x"] > field["x"] + field["width"]


# ---- 6. readable without CJK fonts -------------------------------------------------------------

# The characters of an element's text that render as the empty box of a missing glyph: drawn in
# the element's font they look exactly like U+10FFFD, which no font has.
TOFU = """(root) => {
  const canvas = document.createElement('canvas');
  canvas.width = 48; canvas.height = 48;
  const context = canvas.getContext('2d', {willReadFrequently: true});
  const found = new Set();
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, element = node.parentElement;
    if (element === null || element.getClientRects().length === 0) continue;
    const style = getComputedStyle(element);
    context.font = `${style.fontStyle} ${style.fontWeight} 32px ${style.fontFamily}`;
    const draw = (char) => {
      context.clearRect(0, 0, 48, 48);
      context.fillText(char, 4, 38);
      return context.getImageData(0, 0, 48, 48).data.join();
    };
    const box = draw('\\u{10FFFD}');
    for (const char of node.textContent) {
      if (char.trim() && !found.has(char) && draw(char) === box) found.add(char);
    }
  }
  return [...found].join('');
}"""


@pytest.fixture(scope="module")
def browser_without_cjk_fonts(
    playwright: Playwright, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browser]:
    """Chromium on this machine's fonts minus every CJK one (as on many Western desktops)."""
    folder = tmp_path_factory.mktemp("fonts")
    config = folder / "fonts.conf"
    config.write_text(
        f"""<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <cachedir>{folder / "cache"}</cachedir>
  <selectfont><rejectfont>
    <pattern><patelt name="lang"><string>zh</string></patelt></pattern>
    <pattern><patelt name="lang"><string>ja</string></patelt></pattern>
    <glob>*CJK*</glob><glob>*wqy*</glob><glob>*droid*</glob>
  </rejectfont></selectfont>
</fontconfig>
""",
        encoding="utf-8",
    )
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=LAUNCH_ARGS,
        env={**os.environ, "FONTCONFIG_FILE": str(config)},
    )
    yield browser
    browser.close()


def test_the_sidebar_is_readable_without_cjk_fonts(
    app: RunningApp, browser_without_cjk_fonts: Browser
) -> None:
    context = browser_without_cjk_fonts.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        open_app(page, app)
        # The check itself: on this machine the Chinese name is boxes.
        assert set("中文") <= set(page.locator("#sidebar").evaluate(TOFU))
        new_chat = page.locator("#new-chat")
        assert new_chat.evaluate(TOFU) == ""
        expect(new_chat).to_have_text("+ New chat")
        chinese = page.locator("#language label", has=page.locator("input[value='zh']"))
        shown = set(chinese.inner_text()) - set(chinese.evaluate(TOFU))
        assert {"Z", "H"} <= shown, f"the language switch shows only {sorted(shown)}"
    finally:
        context.close()


# ---- 7. the sidebar: one entry per row ---------------------------------------------------------

LONG_TITLE = "How do I migrate a PostgreSQL database between two cloud providers without downtime"
LONG_WORD = "Why does parse_configuration_file_with_overrides() fail?"  # no break to wrap at
TITLES = ["Hi", "Dark mode on phones", LONG_TITLE, LONG_WORD, "Why is the sky blue?"]


@pytest.mark.parametrize(
    "viewport",
    [{"width": 1400, "height": 900}, {"width": 390, "height": 844}],
    ids=["desktop", "phone"],
)
def test_sidebar_lists_one_full_width_entry_per_row(
    app: RunningApp, browser: Browser, viewport: dict[str, int]
) -> None:
    with unit_of_work(session_factory(app.parley.engine)) as session:
        user = repo.ensure_user(session=session, username=LOCAL_USER)
        assert user.id is not None
        for title in TITLES:
            repo.create_conversation(session=session, user_id=user.id, title=title)
    context = browser.new_context(
        viewport=viewport, is_mobile=viewport["width"] < 700, has_touch=viewport["width"] < 700
    )
    try:
        page = context.new_page()
        open_app(page, app)
        entries = page.locator("#conversations label")
        expect(entries).to_have_text(TITLES[::-1])  # newest first
        side = page.locator("#sidebar")
        if viewport["width"] < 700:  # phones start with the sidebar closed
            expect(side).not_to_have_class(re.compile(r"\bopen\b"))
            side.locator(".toggle-button").click()
        expect(side).to_have_class(re.compile(r"\bopen\b"))
        wait_until(
            page, "el => el.getAnimations({subtree: true}).length === 0", side.element_handle()
        )
        expect(entries.first).to_be_in_viewport(ratio=1)
        boxes = [entries.nth(i).bounding_box() for i in range(len(TITLES))]
        list_box = page.locator("#conversations .wrap:has(label)").bounding_box()
        assert list_box is not None and all(boxes)
        for box in boxes:
            assert box is not None
            assert abs(box["x"] - list_box["x"]) < 1 and abs(box["width"] - list_box["width"]) < 1
        tops = [box["y"] for box in boxes if box is not None]
        assert tops == sorted(tops) and len(set(tops)) == len(tops)  # one entry per row
        sidebar = page.locator("#sidebar").bounding_box()
        assert sidebar is not None and list_box["x"] + list_box["width"] <= (
            sidebar["x"] + sidebar["width"]
        )

        for title in (LONG_TITLE, LONG_WORD):
            long_entry = entries.filter(has_text=title)
            expect(long_entry).to_have_attribute("title", title)  # the whole title on hover
            # Cut with "…" inside the entry: the text is longer than the part shown, and the
            # part shown ends within the entry.
            cut = long_entry.locator("span").evaluate("""el => {
              const style = getComputedStyle(el);
              const inside = el.getBoundingClientRect().right
                <= el.parentElement.getBoundingClientRect().right + 0.5;
              return [style.textOverflow, style.overflowX, el.scrollWidth > el.clientWidth,
                      inside];
            }""")
            assert cut == ["ellipsis", "hidden", True, True], title
    finally:
        context.close()
