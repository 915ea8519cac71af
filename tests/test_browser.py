"""Browser tests: a real headless Chromium drives Parley's page against the fake upstream.

Fixtures (`page`, `browser`) and helpers live in tests/browser.py, registered as a plugin by
tests/conftest.py.
"""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser import (  # noqa: F401
    ARTIFACTS,
    bot,
    browser_fixture,
    chat_requests,
    expand,
    live,
    message_box,
    open_app,
    page_fixture,
    playwright_fixture,
    send,
    thinking,
    wait_until,
)
from tests.conftest import RunningApp
from tests.fake_openai import Reply

# ---- tests -----------------------------------------------------------------------------------

QUESTION = "What do you make of streaming?"
REASONING = "Weighing the options carefully before I answer."
ANSWER = "Streaming answers arrive piece by piece so you can read along. Final word: **done**."
ANSWER_TEXT = "Streaming answers arrive piece by piece so you can read along. Final word: done."

# Reads the answer's text while it streams (the live view that the page fills from the live
# feed, webapp/live_view.py); resolves with a proper, non-empty prefix.
PREFIX_JS = """([start, final]) => {
    for (const el of document.querySelectorAll('#chatbot .parley-live .parley-live-content')) {
        const text = el.innerText.replace(/\\s+/g, ' ').trim();
        if (text.startsWith(start) && text.length < final.length && final.startsWith(text)) {
            return text;
        }
    }
    return false;
}"""


def test_journey_streams_thinking_and_answer_then_reopens_from_sidebar(
    app: RunningApp, page: Page
) -> None:
    app.fake.enqueue(Reply(reasoning=REASONING, content=ANSWER, chunk_chars=3, delay=0.03))
    open_app(page, app)
    send(page, QUESTION)

    partial = wait_until(page, PREFIX_JS, ["Streaming", ANSWER_TEXT])
    assert partial and partial != ANSWER_TEXT and ANSWER_TEXT.startswith(partial)

    answer = bot(page, "Streaming")
    expect(answer.locator("strong")).to_have_text("done")
    expect(answer).to_have_text(ANSWER_TEXT)
    block = thinking(page)
    expect(block).to_have_count(1)
    expect(page.locator("#chatbot")).to_contain_text("completion")  # the stats line: final
    expand(page, block)
    expect(block.get_by_text(REASONING)).to_be_visible()

    page.goto(app.url)  # a fresh page: no conversation in the address (?c=), none open
    expect(page.locator("#models-note")).to_contain_text("models from")
    expect(page.locator("#chatbot [data-testid='bot']")).to_have_count(0)
    entry = page.locator("#conversations label", has_text=QUESTION)
    expect(entry).to_have_count(1)
    entry.click()

    expect(page.locator('#chatbot [data-testid="user"]')).to_have_text(QUESTION)
    expect(bot(page, "Streaming").locator("strong")).to_have_text("done")
    block = thinking(page)
    expect(block).to_have_count(1)
    expand(page, block)
    expect(block.get_by_text(REASONING)).to_be_visible()
    assert len(chat_requests(app)) == 1  # reopening did not call the provider

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "journey.png"), full_page=True)


def test_stop_button_cancels_upstream_and_marks_partial_answer(app: RunningApp, page: Page) -> None:
    # Role chunk + 3 content chunks of 5 characters, then silence until the client leaves.
    app.fake.enqueue(
        Reply(content="Partial answer that never finishes.", chunk_chars=5, stall_after=4)
    )
    open_app(page, app)
    send(page, "Tell me a long story")
    expect(live(page)).to_contain_text("Partial answer")

    page.locator("#message button.stop-button").click()
    assert app.fake.wait_for_disconnect(timeout=5), "the upstream stream was not closed"

    chat = page.locator("#chatbot")
    expect(chat).to_contain_text("Stopped by you")
    expect(bot(page, "Partial answer")).to_contain_text("Partial answer")
    expect(chat).not_to_contain_text("never finishes")


def test_out_of_range_parameter_is_refused_before_any_request(app: RunningApp, page: Page) -> None:
    open_app(page, app)
    page.locator("#advanced").get_by_text("Advanced parameters").click()
    expect(page.locator("#param-top_k")).to_be_visible()  # the accordion opened
    page.locator("#param-temperature textarea, #param-temperature input").first.fill("5")
    send(page, "Be creative")

    toast = page.locator(".toast-body", has_text="Temperature")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("between 0 and 2")
    expect(message_box(page)).to_have_value("Be creative")
    expect(page.locator("#chatbot [data-testid='bot']")).to_have_count(0)
    assert chat_requests(app) == []


def test_html_in_model_output_is_sanitized(app: RunningApp, page: Page) -> None:
    app.fake.enqueue(
        Reply(
            content='Look: <img src=x onerror="window.__pwned=1"> and '
            "<script>window.__pwned=2</script> end of answer."
        )
    )
    open_app(page, app)
    send(page, "Show me some HTML")
    expect(bot(page, "Look:")).to_contain_text("end of answer")
    expect(page.locator("#chatbot")).to_contain_text("completion")  # final render
    # Every image in the chat has finished loading or failing, so onerror had its chance.
    wait_until(
        page, "() => Array.from(document.querySelectorAll('#chatbot img')).every(i => i.complete)"
    )
    assert page.evaluate("typeof window.__pwned") == "undefined"


def test_regenerate_keeps_both_versions(app: RunningApp, page: Page) -> None:
    app.fake.enqueue(
        Reply(content="First answer."),
        Reply(content="Second answer, regenerated.", chunk_chars=3, delay=0.02),
    )
    open_app(page, app)
    send(page, "Give me an answer")
    expect(bot(page, "First answer.")).to_be_visible()
    retry = page.locator('#chatbot button[aria-label="Retry"]')
    expect(retry).to_be_visible()
    retry.click()

    expect(bot(page, "Second answer")).to_have_text("Second answer, regenerated.")
    label = page.locator("#version-label")
    expect(label).to_contain_text("Answer version 2 of 2")
    expect(bot(page, "First answer.")).to_have_count(0)
    assert len(chat_requests(app)) == 2

    page.locator("#prev-version").click()
    expect(bot(page, "First answer.")).to_be_visible()
    expect(bot(page, "Second answer")).to_have_count(0)
    expect(label).to_contain_text("Answer version 1 of 2")
    expect(page.locator("#next-version")).to_be_visible()
