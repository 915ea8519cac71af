"""More browser journeys: sidebar, feedback, undo, edit/versions, pasted keys, capabilities,
model-list fallback. Each checks what a person sees and, where it matters, what is stored.

Fixtures (`page`, `app`, `fake_openai`) and helpers come from tests/conftest.py and
tests/browser.py. No fixed sleeps: Playwright's auto-waiting, plus a bounded database poll
only where the page gives no signal that a write has landed.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import Locator, Page, expect
from sqlmodel import Session

from storage import repository as repo
from storage.db import session_factory, unit_of_work
from storage.models import Message
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
from tests.fake_openai import ErrorReply, FakeOpenAI, Reply

T = TypeVar("T")


# ---- helpers ---------------------------------------------------------------------------------


@contextmanager
def stored(app: RunningApp) -> Iterator[tuple[Session, int]]:
    """A fresh database session and the id of the single local user."""
    with unit_of_work(session_factory(app.parley.engine)) as session:
        yield session, repo.ensure_user(session=session, username="local").id


def only_conversation_id(app: RunningApp) -> str:
    with stored(app) as (session, user_id):
        (item,) = repo.list_conversations(session=session, user_id=user_id)
        return item.id


def messages_of(app: RunningApp, conversation_id: str) -> list[Message]:
    with stored(app) as (session, user_id):
        return repo.load_messages(session=session, user_id=user_id, conversation_id=conversation_id)


def eventually(check: Callable[[], T], what: str, timeout: float = 5.0) -> T:
    """Bounded poll for a database write the page gives no signal for."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def stats(page: Page) -> Locator:
    """The final stats line of each answer (rendered only once an answer is complete)."""
    return page.locator('#chatbot [data-testid="bot"]').filter(
        has_text=re.compile(r"\d+ prompt · \d+ completion")
    )


# Counts the turns that ended: each time the message box's Stop button gives way to Send again.
# Every turn (send, retry, edit) ends with `after_turn`, which re-renders the chat from the
# database and refreshes the sidebar, and Send comes back only after it; counting lets a test
# wait for the whole event chain to finish, not just for the streamed answer (a click in
# between can be undone by that re-render).
TURNS_JS = """
window.__parleyTurns = 0;
(() => {
    let streaming = false;
    const check = () => {
        const stop = document.querySelector('#message button.stop-button');
        const now = stop !== null && stop.getClientRects().length > 0;
        if (streaming && !now) window.__parleyTurns += 1;
        streaming = now;
    };
    new MutationObserver(check).observe(document, {
        subtree: true, childList: true, attributes: true,
    });
})();
"""


def load(page: Page, app: RunningApp, note: str = "models from") -> None:
    """Open the page (counting turns) and wait for its load events."""
    page.add_init_script(TURNS_JS)
    open_app(page, app, note)


def refreshes(page: Page) -> int:
    return int(page.evaluate("window.__parleyTurns"))


def wait_refreshed(page: Page, before: int) -> None:
    """Wait until a turn's closing re-render (after_turn) has finished."""
    wait_until(page, "n => window.__parleyTurns > n", before)


def ask(page: Page, text: str, answers_before: int = 0) -> None:
    """Send a message and wait until the turn is over: answer complete, chat re-rendered."""
    before = refreshes(page)
    send(page, text)
    expect(stats(page)).to_have_count(answers_before + 1)
    wait_refreshed(page, before)


def user_messages(page: Page) -> Locator:
    return page.locator('#chatbot [data-testid="user"]')


def sidebar(page: Page) -> Locator:
    return page.locator("#conversations label")


def text_input(page: Page, elem_id: str) -> Locator:
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def choose_model(page: Page, model: str) -> None:
    page.locator("#model input").click()
    page.get_by_role("option", name=model, exact=True).click()
    expect(page.locator("#model input")).to_have_value(model)


# ---- tests -----------------------------------------------------------------------------------


