"""The hostile-input corpus in a real browser (headless Chromium; fixtures from tests/browser.py).

Item 7: markup that would run script (or cover the page) in the model's answer, in its
reasoning and in a tool's arguments, name and result: streamed into the chat, reopened from the
sidebar after a reload, and shown on the public share page. Each payload sets `window.__pwned`
or calls `alert`; a dialog handler records every dialog. Nothing may run, no `javascript:` link
may be left to click, and the page must stay usable (nothing laid over it).
Item 1, the page's side: a 1 MB message typed, and pasted, into the message box.
The rest of the corpus runs through the API in tests/test_hostile_inputs.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser import (  # noqa: F401
    bot,
    browser_fixture,
    chat_requests,
    message_box,
    open_app,
    page_fixture,
    playwright_fixture,
    send,
    wait_until,
)
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply
from tests.test_hostile_inputs import MODULE, everything

PAYLOADS = [
    "<script>window.__pwned=1;alert(1)</script>",
    '<img src=x onerror="window.__pwned=2;alert(2)">',
    "[click me](javascript:window.__pwned=3;alert(3))",
    '<a href="javascript:window.__pwned=4;alert(4)">anchor</a>',
    '<a href="JaVaScRiPt:window.__pwned=5">mixed case</a>',
    '<a href="&#106;avascript:window.__pwned=6">entity</a>',
    "[ref link][1]\n\n[1]: javascript:window.__pwned=7",
    "<javascript:window.__pwned=8>",
    "![img](javascript:window.__pwned=9)",
    '<iframe src="javascript:parent.__pwned=10;alert(10)"></iframe>',
    '<iframe srcdoc="<script>parent.__pwned=11</script>"></iframe>',
    '<svg onload="window.__pwned=12;alert(12)"><circle r="5"/></svg>',
    '<svg><a xlink:href="javascript:window.__pwned=13"><text y="20">svg link</text></a></svg>',
    '<details open ontoggle="window.__pwned=14">toggle</details>',
    '<body onload="window.__pwned=15">',
    '<input autofocus onfocus="window.__pwned=16">',
    '<video><source onerror="window.__pwned=17"></video>',
    '<form action="javascript:window.__pwned=19"><button>go</button></form>',
    '<object data="javascript:window.__pwned=20"></object><embed src="javascript:alert(21)">',
    '<meta http-equiv="refresh" content="0;url=javascript:window.__pwned=22">',
    "$$\\href{javascript:window.__pwned=23}{latex link}$$",
    '<div style="position:fixed;inset:0;z-index:99999;background:transparent" '
    'onclick="window.__pwned=24">invisible layer over the page</div>',
]
# mXSS: a <style> inside MathML; it swallows whatever follows it, so it comes last.
SWALLOWING = '<math><mtext><table><mglyph><style><img src=x onerror="window.__pwned=18">'
MARKUP = "PAYLOAD-START\n\n" + "\n\n".join(PAYLOADS) + "\n\nPAYLOAD-END\n\n" + SWALLOWING
QUESTION = "Show me everything"
CONTROLS = ["#new-chat", "#message textarea", "#conversations", "#share-title"]
ACTIVE = (
    "iframe, object, embed, script, meta, form[action], [formaction], [onerror], [onload], "
    "[onclick], [onfocus], [ontoggle], [onmouseover]"
)


@pytest.fixture
def hostile_app(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[RunningApp]:
    """SQLite; echo_markup (tests/test_hostile_inputs.py) offered; share links need no sign-in."""
    running = start_app(
        fake_openai,
        tmp_path / "parley.db",
        TOOLS_MODULES=MODULE,
        DEFAULT_TOOLS="echo_markup",
        SHARE_REQUIRES_LOGIN="false",
    )
    try:
        yield running
    finally:
        running.close()


def record_dialogs(page: Page) -> list[str]:
    """Every alert/confirm/prompt the page opens, dismissed at once. Checked to work."""
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    return dialogs


def expand_all(page: Page, chat: Locator) -> None:
    """Open every collapsed block (Thinking, tool calls) with a real click: a layer laid over
    the page would catch the click and fail it."""
    titles = chat.locator(".thought-group .title:not(.expanded)")
    while titles.count():
        titles.first.click()
    wait_until(page, "el => el.getAnimations({subtree: true}).length === 0", chat.element_handle())


def assert_inert(page: Page, dialogs: list[str], chat: Locator, where: str) -> None:
    # Images have loaded or failed: every onerror had its chance to run.
    wait_until(page, "() => Array.from(document.images).every(i => i.complete)")
    assert dialogs == [], f"{where}: dialogs opened: {dialogs}"
    assert page.evaluate("typeof window.__pwned") == "undefined", f"{where}: a payload ran"
    links = page.evaluate("""() => Array.from(document.querySelectorAll('a[href], [*|href]'))
        .map(a => a.getAttribute('href') || a.getAttribute('xlink:href') || '')
        .filter(h => /^\\s*(javascript|vbscript):/i.test(h))""")
    assert links == [], f"{where}: clickable script links: {links}"
    assert page.locator('a[href^="javascript:" i]').count() == 0
    assert chat.locator(ACTIVE).count() == 0, f"{where}: " + json.dumps(
        chat.locator(ACTIVE).evaluate_all("els => els.map(e => e.outerHTML.slice(0, 120))")
    )
    # Nothing laid over the page: the middle of each control is the control itself.
    covered = page.evaluate(
        """(selectors) => selectors.filter(selector => {
        const target = document.querySelector(selector);
        if (!target) return false;
        const box = target.getBoundingClientRect();
        const x = box.left + box.width / 2, y = box.top + box.height / 2;
        if (box.width === 0 || x < 0 || y < 0 || x > innerWidth || y > innerHeight) return false;
        const hit = document.elementFromPoint(x, y);
        return !(hit && (target.contains(hit) || hit.contains(target)));
    })""",
        CONTROLS,
    )
    assert covered == [], f"{where}: model output lies over {covered}"


def test_hostile_markup_never_runs_in_the_chat_the_reopened_chat_or_the_share_page(
    hostile_app: RunningApp, page: Page
) -> None:
    dialogs = record_dialogs(page)
    open_app(page, hostile_app)
    page.evaluate("() => alert('self-test')")  # the recorder works
    assert dialogs == ["self-test"]
    dialogs.clear()

    calls = [
        {"id": "c1", "name": "echo_markup", "arguments": json.dumps({"text": MARKUP})},
        {"id": "c2", "name": '<img src=x onerror="window.__pwned=30">', "arguments": "{}"},
    ]
    hostile_app.fake.enqueue(
        Reply(content=MARKUP, reasoning=MARKUP, tool_calls=calls),
        Reply(content="FINAL " + MARKUP, reasoning=MARKUP),
    )
    send(page, QUESTION)
    chat = page.locator("#chatbot")
    expect(bot(page, "FINAL PAYLOAD-START")).to_contain_text("PAYLOAD-END")
    expect(chat).to_contain_text("completion")  # the final render, stats line included
    expand_all(page, chat)
    # Content ×2, reasoning ×2, the tool's arguments and result: all rendered, all inert.
    expect(chat.get_by_text("PAYLOAD-END")).to_have_count(6)
    expect(chat).to_contain_text("invisible layer over the page")
    assert_inert(page, dialogs, chat, "streamed chat")
    stored = [m["content"] for m in everything(hostile_app)["Message"]]
    assert sum(MARKUP in text for text in stored) == 3, "answers and tool result, as text"

    page.reload()
    expect(page.locator("#models-note")).to_contain_text("models from")
    entry = page.locator("#conversations label", has_text=QUESTION)
    entry.click()  # a real click: nothing covers the sidebar
    expect(bot(page, "FINAL PAYLOAD-START")).to_contain_text("PAYLOAD-END")
    expand_all(page, chat)
    expect(chat.get_by_text("PAYLOAD-END")).to_have_count(6)
    assert_inert(page, dialogs, chat, "conversation reopened from the sidebar")

    page.locator("#share-export").get_by_text("Share and export").click()
    page.locator("#share").click()
    note = page.locator("#share-note")
    expect(note).to_contain_text("/share/?token=")
    found = re.search(r"(http\S+/share/\?token=[\w-]+)", note.inner_text())
    assert found, note.inner_text()
    page.goto(found.group(1))
    shared = page.locator("#share-chat")
    expect(shared).to_contain_text("FINAL PAYLOAD-START")
    expand_all(page, shared)
    expect(shared.get_by_text("PAYLOAD-END")).to_have_count(6)
    assert_inert(page, dialogs, shared, "share page")
    assert len(chat_requests(hostile_app)) == 2


PASTE_JS = """([el, text]) => {
    const data = new DataTransfer();
    data.setData('text/plain', text);
    el.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true,
                                                  cancelable: true}));
}"""


def test_a_one_megabyte_message_is_refused_and_kept_in_the_box(
    sqlite_app: RunningApp, page: Page
) -> None:
    open_app(page, sqlite_app)
    before = everything(sqlite_app)
    big = "0123456789" * 100_000
    box = message_box(page)
    box.fill(big)
    box.press("Enter")
    toast = page.locator(".toast-body", has_text="MAX_MESSAGE_CHARS")
    expect(toast).to_contain_text(
        "The message is 1,000,000 characters; the limit is 100,000 (MAX_MESSAGE_CHARS)"
    )
    assert box.input_value() == big, "the refused message must stay in the box"
    toast.locator("xpath=..").locator(".toast-close").click()

    # Pasted, Gradio turns text this long into a file; the box takes images only.
    box.fill("")
    page.evaluate(PASTE_JS, [box.element_handle(), big])
    expect(page.locator("#message .thumbnail-item")).to_have_count(1)
    box.press("Enter")
    expect(page.locator(".toast-body", has_text="Invalid file type")).to_contain_text(
        "Please upload a file that is one of these formats: ['image']"
    )
    assert everything(sqlite_app) == before and chat_requests(sqlite_app) == []

    open_app(page, sqlite_app)  # the server still answers the next normal message
    send(page, "A short one")
    expect(bot(page, "Echo: A short one")).to_be_visible()
