"""Browser: the context gauge under the box, what a send that would not fit offers, and a long
conversation that shows its last messages with "Show earlier"."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from storage import message_rows
from storage import repository as repo
from storage.db import session_factory, unit_of_work
from tests.browser import (  # noqa: F401
    bot,
    browser_fixture,
    chat_requests,
    message_box,
    open_app,
    page_fixture,
    playwright_fixture,
    send,
)
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply

WINDOW = 400  # every model's context window in these tests (CAPABILITIES_FILE)


@pytest.fixture
def small_window_app(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[RunningApp]:
    rules = tmp_path / "capabilities.json"
    rules.write_text(json.dumps([{"match": ".", "context_tokens": WINDOW}]))
    running = start_app(fake_openai, tmp_path / "parley.db", CAPABILITIES_FILE=str(rules))
    try:
        yield running
    finally:
        running.close()


def gauge(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("#context-gauge")


def fill_most_of_the_window(page: Page, app: RunningApp) -> None:
    """One turn the provider counts at 330 of 400 tokens: amber; the next long one won't fit."""
    app.fake.enqueue(Reply(content="First answer.", prompt_tokens=320))
    open_app(page, app)
    send(page, "x" * 800)
    expect(bot(page, "First answer.")).to_be_visible()
    expect(gauge(page)).to_contain_text("of 400 tokens")
    expect(gauge(page)).to_contain_text("nearly full")
    expect(gauge(page)).to_have_class(re.compile(r"\bcontext-amber\b"))


def refused_for_the_context(page: Page, app: RunningApp) -> None:
    sent = len(chat_requests(app))
    send(page, "y" * 800)
    expect(page.locator(".toast-body").filter(has_text="would not fit")).to_be_visible()
    expect(page.locator("#context-full")).to_be_visible()
    expect(message_box(page)).to_have_value("y" * 800)  # the message is kept
    assert len(chat_requests(app)) == sent  # nothing went upstream


def test_the_gauge_warns_and_dropping_the_oldest_turns_sends_what_fits(
    small_window_app: RunningApp, page: Page
) -> None:
    app = small_window_app
    fill_most_of_the_window(page, app)
    refused_for_the_context(page, app)
    app.fake.enqueue(Reply(content="Second answer.", prompt_tokens=215))
    page.locator("#drop-oldest").click()
    expect(bot(page, "Second answer.")).to_be_visible()
    expect(page.locator("#context-full")).to_be_hidden()
    expect(message_box(page)).to_have_value("")
    sent = chat_requests(app)[-1]["json"]["messages"]
    assert [m["role"] for m in sent] == ["user"] and sent[0]["content"] == "y" * 800
    # Both turns stay in the conversation; the gauge counts what the provider last saw.
    expect(bot(page, "First answer.")).to_be_visible()
    expect(gauge(page)).to_contain_text("Context: 219 of 400 tokens")


def test_a_new_chat_with_a_summary_continues_with_the_message_still_in_the_box(
    small_window_app: RunningApp, page: Page
) -> None:
    app = small_window_app
    fill_most_of_the_window(page, app)
    refused_for_the_context(page, app)
    app.fake.enqueue(Reply(content="SUMMARY: the user sent a line of x.", prompt_tokens=120))
    page.locator("#summary-chat").click()
    # The new chat opens empty, its system prompt carrying the summary; the box kept the text.
    expect(page.locator("#system-prompt textarea")).to_have_value(
        re.compile(
            r"Summary of an earlier conversation .*\nSUMMARY: the user sent a line of x\.", re.S
        ),
        timeout=20_000,
    )
    expect(page.locator("#chatbot [data-testid='bot']")).to_have_count(0)
    expect(message_box(page)).to_have_value("y" * 800)
    expect(page.locator("#conversations")).to_contain_text("(continued)")
    asked = chat_requests(app)[-1]["json"]["messages"]
    assert asked[-1]["content"].startswith("Summarize our conversation so far")
    assert "tools" not in chat_requests(app)[-1]["json"]
    # Sending there carries the summary, not the old turns.
    app.fake.enqueue(Reply(content="Fresh answer."))
    message_box(page).press("Enter")
    expect(bot(page, "Fresh answer.")).to_be_visible()
    first = chat_requests(app)[-1]["json"]["messages"]
    assert first[0]["role"] == "system" and "SUMMARY: the user sent" in first[0]["content"]
    assert [m["content"] for m in first[1:]] == ["y" * 800]


def test_a_long_conversation_shows_its_last_messages_and_earlier_ones_on_request(
    sqlite_app: RunningApp, page: Page
) -> None:
    app = sqlite_app
    with unit_of_work(session_factory(app.parley.engine)) as session:
        user_id = repo.ensure_user(session=session, username="local").id
        assert user_id is not None
        conversation = repo.create_conversation(session=session, user_id=user_id, title="Long one")
        parent = None
        for n in range(150):
            for role, text in (("user", f"question {n}"), ("assistant", f"answer {n}")):
                parent = message_rows.add_message(
                    session=session,
                    user_id=user_id,
                    conversation_id=conversation.id,
                    parent_id=parent,
                    role=role,
                    content=text,
                ).id
        session.commit()
    open_app(page, app)
    page.goto(f"{app.url}?c={conversation.id}")
    expect(bot(page, "answer 149")).to_be_visible()
    earlier = page.locator("#show-earlier")
    expect(earlier).to_have_text("Show 180 earlier messages")
    expect(bot(page, "answer 90")).to_have_count(1)
    expect(bot(page, "answer 89")).to_have_count(0)
    earlier.click()
    expect(earlier).to_have_text("Show 60 earlier messages")
    expect(bot(page, "answer 30")).to_have_count(1)
    earlier.click()
    expect(earlier).to_be_hidden()
    expect(bot(page, "answer 0")).to_have_count(1)
    # Opening another chat starts from the last messages again.
    page.locator("#new-chat").click()
    expect(earlier).to_be_hidden()
