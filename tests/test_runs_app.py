"""Runs through the running app (fake upstream on loopback, real database, gradio_client):
an answer outlives the client that asked, /attach follows it, /stop ends it, and the limits
hold. Users come from the trusted header, so isolation is checked too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from storage import repository as repo
from storage.db import session_factory, unit_of_work
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply
from tests.processes import started
from webapp.app.error_text import user_message

WORDS = " ".join(f"w{n}" for n in range(60))  # 60 words at 20 a second: a 3 s answer


@pytest.fixture
def app(fake_openai: FakeOpenAI, database_url: str) -> Iterator[RunningApp]:
    running = start_app(
        fake_openai,
        database_url,
        AUTH_MODE="header",
        MAX_RUNS_PER_USER="4",
        RUN_UNWATCHED_TIMEOUT="600",
    )
    try:
        yield running
    finally:
        running.close()


def as_user(app: RunningApp, name: str) -> Client:
    return app.client(headers={"X-Forwarded-User": name})


def answer_row(app: RunningApp, user: str, conversation_id: str) -> Any:
    with unit_of_work(session_factory(app.parley.engine)) as session:
        owner = repo.ensure_user(session=session, username=user)
        assert owner.id is not None
        messages = repo.load_messages(
            session=session, user_id=owner.id, conversation_id=conversation_id
        )
        return [m for m in messages if m.role == "assistant"][-1]


def wait_for_state(app: RunningApp, user: str, conversation_id: str, state: str) -> Any:
    """Poll the database (bounded) until the answer reaches `state`."""
    deadline = time.monotonic() + 20
    while True:
        row = answer_row(app, user, conversation_id)
        if row.state == state or time.monotonic() > deadline:
            assert row.state == state, f"state stayed {row.state!r}"
            return row
        time.sleep(0.05)  # polling the database for a state change, bounded by the deadline


def test_a_client_that_disconnects_does_not_cancel_and_attach_follows_live(
    app: RunningApp,
) -> None:
    app.fake.enqueue(Reply(content=WORDS, chunk_words=1, delay=0.05))
    alice = as_user(app, "alice")
    job, conversation_id, seen = started(alice, "Count for me", words=10)
    job.cancel()  # the laptop lid closes
    follow = as_user(app, "alice").submit(conversation_id, api_name="/attach")
    frames = [answer for answer, _ in follow]
    assert frames[0].startswith(seen) and len(frames) > 2  # from the start, then live
    assert frames[-1] == WORDS
    stored = wait_for_state(app, "alice", conversation_id, "complete")
    assert stored.content == WORDS
    # Attaching once it has ended gives the stored answer at once.
    assert alice.predict(conversation_id, api_name="/attach") == (WORDS, conversation_id)
    assert app.fake.disconnects == 0  # the upstream request was never cut


def test_only_the_owner_may_attach_or_stop(app: RunningApp) -> None:
    app.fake.enqueue(Reply(content=WORDS, chunk_words=1, delay=0.05))
    alice, bob = as_user(app, "alice"), as_user(app, "bob")
    job, conversation_id, _ = started(alice, "Mine", words=3)
    for api_name in ("/attach", "/stop"):
        with pytest.raises(AppError, match="does not exist or is not yours"):
            bob.predict(conversation_id, api_name=api_name)
    with pytest.raises(AppError, match="malformed"):
        bob.predict("not-an-id", api_name="/attach")
    assert alice.predict(conversation_id, api_name="/stop") == "stopped 1 answer"
    stored = wait_for_state(app, "alice", conversation_id, "stopped")
    assert stored.content and WORDS.startswith(stored.content)
    assert job.result(timeout=20)[0].startswith(stored.content)  # the asker saw the end too


def test_the_fifth_live_run_of_a_user_is_refused(app: RunningApp) -> None:
    app.fake.default = Reply(content=WORDS * 5, chunk_words=1, delay=0.05)
    alice = as_user(app, "alice")
    running = [started(alice, f"question {i}") for i in range(4)]
    with pytest.raises(AppError, match=r"at most 4 can run at once \(MAX_RUNS_PER_USER\)"):
        alice.predict("one too many", "", "", "{}", api_name="/chat")
    # Another user is not held back by alice's runs.
    app.fake.enqueue(Reply(content="Hi Bob"))
    assert as_user(app, "bob").predict("hi", "", "", "{}", api_name="/chat")[0] == "Hi Bob"
    for _, conversation_id, _ in running:
        assert alice.predict(conversation_id, api_name="/stop") == "stopped 1 answer"
    app.fake.default = Reply(echo=True)
    assert alice.predict("now it fits", "", "", "{}", api_name="/chat")[0] == ("Echo: now it fits")


def test_a_run_nobody_watches_is_stopped_after_the_timeout(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    app = start_app(fake_openai, tmp_path / "parley.db", RUN_UNWATCHED_TIMEOUT="1")
    try:
        fake_openai.enqueue(Reply(content=WORDS * 10, chunk_words=1, delay=0.05))
        client = app.client()
        job, conversation_id, _ = started(client, "Nobody will watch", words=2)
        job.cancel()
        stored = wait_for_state(app, "local", conversation_id, "stopped")
        shown = user_message(stored.error)
        assert "nobody was watching this answer" in shown and "RUN_UNWATCHED_TIMEOUT" in shown
        assert stored.content and WORDS.startswith(stored.content.split(" w59")[0])
        assert fake_openai.wait_for_disconnect(timeout=10)
    finally:
        app.close()
