"""Two real `python -m webapp` processes on one database and one redis-server (REDIS_URL), as
a deployment behind a load balancer runs them: one user's run limit holds over both, Stop
through one stops the answer streaming on the other, and when one is killed mid-answer the
other marks that answer interrupted, with its text, within the lease. On SQLite and on
PostgreSQL."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from sqlalchemy import create_engine
from sqlmodel import Session, select

from storage import accounts
from storage.models import Message, User, utc_now
from tests.fake_openai import FakeOpenAI, Reply
from tests.processes import parley_process, started
from tests.redis_server import RedisServer

WORDS = " ".join(f"w{n}" for n in range(80))  # 80 words at 20 a second: a 4 s answer
LEASE_S = 2.0


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def answer(database_url: str, conversation_id: str) -> Message:
    """The conversation's latest answer row, read straight from the database."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            rows = session.exec(
                select(Message)
                .where(Message.conversation_id == conversation_id, Message.role == "assistant")
                .order_by(Message.created_at)  # type: ignore[arg-type]
            ).all()
            return rows[-1]
    finally:
        engine.dispose()


def wait_for_state(database_url: str, conversation_id: str, state: str, within_s: float) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        row = answer(database_url, conversation_id)
        if row.state == state:
            return row
        if time.monotonic() > deadline:
            pytest.fail(f"the answer stayed {row.state!r}, not {state!r}, for {within_s} s")
        time.sleep(0.1)  # polling the database for a state change, bounded by the deadline


def allow_one_more_request_per_minute(database_url: str) -> None:
    """Set the (only) user's requests-per-minute limit to what it used, plus one."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            user = session.exec(select(User)).one()
            assert user.id is not None
            since = utc_now() - timedelta(minutes=1)
            used = accounts.requests_since(session=session, user_id=user.id, since=since)
            user.rpm_limit = used + 1
            session.add(user)
            session.commit()
    finally:
        engine.dispose()


def lift_the_request_limit(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            user = session.exec(select(User)).one()
            user.rpm_limit = None
            session.add(user)
            session.commit()
    finally:
        engine.dispose()


def test_two_processes_share_the_run_limit_stop_and_a_dead_one_s_answers(
    database_url: str, fake_openai: FakeOpenAI, redis_server: RedisServer, tmp_path: Path
) -> None:
    fake_openai.default = Reply(content=WORDS, chunk_words=1, delay=0.05)
    shared = {
        "REDIS_URL": redis_server.url,
        "RUN_LEASE": str(LEASE_S),
        "MAX_RUNS_PER_USER": "1",
    }
    with (
        parley_process(database_url, fake_openai, tmp_path, tmp_path / "a.log", **shared) as (
            a,
            base_a,
        ),
        parley_process(database_url, fake_openai, tmp_path, tmp_path / "b.log", **shared) as (
            _,
            base_b,
        ),
    ):
        assert httpx.get(f"{base_b}/healthz").json()["redis"] == "ok"
        on_a, on_b = Client(f"{base_a}/", verbose=False), Client(f"{base_b}/", verbose=False)

        # One answer streaming on A uses the user's only slot: B refuses a second, by name.
        job, conversation, _ = started(on_a, "first question")
        with pytest.raises(AppError, match=r"at most 1 can run at once .*every Parley process"):
            on_b.predict("second question", "", "", "{}", api_name="/chat")

        # Attached through B, the answer streaming on A is followed live to its end.
        seen = [text for text, _ in on_b.submit(conversation, api_name="/attach")]
        assert seen[-1] == WORDS == job.result(timeout=20)[0]
        assert len(seen) > 3 and all(WORDS.startswith(text) for text in seen)  # live, growing
        assert wait_for_state(database_url, conversation, "complete", 10).content == WORDS
        job, conversation, _ = started(on_a, "second question")

        # Stop through B ends the answer on A, which saves it as stopped.
        assert on_b.predict(conversation, api_name="/stop") == "stopped 1 answer"
        stopped = wait_for_state(database_url, conversation, "stopped", 10)
        assert stopped.content and WORDS.startswith(stopped.content)
        job.result(timeout=20)

        # Requests per minute are counted in the shared database: the limit holds over both.
        fake_openai.default = Reply(content="short")
        allow_one_more_request_per_minute(database_url)
        assert on_a.predict("one more", "", "", "{}", api_name="/chat")[0] == "short"
        with pytest.raises(AppError, match="limit of .* requests per minute"):
            on_b.predict("one too many", "", "", "{}", api_name="/chat")
        lift_the_request_limit(database_url)
        fake_openai.default = Reply(content=WORDS, chunk_words=1, delay=0.05)

        # A killed mid-answer: B marks its answer interrupted, text kept, within the lease.
        job, conversation, early = started(on_a, "third question", words=10)
        last = early
        for last, _ in job:  # on to 40 words: PartialSaver has saved the first 10 by then
            if len(last.split()) >= 40:
                break
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        killed_at = time.monotonic()
        row = wait_for_state(database_url, conversation, "interrupted", LEASE_S * 4)
        assert time.monotonic() - killed_at >= LEASE_S * 0.9  # a lease of silence first
        # At least what the client saw 1.5 s before the kill, nothing it was not shown.
        assert row.content.startswith(early) and last.startswith(row.content)
        assert row.error and "stopped while this answer was streaming" in row.error

        # A's slot expired with it: the user may ask again, on B.
        fake_openai.default = Reply(echo=True)
        text, _ = on_b.predict("after the crash", "", "", "{}", api_name="/chat")
        assert text == "Echo: after the crash"


def test_an_answer_outlives_a_redis_restart_and_healthz_tells_meanwhile(
    fake_openai: FakeOpenAI, redis_server: RedisServer, tmp_path: Path
) -> None:
    fake_openai.default = Reply(content=WORDS, chunk_words=1, delay=0.05)
    database_url = f"sqlite:///{tmp_path / 'parley.db'}"
    shared = {"REDIS_URL": redis_server.url, "RUN_LEASE": str(LEASE_S)}
    with parley_process(database_url, fake_openai, tmp_path, tmp_path / "a.log", **shared) as (
        _,
        base,
    ):
        client = Client(f"{base}/", verbose=False)
        job, conversation, _ = started(client, "a question", words=5)
        redis_server.stop()
        down = httpx.get(f"{base}/healthz", timeout=10)
        assert down.status_code == 503 and down.json()["redis"].startswith("unreachable")
        with pytest.raises(AppError, match="cannot reach Redis \\(REDIS_URL\\)"):
            client.predict("meanwhile", "", "", "{}", api_name="/chat")  # refused, by cause
        redis_server.start()  # empty: the heartbeat writes this process's keys again
        assert job.result(timeout=30)[0] == WORDS  # the answer streamed on through it
        assert wait_for_state(database_url, conversation, "complete", 10).content == WORDS
        deadline = time.monotonic() + 10
        while httpx.get(f"{base}/healthz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "healthz did not recover"
            time.sleep(0.1)  # polling for recovery, bounded by the deadline
        fake_openai.default = Reply(echo=True)
        assert client.predict("after", "", "", "{}", api_name="/chat")[0] == "Echo: after"
