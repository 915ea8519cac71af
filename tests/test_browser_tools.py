"""Browser tests for tools: the Tools panel, tool-call blocks, approval, and Stop during a call.

A real headless Chromium drives Parley against the fake upstream (fixtures and helpers from
tests/browser.py and tests/conftest.py). Extra tools come from tests/tools_for_browser.py,
loaded through TOOLS_MODULES; its module-level records show what really ran.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests import tools_for_browser
from tests.browser import (  # noqa: F401
    bot,
    browser_fixture,
    chat_requests,
    expand,
    open_app,
    page_fixture,
    playwright_fixture,
    send,
)
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply
from webapp.core.engine import DENIED

TOOLS_MODULE = "tests.tools_for_browser"


# ---- helpers ---------------------------------------------------------------------------------


def call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, str]:
    return {"id": call_id, "name": name, "arguments": json.dumps(arguments)}


def tool_block(page: Page, name: str) -> Locator:
    """The collapsible block of a call to `name` (its title is "🛠 <name> · <status>"): in the
    live view while the answer streams, in the chat once it is done."""
    final = page.locator("#chatbot .thought-group").filter(
        has=page.locator(".title", has_text=f"{name} ·")
    )
    streaming = page.locator("#chatbot .parley-live-tool").filter(
        has=page.locator("summary", has_text=f"{name} ·")
    )
    return final.or_(streaming)


def expect_status(page: Page, name: str, status: str) -> Locator:
    """Wait until the one block for `name` shows `status`; return the block."""
    block = tool_block(page, name)
    expect(block).to_have_count(1)
    expect(block.locator(".title .md, summary")).to_have_text(f"🛠 {name} · {status}")
    return block


def code_blocks(block: Locator) -> Locator:
    return block.locator("pre code")


def approval_panel(page: Page) -> Locator:
    # Gradio nests two elements with the group's id; the outer one is the panel. Hidden, the
    # group is not rendered at all.
    return page.locator("#approval").first


def tool_checkbox(page: Page, name: str) -> Locator:
    return page.locator("#tools").get_by_label(name, exact=True)


def open_tools_panel(page: Page) -> None:
    """Open the Tools accordion (its checkboxes are only rendered while it is open)."""
    panel = page.locator("#tools-panel")
    if not page.locator("#tools").is_visible():
        panel.get_by_role("button", name="Tools").click()
    expect(page.locator("#tools")).to_be_visible()


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["json"]["messages"] if m.get("role") == "tool"]


def offered(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request["json"].get("tools", [])]


def wait_event(event: threading.Event, what: str, timeout: float = 10.0) -> None:
    assert event.wait(timeout), f"timed out after {timeout} s waiting until {what}"


def wait_requests(app: RunningApp, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Bounded poll for the fake server to have received `count` chat requests."""
    deadline = time.monotonic() + timeout
    while len(chat_requests(app)) < count:
        if time.monotonic() >= deadline:
            raise AssertionError(f"expected {count} chat requests, got {len(chat_requests(app))}")
        time.sleep(0.05)
    return chat_requests(app)


@pytest.fixture
def records() -> Iterator[None]:
    tools_for_browser.reset()
    yield
    tools_for_browser.reset()


@pytest.fixture
def tools_app(fake_openai: FakeOpenAI, tmp_path: Path, records: None) -> Iterator[RunningApp]:
    """Parley with tests/tools_for_browser.py loaded and every tool ticked by default."""
    running = start_app(
        fake_openai, tmp_path / "parley.db", TOOLS_MODULES=TOOLS_MODULE, DEFAULT_TOOLS="all"
    )
    try:
        yield running
    finally:
        running.close()


# ---- tests -----------------------------------------------------------------------------------

QUESTION = "What is six times seven?"
PRETTY_ARGS = '{\n  "expression": "6*7"\n}'


def test_calculator_call_shows_a_block_and_is_kept_in_history(app: RunningApp, page: Page) -> None:
    app.fake.enqueue(
        Reply(content="", tool_calls=[call("call_1", "calculator", {"expression": "6*7"})]),
        Reply(content="The answer is 42."),
    )
    open_app(page, app)
    open_tools_panel(page)
    expect(tool_checkbox(page, "calculator")).not_to_be_checked()  # DEFAULT_TOOLS is none
    tool_checkbox(page, "calculator").check()
    send(page, QUESTION)

    expect(bot(page, "The answer is 42.")).to_be_visible()
    expect(page.locator("#chatbot")).to_contain_text("completion")  # the final stats line
    block = expect_status(page, "calculator", "done")
    expand(page, block)
    expect(code_blocks(block)).to_have_text([PRETTY_ARGS, "42"])
    expect(block.get_by_text("Arguments", exact=True)).to_be_visible()
    expect(block.get_by_text("Result", exact=True)).to_be_visible()

    first, second = wait_requests(app, 2)
    assert offered(first) == ["calculator"]
    assert tool_messages(first) == []
    assert second["json"]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "42",
    }
    assert second["json"]["messages"][-2]["tool_calls"][0]["function"] == {
        "name": "calculator",
        "arguments": '{"expression": "6*7"}',
    }

    page.goto(app.url)  # a fresh page: no conversation in the address (?c=), none open
    expect(page.locator("#models-note")).to_contain_text("models from")
    expect(tool_block(page, "calculator")).to_have_count(0)
    open_tools_panel(page)
    expect(tool_checkbox(page, "calculator")).not_to_be_checked()  # a fresh page: defaults
    entry = page.locator("#conversations label", has_text=QUESTION)
    expect(entry).to_have_count(1)
    entry.click()

    expect(page.locator('#chatbot [data-testid="user"]')).to_have_text(QUESTION)
    expect(bot(page, "The answer is 42.")).to_be_visible()
    block = expect_status(page, "calculator", "done")
    expand(page, block)
    expect(code_blocks(block)).to_have_text([PRETTY_ARGS, "42"])
    expect(tool_checkbox(page, "calculator")).to_be_checked()  # the conversation's tools
    expect(tool_checkbox(page, "current_time")).not_to_be_checked()
    assert len(chat_requests(app)) == 2  # reopening did not call the provider