def test_sidebar_lists_searches_opens_renames_and_deletes(app: RunningApp, page: Page) -> None:
    first_q, second_q = "Tell me about apples", "Something about stripes"
    app.fake.enqueue(
        Reply(content="Apples are crunchy."), Reply(content="The zebra wears them best.")
    )
    load(page, app)
    ask(page, first_q)
    expect(sidebar(page)).to_have_text([first_q])
    page.locator("#new-chat").click()
    expect(user_messages(page)).to_have_count(0)
    ask(page, second_q)
    expect(sidebar(page)).to_have_text([second_q, first_q])  # newest first

    search = text_input(page, "search")
    search.fill("ZEBRA")  # only in the second conversation's answer, not in any title
    expect(sidebar(page)).to_have_text([second_q])
    search.fill("")
    expect(sidebar(page)).to_have_text([second_q, first_q])

    sidebar(page).filter(has_text=first_q).click()
    expect(user_messages(page)).to_have_text([first_q])
    expect(bot(page, "Apples are crunchy.")).to_be_visible()
    expect(bot(page, "The zebra")).to_have_count(0)

    with stored(app) as (session, user_id):
        first_id, second_id = [
            c.id for c in repo.list_conversations(session=session, user_id=user_id)
        ][::-1]
    page.locator("#manage").get_by_text("Rename or delete").click()
    title = text_input(page, "title")
    expect(title).to_have_value(first_q)
    # Known front-end race (Gradio 6.31): right after a conversation opens, while its
    # follow-up events (model list, capabilities) still land, a rename sent at once can carry
    # the box's previous value. A person takes longer than that; the test types again if the
    # first rename carried the old title, and fails if the second one does too.
    for attempt in range(2):
        title.fill("Fruit notes")
        title.press("Tab")
        page.locator("#rename").click()
        try:
            expect(sidebar(page)).to_have_text([second_q, "Fruit notes"], timeout=4000)
            break
        except AssertionError:
            if attempt:
                raise
    expect(sidebar(page)).to_have_text([second_q, "Fruit notes"])
    with stored(app) as (session, user_id):
        conversation = repo.get_conversation(
            session=session, user_id=user_id, conversation_id=first_id
        )
        assert conversation.title == "Fruit notes"

    page.locator("#delete").click()
    expect(page.locator("#confirm-delete")).to_be_visible()
    expect(page.locator("#cancel-delete")).to_be_visible()
    page.locator("#cancel-delete").click()
    expect(page.locator("#confirm-delete")).to_be_hidden()
    expect(sidebar(page)).to_have_count(2)
    expect(user_messages(page)).to_have_text([first_q])
    with stored(app) as (session, user_id):
        assert repo.count_conversations(session=session, user_id=user_id) == 2

    page.locator("#delete").click()
    page.locator("#confirm-delete").click()
    expect(sidebar(page)).to_have_text([second_q])
    expect(page.locator("#confirm-delete")).to_be_hidden()
    expect(user_messages(page)).to_have_count(0)
    expect(page.locator('#chatbot [data-testid="bot"]')).to_have_count(0)
    with stored(app) as (session, user_id):
        assert repo.count_conversations(session=session, user_id=user_id) == 1
        assert [c.id for c in repo.list_conversations(session=session, user_id=user_id)] == [
            second_id
        ]


def test_thumbs_up_then_down_is_stored_on_the_answer(app: RunningApp, page: Page) -> None:
    # The first answer renders as three Chatbot items (Thinking, text, stats) under one set of
    # buttons; the feedback must land on that answer's row, not on a neighbour.
    app.fake.enqueue(Reply(content="Considered answer.", reasoning="Let me weigh this."))
    load(page, app)
    ask(page, "Rate me")
    ask(page, "And rate this too", answers_before=1)
    conversation_id = only_conversation_id(app)

    def feedback() -> list[int | None]:
        return [m.feedback for m in messages_of(app, conversation_id) if m.role == "assistant"]

    assert feedback() == [None, None]
    first = page.locator("#chatbot .message-buttons-left").first
    first.locator('button[aria-label="Like"]').click()
    expect(first.locator('button[aria-label="Liked"]')).to_be_visible()
    eventually(lambda: feedback() == [1, None], "feedback [1, None] in the database")

    first.locator('button[aria-label="Dislike"]').click()
    expect(first.locator('button[aria-label="Disliked"]')).to_be_visible()
    eventually(lambda: feedback() == [-1, None], "feedback [-1, None] in the database")

    # After a reload the stored vote is shown again on the same answer, and only there.
    page.reload()
    load(page, app)
    page.locator("#conversations label", has_text="Rate me").click()
    expect(bot(page, "Echo: And rate this too")).to_be_visible()
    bubbles = page.locator("#chatbot .message-buttons-left")
    expect(bubbles.first.locator('button[aria-label="Disliked"]')).to_be_visible()
    expect(bubbles.nth(1).locator('button[aria-label="Like"]')).to_be_visible()
    expect(bubbles.nth(1).locator('button[aria-label="Disliked"]')).to_have_count(0)


