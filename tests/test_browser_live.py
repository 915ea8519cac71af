"""Browser: a 100,000-token answer streams without freezing the page (the live answer view)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser import (  # noqa: F401
    bot,
    browser_fixture,
    open_app,
    page_fixture,
    playwright_fixture,
    send,
    wait_until,
)
from tests.conftest import RunningApp
from tests.fake_openai import Reply

PARAGRAPH = " ".join(f"word{n}" for n in range(100))
# 90,000 words in 900 paragraphs, then a 10,000-line code block (no blank line to settle it).
LONG = (
    "\n\n".join([PARAGRAPH] * 900)
    + "\n\n```text\n"
    + "\n".join(f"line {n}" for n in range(10_000))
    + "\n```\n\nThe very end."
)

WATCH = """() => {
    window.parleyLongTasks = [];
    new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) {
            window.parleyLongTasks.push([entry.startTime, entry.duration]);
        }
    }).observe({type: "longtask", buffered: false});
    window.parleyLiveEnded = null;
    window.parleyLiveSeen = false;
    new MutationObserver(() => {
        const live = document.querySelector("#chatbot .parley-live");
        if (live) window.parleyLiveSeen = true;
        else if (window.parleyLiveSeen && window.parleyLiveEnded === null) {
            window.parleyLiveEnded = performance.now();
        }
    }).observe(document.body, {childList: true, subtree: true});
}"""


def test_a_100k_token_answer_streams_without_a_long_main_thread_block(
    sqlite_app: RunningApp, page: Page
) -> None:
    app = sqlite_app
    app.fake.enqueue(Reply(content=LONG, chunk_words=25, delay=0.002))
    open_app(page, app)
    page.evaluate(WATCH)
    send(page, "Write me something very long")
    # It streams: the live view shows text long before the end.
    wait_until(
        page,
        "() => (document.querySelector('#chatbot .parley-live-content')"
        "?.innerText.length || 0) > 20000",
        timeout_ms=60_000,
    )
    expect(bot(page, "word0")).to_contain_text("The very end.", timeout=180_000)
    ended = page.evaluate("() => window.parleyLiveEnded")
    assert ended is not None, "the live view was never replaced by the final answer"
    tasks = page.evaluate("() => window.parleyLongTasks")
    # Tasks that ended before the final render replaced the live view (that render is
    # Gradio's own, once per answer, after the stream).
    while_streaming = [duration for start, duration in tasks if start + duration < ended]
    assert max(while_streaming, default=0) < 200, sorted(while_streaming)[-5:]