def ask_to_delete(page: Page, app: RunningApp) -> Locator:
    """Send a message whose answer calls delete_file; wait for the approval request."""
    app.fake.enqueue(
        Reply(content="", tool_calls=[call("call_d", "delete_file", {"path": "/tmp/notes.txt"})]),
        Reply(content="All tidy now."),
    )
    open_app(page, app)
    expect(page.locator("#tools")).to_be_visible()  # DEFAULT_TOOLS=all opens the panel
    expect(tool_checkbox(page, "delete_file ✋")).to_be_checked()
    expect(approval_panel(page)).to_be_hidden()
    send(page, "Please clean up my notes")

    panel = approval_panel(page)
    expect(panel).to_be_visible()
    text = page.locator("#approval-text")
    expect(text).to_contain_text("delete_file")
    expect(text.locator("pre code")).to_have_text('{\n  "path": "/tmp/notes.txt"\n}')
    block = expect_status(page, "delete_file", "awaiting your approval")
    expect(block).to_contain_text("Approve or deny this call")
    assert tools_for_browser.DELETED == []  # nothing ran before the decision
    assert len(chat_requests(app)) == 1
    return panel


def test_approve_runs_the_call_and_the_turn_goes_on(tools_app: RunningApp, page: Page) -> None:
    panel = ask_to_delete(page, tools_app)
    page.locator("#approve-tool").click()

    expect(bot(page, "All tidy now.")).to_be_visible()
    expect(panel).to_be_hidden()
    block = expect_status(page, "delete_file", "done")
    expand(page, block)
    expect(code_blocks(block)).to_have_text(
        ['{\n  "path": "/tmp/notes.txt"\n}', "deleted /tmp/notes.txt"]
    )
    assert tools_for_browser.DELETED == ["/tmp/notes.txt"]
    _, second = wait_requests(tools_app, 2)
    assert tool_messages(second) == [
        {"role": "tool", "tool_call_id": "call_d", "content": "deleted /tmp/notes.txt"}
    ]


def test_deny_sends_the_refusal_and_marks_the_call_denied(
    tools_app: RunningApp, page: Page
) -> None:
    panel = ask_to_delete(page, tools_app)
    page.locator("#deny-tool").click()

    expect(bot(page, "All tidy now.")).to_be_visible()
    expect(panel).to_be_hidden()
    block = expect_status(page, "delete_file", "denied")
    expand(page, block)
    expect(code_blocks(block).nth(1)).to_have_text(DENIED)
    assert tools_for_browser.DELETED == []
    _, second = wait_requests(tools_app, 2)
    assert tool_messages(second) == [{"role": "tool", "tool_call_id": "call_d", "content": DENIED}]


def test_stop_during_a_running_tool_cancels_it(tools_app: RunningApp, page: Page) -> None:
    tools_app.fake.enqueue(
        Reply(
            content="Let me wait.",
            tool_calls=[call("call_w", "wait_forever", {"reason": "the oven"})],
        ),
        Reply(content="This answer must never be requested."),
    )
    open_app(page, tools_app)
    send(page, "Tell me when the cake is done")

    expect_status(page, "wait_forever", "running…")
    wait_event(tools_for_browser.WAIT_STARTED, "wait_forever runs")
    stop = page.locator("#message button.stop-button")
    stop.click()

    expect_status(page, "wait_forever", "cancelled")  # only the stored re-render says this
    wait_event(tools_for_browser.WAIT_CANCELLED, "wait_forever is cancelled")
    chat = page.locator("#chatbot")
    expect(chat).to_contain_text("Stopped by you")
    expect(bot(page, "Let me wait.")).to_be_visible()
    expect(stop).to_be_hidden()
    expect(approval_panel(page)).to_be_hidden()
    assert len(chat_requests(tools_app)) == 1  # the loop did not ask the model again
    expect(chat).not_to_contain_text("must never be requested")