def test_undo_puts_the_question_back_and_the_next_one_becomes_a_sibling(
    app: RunningApp, page: Page
) -> None:
    load(page, app)
    ask(page, "First question")
    ask(page, "Second question", answers_before=1)
    expect(user_messages(page)).to_have_text(["First question", "Second question"])

    page.locator('#chatbot button[aria-label="Undo"]').click()
    # Undo's own re-render and the one after it show the same: there is nothing to wait for.
    expect(message_box(page)).to_have_value("Second question")
    expect(user_messages(page)).to_have_text(["First question"])
    expect(bot(page, "Echo: Second question")).to_have_count(0)
    expect(bot(page, "Echo: First question")).to_be_visible()

    conversation_id = only_conversation_id(app)
    messages = messages_of(app, conversation_id)
    first_answer = next(m for m in messages if m.content == "Echo: First question")
    with stored(app) as (session, user_id):
        conversation = repo.get_conversation(
            session=session, user_id=user_id, conversation_id=conversation_id
        )
        assert conversation.current_leaf_id == first_answer.id

    ask(page, "Replacement question", answers_before=1)
    expect(user_messages(page)).to_have_text(["First question", "Replacement question"])
    expect(bot(page, "Echo: Replacement question")).to_be_visible()
    users = {m.content: m for m in messages_of(app, conversation_id) if m.role == "user"}
    assert set(users) == {"First question", "Second question", "Replacement question"}
    assert users["Second question"].parent_id == first_answer.id
    assert users["Replacement question"].parent_id == first_answer.id
    assert chat_requests(app)[-1]["json"]["messages"][-1] == {
        "role": "user",
        "content": "Replacement question",
    }


def test_edit_a_question_then_switch_between_its_versions(app: RunningApp, page: Page) -> None:
    load(page, app)
    ask(page, "Original question")

    page.locator('#chatbot button[aria-label="Edit"]').click()
    editor = page.locator("#chatbot textarea.edit-textarea")
    expect(editor).to_be_visible()
    editor.fill("Edited question")
    before = refreshes(page)
    page.locator('#chatbot button[aria-label="Submit"]').click()

    expect(bot(page, "Echo: Edited question")).to_be_visible()
    expect(stats(page)).to_have_count(1)
    wait_refreshed(page, before)
    expect(user_messages(page)).to_have_text(["Edited question"])
    expect(bot(page, "Echo: Original question")).to_have_count(0)
    assert chat_requests(app)[-1]["json"]["messages"] == [
        {"role": "user", "content": "Edited question"}
    ]

    label = page.locator("#version-label")
    user_messages(page).click()  # Chatbot select: show the versions of this message
    expect(label).to_contain_text("Question version 2 of 2")
    expect(page.locator("#next-version")).to_be_hidden()
    page.locator("#prev-version").click()
    expect(user_messages(page)).to_have_text(["Original question"])
    expect(bot(page, "Echo: Original question")).to_be_visible()
    expect(bot(page, "Echo: Edited question")).to_have_count(0)
    expect(label).to_contain_text("Question version 1 of 2")
    expect(page.locator("#next-version")).to_be_visible()

    users = [m for m in messages_of(app, only_conversation_id(app)) if m.role == "user"]
    assert [m.content for m in users] == ["Original question", "Edited question"]
    assert users[0].parent_id is None and users[1].parent_id is None
    assert len(chat_requests(app)) == 2  # switching versions did not call the provider


