"""Browser: an answer belongs to the server. Reload mid-answer and it streams on; a second
browser signed in as the same user follows it; Stop in either ends it; another user cannot
open it."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from storage import repository as repo
from storage.db import session_factory, unit_of_work
from tests.browser import (  # noqa: F401
    TIMEOUT_MS,
    answer,
    bot,
    browser_fixture,
    page_fixture,
    playwright_fixture,
    send,
)
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply
from webapp import cli

PASSWORD = "correct horse battery"
WORDS = " ".join(f"w{n}" for n in range(80))  # 80 words at 10 a second: an 8 s answer
MANY_WORDS = " ".join(f"w{n}" for n in range(600))  # 60 s: an answer that is stopped
LONG_MS = 30_000


@pytest.fixture
def team_app(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningApp]:
    db = tmp_path / "team.db"
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    for name in ("alice", "bob"):
        assert (
            cli.main(["add", name, "--password-stdin"], io.StringIO(), io.StringIO(PASSWORD + "\n"))
            == 0
        )
    running = start_app(fake_openai, db, AUTH_MODE="accounts")
    try:
        yield running
    finally:
        running.close()


def signed_in(browser: Browser, app: RunningApp, name: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    expect(page.locator("#models-note")).to_contain_text("models from")
    return page


def words_shown(page: Page) -> int:
    """How many of the answer's words the page shows now (streaming or final)."""
    shown = answer(page, "w0")
    return len(re.findall(r"\bw\d+\b", shown.inner_text())) if shown.count() else 0


def stored_answer(app: RunningApp, conversation_id: str) -> tuple[str, str]:
    with unit_of_work(session_factory(app.parley.engine)) as session:
        alice = repo.ensure_user(session=session, username="alice")
        assert alice.id is not None
        messages = repo.load_messages(
            session=session, user_id=alice.id, conversation_id=conversation_id
        )
    answer = [m for m in messages if m.role == "assistant"][-1]
    return answer.state, answer.content


def test_reload_and_a_second_browser_follow_the_answer_and_either_can_stop_it(
    team_app: RunningApp, browser: Browser
) -> None:
    fake = team_app.fake
    fake.enqueue(Reply(reasoning="Let me count.", content=WORDS, chunk_words=1, delay=0.1))
    first = signed_in(browser, team_app, "alice")
    send(first, "Count to eighty slowly")
    expect(answer(first, "w0")).to_be_visible()
    # The address names the conversation, and the sidebar marks it live.
    expect(first).to_have_url(re.compile(r"[?&]c=[0-9a-f]{32}"), timeout=TIMEOUT_MS)
    conversation_id = re.search(r"c=([0-9a-f]{32})", first.url).group(1)  # type: ignore[union-attr]
    expect(first.locator("#conversations")).to_contain_text("● Count to eighty slowly")

    first.reload()  # mid-answer: the answer goes on without this page
    expect(first.locator("#chatbot")).to_contain_text("Count to eighty slowly")
    expect(first.locator("#chatbot .thought-group .title")).to_contain_text("Thinking")
    before = words_shown(first)
    assert before < 80, "the answer had already ended: make it slower"
    # A second browser, signed in as alice too, opens it from the sidebar.
    second = signed_in(browser, team_app, "alice")
    second.locator("#conversations").get_by_text("Count to eighty slowly").click()
    expect(answer(second, "w0")).to_be_visible()
    # Both follow it live to its end (more words than when they opened it).
    expect(bot(first, "w0")).to_contain_text("w79", timeout=LONG_MS)
    expect(bot(second, "w0")).to_contain_text("w79", timeout=LONG_MS)
    assert stored_answer(team_app, conversation_id) == ("complete", WORDS)
    assert fake.disconnects == 0  # neither the reload nor the second page cut the request
    expect(first.locator("#conversations")).not_to_contain_text("●", timeout=LONG_MS)

    # The next answer: the second browser stops it, and the first one sees it end.
    # 60 s of answer: it is stopped long before, however slow the reload is on a busy machine.
    fake.enqueue(Reply(content=MANY_WORDS, chunk_words=1, delay=0.1))
    send(first, "Again, please")
    expect(first.locator("#chatbot")).to_contain_text("w3", timeout=LONG_MS)
    second.reload()  # shows the conversation of its address, following the live answer
    expect(second.locator("#chatbot")).to_contain_text("Again, please")
    stop = second.locator("#message button.stop-button")
    expect(stop).to_be_visible()
    stop.click()
    for page in (first, second):
        expect(page.locator("#chatbot")).to_contain_text("Stopped by you", timeout=LONG_MS)
        expect(page.locator("#message button.stop-button")).to_be_hidden()
    assert fake.wait_for_disconnect(timeout=10)
    state, content = stored_answer(team_app, conversation_id)
    assert state == "stopped" and content and MANY_WORDS.startswith(content)

    # Bob cannot open alice's conversation by its address.
    bob = signed_in(browser, team_app, "bob")
    bob.goto(f"{team_app.url}?c={conversation_id}")
    expect(bob.locator("#models-note")).to_contain_text("models from")
    expect(bob.get_by_text("does not exist or is not yours")).to_be_visible()
    expect(bob.locator("#chatbot")).not_to_contain_text("Count to eighty")
