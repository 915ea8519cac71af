"""Parley keeps working through PostgreSQL going away: restarted under a running app, or down
for a while. Each test has a PostgreSQL server of its own (the session's is never restarted)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from gradio_client.exceptions import AppError
from sqlmodel import select

from storage.db import make_engine, session_factory, unit_of_work
from storage.models import Conversation, Message
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI
from tests.pg import PostgresServer, PostgresUnavailable, create_database, start_postgres_server

CALL_TIMEOUT_S = 30  # a /chat call against a database that is down must end well within this


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    try:
        server = start_postgres_server()
    except PostgresUnavailable as exc:
        pytest.fail(f"cannot run the PostgreSQL cases: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_app(fake_openai: FakeOpenAI, pg: PostgresServer) -> Iterator[RunningApp]:
    running = start_app(fake_openai, create_database(pg.url))
    try:
        yield running
    finally:
        running.close()


def chat(app: RunningApp, message: str, conversation_id: str = "") -> tuple[str, str]:
    """One /chat call on a new client, bounded in time; returns (answer, conversation id)."""
    job = app.client().submit(message, conversation_id, "", "{}", api_name="/chat")
    answer, returned_id = job.result(timeout=CALL_TIMEOUT_S)
    return answer, returned_id


def stored(app: RunningApp) -> dict[str, list[tuple[str, str, str]]]:
    """Every conversation's (role, content, state) rows, read on a connection of our own."""
    engine = make_engine(app.settings.database_url)
    try:
        with unit_of_work(session_factory(engine)) as session:
            ids = session.exec(select(Conversation.id)).all()
            rows = session.exec(select(Message).order_by(Message.created_at)).all()
            return {
                cid: [(m.role, m.content, m.state) for m in rows if m.conversation_id == cid]
                for cid in ids
            }
    finally:
        engine.dispose()


def healthz(app: RunningApp) -> httpx.Response:
    return httpx.get(app.url + "healthz", timeout=CALL_TIMEOUT_S)


def wait_until(check: Callable[[], Any], what: str, timeout_s: float = 20) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} (still not true after {timeout_s:g} s)")
        time.sleep(0.05)


def turn(question: str) -> list[tuple[str, str, str]]:
    return [("user", question, "complete"), ("assistant", f"Echo: {question}", "complete")]


def test_a_restart_under_the_running_app_is_survived(
    pg: PostgresServer, pg_app: RunningApp
) -> None:
    first_answer, first = chat(pg_app, "Before the restart")
    assert first_answer == "Echo: Before the restart"
    assert healthz(pg_app).status_code == 200  # the pool now holds connections to cut

    pg.restart()  # fast: every open connection is terminated

    # The very next requests work: pooled connections are pre-pinged and replaced.
    second_answer, second = chat(pg_app, "After the restart")
    assert second_answer == "Echo: After the restart" and second != first
    follow_up, same = chat(pg_app, "And again", first)
    assert (follow_up, same) == ("Echo: And again", first)
    assert healthz(pg_app).status_code == 200
    assert stored(pg_app) == {
        first: turn("Before the restart") + turn("And again"),
        second: turn("After the restart"),
    }


def test_a_database_outage_fails_clearly_and_loses_nothing(
    pg: PostgresServer, pg_app: RunningApp
) -> None:
    _, first = chat(pg_app, "Before the outage")
    assert healthz(pg_app).status_code == 200

    pg.stop()
    response = healthz(pg_app)
    assert response.status_code == 503, response.text
    assert response.json()["status"] == "unavailable"
    assert response.json()["database"] != "ok"
    started = time.monotonic()
    with pytest.raises(AppError) as failure:
        chat(pg_app, "During the outage")
    assert time.monotonic() - started < CALL_TIMEOUT_S
    message = str(failure.value)
    assert "The database is not answering right now, so nothing was saved" in message, message

    pg.start()
    wait_until(lambda: healthz(pg_app).status_code == 200, "/healthz is 200 again")
    answer, second = chat(pg_app, "After the outage")
    assert answer == "Echo: After the outage"
    follow_up, same = chat(pg_app, "Still there?", first)
    assert (follow_up, same) == ("Echo: Still there?", first)
    assert stored(pg_app) == {
        first: turn("Before the outage") + turn("Still there?"),
        second: turn("After the outage"),
    }