@pytest.fixture
def keyless_app(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[RunningApp]:
    running = start_app(
        fake_openai, tmp_path / "keyless.db", SILICONFLOW_API_KEY="", DEFAULT_PROVIDER="siliconflow"
    )
    try:
        yield running
    finally:
        running.close()


def test_pasted_key_is_used_for_the_session_and_never_stored(
    keyless_app: RunningApp,
    page: Page,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    app = keyless_app
    caplog.set_level(logging.DEBUG)
    assert not app.settings.provider("siliconflow").api_key
    load(page, app, note="built-in model list")
    banner = page.locator("#banner")
    expect(banner).to_contain_text("SILICONFLOW_API_KEY")

    send(page, "Hello without a key")
    toast = page.locator(".toast-body", has_text="SILICONFLOW_API_KEY")
    expect(toast).to_be_visible()
    expect(page.locator('#chatbot [data-testid="bot"]')).to_have_count(0)
    assert app.fake.requests == []

    key = f"sk-pasted-{uuid.uuid4().hex}"
    key_box = page.locator("#api-key input")
    key_box.fill(key)
    key_box.press("Enter")
    expect(page.locator("#key-status")).to_contain_text("this browser session only")
    expect(banner).not_to_contain_text("SILICONFLOW_API_KEY")
    expect(banner).not_to_contain_text("No API key")
    expect(key_box).to_have_value("")
    expect(page.locator("#models-note")).to_contain_text("models from SiliconFlow")

    ask(page, "Hello with my key")
    expect(bot(page, "Echo: Hello with my key")).to_be_visible()
    (request,) = chat_requests(app)
    assert request["headers"]["authorization"] == f"Bearer {key}"
    listing = [r for r in app.fake.requests if r["path"].endswith("/models")]
    assert listing and all(r["headers"]["authorization"] == f"Bearer {key}" for r in listing)

    files = [p for p in tmp_path.iterdir() if p.name.startswith("keyless.db")]
    assert any(p.name == "keyless.db" for p in files)
    for path in files:
        assert key.encode() not in path.read_bytes(), f"the pasted key is in {path.name}"
    logged = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    captured = capfd.readouterr()
    assert key not in logged + captured.out + captured.err


def test_thinking_and_min_p_follow_the_model_capabilities(app: RunningApp, page: Page) -> None:
    app.fake.models = ["Qwen/Qwen3-8B", "Qwen/Qwen2.5-7B-Instruct"]
    load(page, app, note="2 models from SiliconFlow")
    thinking_control = page.locator("#param-enable_thinking")
    min_p = page.locator("#param-min_p")
    page.locator("#advanced").get_by_text("Advanced parameters").click()
    expect(page.locator("#param-top_k")).to_be_visible()  # the accordion opened

    choose_model(page, "Qwen/Qwen2.5-7B-Instruct")
    expect(thinking_control).to_be_hidden()
    expect(min_p).to_be_hidden()
    choose_model(page, "Qwen/Qwen3-8B")
    expect(thinking_control).to_be_visible()
    expect(min_p).to_be_visible()
    thinking_control.get_by_role("radio", name="on", exact=True).check()

    ask(page, "Think about it")
    body = chat_requests(app)[-1]["json"]
    assert body["model"] == "Qwen/Qwen3-8B" and body["enable_thinking"] is True

    choose_model(page, "Qwen/Qwen2.5-7B-Instruct")
    expect(thinking_control).to_be_hidden()
    expect(min_p).to_be_hidden()
    ask(page, "Now without thinking", answers_before=1)
    body = chat_requests(app)[-1]["json"]
    assert body["model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert "enable_thinking" not in body


def test_model_list_falls_back_to_the_catalog_and_takes_a_typed_id(
    app: RunningApp, page: Page
) -> None:
    app.fake.models_error = ErrorReply(500, '{"message":"boom"}')
    load(page, app, note="showing the built-in list")
    note = page.locator("#models-note")
    expect(note).to_contain_text("Could not list models")
    expect(note).to_contain_text("(500)")
    expect(note).to_contain_text("boom")

    model_box = page.locator("#model input")
    model_box.click()
    expect(page.get_by_role("option", name="Qwen/Qwen3-32B", exact=True)).to_be_visible()
    expect(page.get_by_role("option", name="deepseek-ai/DeepSeek-R1", exact=True)).to_be_visible()
    expect(page.get_by_role("option", name="fake/model-a", exact=True)).to_have_count(0)

    custom = "my-org/custom-model-7b"
    model_box.fill(custom)
    model_box.press("Enter")
    expect(model_box).to_have_value(custom)
    ask(page, "Which model are you?")
    assert chat_requests(app)[-1]["json"]["model"] == custom
    expect(stats(page)).to_contain_text(custom)
    with stored(app) as (session, user_id):
        conversation = repo.get_conversation(
            session=session, user_id=user_id, conversation_id=only_conversation_id(app)
        )
        assert conversation.model == custom
