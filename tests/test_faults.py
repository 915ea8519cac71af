"""Upstream faults through the running app: the /chat API (Gradio's queue), a real fake upstream
on loopback, real databases. Rate limits, overloads, gateway timeouts, dropped and stalled
streams, slow first tokens, a mix of all of them at once, and a SIGKILL mid-stream.

After every run the database is read back: each question is stored exactly once, each answer
ends in a final state ("complete", or "error" with a message naming the cause and the fix; a
crash leaves "interrupted"), and nothing is left "streaming".
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import gradio_queue as gq
from storage import message_rows
from storage import repository as repo
from storage.db import make_engine, session_factory, unit_of_work
from storage.models import Message
from tests.conftest import RunningApp, start_app
from tests.fake_openai import ErrorReply, FakeOpenAI, Reply
from tests.processes import parley_process
from webapp.app.error_text import user_message

RATE_LIMITED = (
    '{"message":"Request was rejected due to rate limiting. TPM limit reached.","data":null}'
)
OVERLOADED = '{"code":50505,"message":"Model service overloaded, please try again later."}'
GATEWAY = '"Gateway Timeout"'  # a bare JSON string, as the provider sends it
BAD_MODEL = (
    '{"code":20012,"message":"Model does not exist. Please check it carefully.","data":null}'
)
FINAL_STATES = {"complete", "error", "stopped", "interrupted"}
RESULT_TIMEOUT_S = 120  # generous: the machine has two cores and other work running


# -- helpers -----------------------------------------------------------------------------------


def all_messages(engine: Any) -> list[Message]:
    """Every message of the local user, in every conversation."""
    with unit_of_work(session_factory(engine)) as session:
        user_id = repo.ensure_user(session=session, username="local").id
        assert user_id is not None
        messages: list[Message] = []
        for chat in repo.list_conversations(session=session, user_id=user_id, limit=100_000):
            messages += repo.load_messages(
                session=session, user_id=user_id, conversation_id=chat.id
            )
        return messages


@dataclass
class Turn:
    question: Message
    answers: list[Message] = field(default_factory=list)

    @property
    def answer(self) -> Message:
        assert len(self.answers) == 1, f"{self.question.content!r} has {len(self.answers)} answers"
        return self.answers[0]


def stored_turns(engine: Any, questions: list[str]) -> dict[str, Turn]:
    """The stored turn of each question; fails unless each is stored exactly once and no row
    anywhere is left "streaming"."""
    messages = all_messages(engine)
    assert not [m for m in messages if m.state == "streaming"], "rows left streaming"
    users = [m for m in messages if m.role == "user"]
    counts = Counter(m.content for m in users)
    assert {q: counts[q] for q in questions} == dict.fromkeys(questions, 1), "lost or doubled"
    assert len(users) == len(questions), "unexpected extra user messages"
    turns = {m.content: Turn(m) for m in users}
    by_id = {t.question.id: t for t in turns.values()}
    for message in messages:
        if message.role == "assistant" and message.parent_id in by_id:
            by_id[message.parent_id].answers.append(message)
    return turns


def ask_all(app: RunningApp, requests: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Send (question, model) pairs to /chat all at once; return each (answer, conversation_id)."""
    client = app.client()
    jobs = [
        client.submit(question, "", model, "{}", api_name="/chat") for question, model in requests
    ]
    return [tuple(job.result(timeout=RESULT_TIMEOUT_S)) for job in jobs]


def requests_for(fake: FakeOpenAI, model: str) -> list[dict[str, Any]]:
    return [
        r
        for r in fake.requests
        if r["path"].endswith("/chat/completions") and (r["json"] or {}).get("model") == model
    ]


def error_part(answer: str) -> str:
    """The error the API appended to the answer ("... [error] text")."""
    assert "[error] " in answer, f"no error shown in {answer!r}"
    return answer.split("[error] ", 1)[1]


@pytest.fixture
def timeout_app(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[RunningApp]:
    """Parley on SQLite with READ_TIMEOUT=1: the upstream's silences are made longer than it."""
    running = start_app(fake_openai, tmp_path / "parley.db", READ_TIMEOUT="1")
    try:
        yield running
    finally:
        running.close()


# -- retried statuses ----------------------------------------------------------------------------


def test_a_burst_of_429s_is_retried_and_every_message_answered_once(
    fake_openai: FakeOpenAI, database_url: str
) -> None:
    app = start_app(fake_openai, database_url, MAX_RETRIES="3")
    try:
        requests = []
        for i in range(10):
            model = f"fake/burst-{i}"
            first = ErrorReply(429, RATE_LIMITED, {"Retry-After": "1"} if i % 2 == 0 else {})
            fake_openai.enqueue(
                first,
                ErrorReply(429, RATE_LIMITED),
                Reply(content=f"Answer {i} got through."),
                model=model,
            )
            requests.append((f"burst question {i}", model))
        results = ask_all(app, requests)
        assert [r[0] for r in results] == [f"Answer {i} got through." for i in range(10)]
        for i in range(10):
            sent = requests_for(fake_openai, f"fake/burst-{i}")
            assert len(sent) == 3, f"request {i}: {len(sent)} upstream requests, expected 3"
            if i % 2 == 0:  # Retry-After: 1 is honoured (the jittered backoff alone is < 0.5 s)
                assert sent[1]["received_at"] - sent[0]["received_at"] >= 0.9
        turns = stored_turns(app.parley.engine, [q for q, _ in requests])
        for i, (question, _) in enumerate(requests):
            answer = turns[question].answer
            assert (answer.state, answer.content) == ("complete", f"Answer {i} got through.")
            assert answer.error is None
    finally:
        app.close()


def test_503s_and_a_bare_string_504_are_retried_until_they_get_through(
    sqlite_app: RunningApp,
) -> None:
    fake = sqlite_app.fake
    fake.enqueue(
        ErrorReply(503, OVERLOADED),
        ErrorReply(503, OVERLOADED),
        Reply(content="The overload passed."),
        model="fake/overloaded",
    )
    fake.enqueue(
        ErrorReply(504, GATEWAY), Reply(content="The gateway recovered."), model="fake/gateway"
    )
    requests = [("while overloaded", "fake/overloaded"), ("through the gateway", "fake/gateway")]
    results = ask_all(sqlite_app, requests)
    assert [r[0] for r in results] == ["The overload passed.", "The gateway recovered."]
    assert len(requests_for(fake, "fake/overloaded")) == 3
    assert len(requests_for(fake, "fake/gateway")) == 2
    turns = stored_turns(sqlite_app.parley.engine, [q for q, _ in requests])
    assert [turns[q].answer.state for q, _ in requests] == ["complete", "complete"]


def test_when_retries_run_out_the_error_names_the_cause_and_the_message_is_kept(
    sqlite_app: RunningApp,
) -> None:
    fake = sqlite_app.fake  # MAX_RETRIES=2: three requests, then give up
    cases = {
        "fake/always-503": (
            ErrorReply(503, OVERLOADED),
            [
                "SiliconFlow's model service is overloaded (503) and retries did not get through",
                "try again shortly or pick another model",
                "Model service overloaded",
            ],
        ),
        "fake/always-504": (
            ErrorReply(504, GATEWAY),
            [
                "SiliconFlow's gateway timed out (504) and retries did not get through",
                "try again, or pick a faster model",
            ],
        ),
        "fake/always-429": (
            ErrorReply(429, RATE_LIMITED),
            [
                "SiliconFlow is rate-limiting this key (429) and retries did not get through",
                "wait a minute and try again",
                "TPM limit reached",
            ],
        ),
    }
    for model, (error, _) in cases.items():
        fake.enqueue(error, error, error, Reply(content="never requested"), model=model)
    requests = [(f"question for {model}", model) for model in cases]
    results = ask_all(sqlite_app, requests)
    turns = stored_turns(sqlite_app.parley.engine, [q for q, _ in requests])
    for (question, model), (answer, _) in zip(requests, results, strict=True):
        shown = error_part(answer)
        for phrase in cases[model][1]:
            assert phrase in shown
        assert len(requests_for(fake, model)) == 3
        stored = turns[question].answer
        assert turns[question].question.content == question
        assert (stored.state, stored.content, user_message(stored.error)) == ("error", "", shown)


# -- broken, stalled and slow streams --------------------------------------------------------------


def test_a_500_is_a_server_error_in_the_providers_words_and_retried_once_at_most(
    sqlite_app: RunningApp,
) -> None:
    """A 500 that blames the request is not retried at all; another 500 is retried once."""
    fake = sqlite_app.fake  # MAX_RETRIES=2
    schema = ErrorReply(
        500, '{"code":50000,"message":"Invalid response_format: json_schema must have a name"}'
    )
    opaque = ErrorReply(500, '{"message":"internal error"}')
    fake.enqueue(schema, schema, Reply(content="never requested"), model="fake/schema-500")
    fake.enqueue(opaque, opaque, opaque, Reply(content="never requested"), model="fake/500")
    requests = [("with a schema", "fake/schema-500"), ("plain", "fake/500")]
    (schema_answer, _), (opaque_answer, _) = ask_all(sqlite_app, requests)
    assert error_part(schema_answer).startswith(
        "SiliconFlow answered with a server error (500): “Invalid response_format: json_schema "
        "must have a name”. If the request uses unusual parameters"
    )
    assert error_part(opaque_answer).startswith(
        "SiliconFlow answered with a server error (500): “internal error”. A retry got the "
        "same answer."
    )
    assert "overload" not in schema_answer + opaque_answer
    assert len(requests_for(fake, "fake/schema-500")) == 1
    assert len(requests_for(fake, "fake/500")) == 2
    turns = stored_turns(sqlite_app.parley.engine, [q for q, _ in requests])
    assert [turns[q].answer.state for q, _ in requests] == ["error", "error"]


def test_a_connection_dropped_mid_stream_keeps_the_partial_answer_and_is_not_retried(
    sqlite_app: RunningApp,
) -> None:
    fake = sqlite_app.fake
    words = "one two three four five six seven eight"
    fake.enqueue(
        Reply(content=words, chunk_words=1, delay=0.05, drop_after=4),
        Reply(content="a retry must not happen"),
        model="fake/drop",
    )
    [(answer, _)] = ask_all(sqlite_app, [("tell me a story", "fake/drop")])
    assert error_part(answer) == (
        "The connection to SiliconFlow broke while the answer was "
        "streaming. The partial answer above is kept; use Retry to try "
        "again."
    )
    assert len(requests_for(fake, "fake/drop")) == 1  # the answer had started: no retry
    stored = stored_turns(sqlite_app.parley.engine, ["tell me a story"])["tell me a story"].answer
    assert stored.state == "error" and user_message(stored.error) == error_part(answer)
    # The role chunk, then "one ", "two ", "three ": the connection is cut after four chunks.
    assert stored.content and "one two three ".startswith(stored.content)
    assert answer.startswith(stored.content)


def test_a_first_token_slower_than_read_timeout_is_retried_once_then_reported(
    timeout_app: RunningApp,
) -> None:
    """The status line came but no data: nothing was shown, so the request is sent once more."""
    fake = timeout_app.fake
    slow = Reply(content="far too late", first_delay=3)
    fake.enqueue(slow, slow, Reply(content="never requested"), model="fake/slow-start")
    fake.enqueue(slow, Reply(content="Second time lucky."), model="fake/slow-once")
    requests = [("are you there?", "fake/slow-start"), ("hello?", "fake/slow-once")]
    (answer, _), (recovered, _) = ask_all(timeout_app, requests)
    assert recovered == "Second time lucky."
    shown = error_part(answer)
    assert answer.startswith("[error] ")  # nothing of the answer had arrived
    assert "SiliconFlow accepted the request but sent no answer for 1 s" in shown
    assert "on a second try too" in shown
    assert "READ_TIMEOUT" in shown and "raise READ_TIMEOUT in .env" in shown
    assert fake.wait_for_disconnect(timeout=10, count=3), "Parley kept waiting past READ_TIMEOUT"
    assert len(requests_for(fake, "fake/slow-start")) == 2
    assert len(requests_for(fake, "fake/slow-once")) == 2
    turns = stored_turns(timeout_app.parley.engine, [q for q, _ in requests])
    turn = turns["are you there?"]
    assert turn.question.content == "are you there?"
    assert (turn.answer.state, turn.answer.content, user_message(turn.answer.error)) == (
        "error",
        "",
        shown,
    )
    assert turns["hello?"].answer.state == "complete"


def test_no_response_within_read_timeout_is_retried_then_reported(
    timeout_app: RunningApp,
) -> None:
    """Some gateways hold the status line until the first token: nothing has arrived, so the
    request is retried, and reported with READ_TIMEOUT named once retries run out."""
    fake = timeout_app.fake  # MAX_RETRIES=2
    late = ErrorReply(503, OVERLOADED, delay=3)  # headers only after 3 s: too late each time
    fake.enqueue(late, Reply(content="Made it on the second try."), model="fake/late-once")
    fake.enqueue(late, late, late, Reply(content="never requested"), model="fake/late-always")
    requests = [("late once", "fake/late-once"), ("late always", "fake/late-always")]
    (recovered, _), (failed, _) = ask_all(timeout_app, requests)
    assert recovered == "Made it on the second try."
    shown = error_part(failed)
    assert shown == (
        "SiliconFlow did not answer within 1 s (READ_TIMEOUT) and retries did not "
        "get through; check the network and try again, or raise READ_TIMEOUT in "
        ".env if this model is slow to start."
    )
    assert len(requests_for(fake, "fake/late-once")) == 2
    assert len(requests_for(fake, "fake/late-always")) == 3
    turns = stored_turns(timeout_app.parley.engine, [q for q, _ in requests])
    assert turns["late once"].answer.state == "complete"
    assert (turns["late always"].answer.state, user_message(turns["late always"].answer.error)) == (
        "error",
        shown,
    )


def test_a_slow_first_token_within_read_timeout_is_not_an_error(sqlite_app: RunningApp) -> None:
    app = sqlite_app
    assert app.settings.read_timeout_s == 120  # the default: a 30 s first token is fine
    app.fake.enqueue(Reply(content="Worth the wait.", first_delay=2), model="fake/thinker")
    [(answer, _)] = ask_all(app, [("think hard", "fake/thinker")])
    assert answer == "Worth the wait."
    stored = stored_turns(app.parley.engine, ["think hard"])["think hard"].answer
    assert (stored.state, stored.content, stored.error) == ("complete", "Worth the wait.", None)
    assert stored.timings and stored.timings["ttft_ms"] >= 1900


def test_a_stalled_stream_times_out_and_keeps_the_partial_answer(
    timeout_app: RunningApp,
) -> None:
    fake = timeout_app.fake
    fake.enqueue(
        Reply(content="alpha beta gamma delta epsilon", chunk_words=1, stall_after=3),
        Reply(content="a retry must not happen"),
        model="fake/stall",
    )
    [(answer, _)] = ask_all(timeout_app, [("go on", "fake/stall")])
    shown = error_part(answer)
    assert shown.startswith(
        "SiliconFlow went silent for 1 s in the middle of the answer "
        "(the READ_TIMEOUT limit), so Parley stopped waiting."
    )
    assert "raise READ_TIMEOUT in .env" in shown and "partial answer above is kept" in shown
    assert answer.startswith("alpha beta ")
    assert fake.wait_for_disconnect(timeout=10), "the stalled upstream was never closed"
    assert len(requests_for(fake, "fake/stall")) == 1
    stored = stored_turns(timeout_app.parley.engine, ["go on"])["go on"].answer
    assert (stored.state, stored.content, user_message(stored.error)) == (
        "error",
        "alpha beta ",
        shown,
    )


# -- everything at once ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """What the fake upstream does for one request, and what Parley must end up with."""

    replies: tuple[Reply | ErrorReply, ...]
    state: str
    upstream_requests: int
    error: str = ""  # a phrase the shown and stored error must contain
    partial: bool = False  # some of the answer arrived and is kept


def _long(i: int) -> str:
    return " ".join(f"w{i}-{n}" for n in range(12))


FAULTS: dict[str, Any] = {
    "ok": lambda i: Fault((Reply(content=_long(i), chunk_words=1, delay=0.01),), "complete", 1),
    "429-then-ok": lambda i: Fault(
        (
            ErrorReply(429, RATE_LIMITED, {"Retry-After": "0.5"}),
            ErrorReply(429, RATE_LIMITED),
            Reply(content=_long(i)),
        ),
        "complete",
        3,
    ),
    "503-then-ok": lambda i: Fault(
        (ErrorReply(503, OVERLOADED), Reply(content=_long(i))), "complete", 2
    ),
    "504-exhausted": lambda i: Fault(
        (ErrorReply(504, GATEWAY),) * 3 + (Reply(),),
        "error",
        3,
        "gateway timed out (504) and retries did not get through",
    ),
    "429-exhausted": lambda i: Fault(
        (ErrorReply(429, RATE_LIMITED),) * 3 + (Reply(),),
        "error",
        3,
        "rate-limiting this key (429) and retries did not",
    ),
    "dropped": lambda i: Fault(
        (Reply(content=_long(i), chunk_words=1, delay=0.02, drop_after=3), Reply()),
        "error",
        1,
        "broke while the answer was streaming",
        True,
    ),
    "stalled": lambda i: Fault(
        (Reply(content=_long(i), chunk_words=1, stall_after=3), Reply()),
        "error",
        1,
        "went silent for 3 s in the middle of the answer",
        True,
    ),
    "slow-first-token": lambda i: Fault(
        (Reply(content=_long(i), first_delay=8),) * 2 + (Reply(),),
        "error",
        2,
        "sent no answer for 3 s (the READ_TIMEOUT limit), on a second try too",
    ),
    "error-mid-stream": lambda i: Fault(
        (
            Reply(
                content=_long(i),
                chunk_words=1,
                error_after=3,
                error_message="Upstream model crashed",
            ),
            Reply(),
        ),
        "error",
        1,
        "reported an error in the middle of the "
        "answer. The provider said: “Upstream model crashed”",
        True,
    ),
    "bad-request": lambda i: Fault(
        (ErrorReply(400, BAD_MODEL), Reply()),
        "error",
        1,
        "refused the request (400). The provider said: “Model does not exist",
    ),
}


def test_a_mixed_run_of_faults_stores_every_message_once_in_a_final_state(
    fake_openai: FakeOpenAI, database_url: str
) -> None:
    app = start_app(fake_openai, database_url, READ_TIMEOUT="3", MAX_RETRIES="2")
    try:
        kinds = list(FAULTS)
        plan: list[tuple[str, str, Fault]] = []
        for i in range(30):
            kind = kinds[i % len(kinds)]
            fault = FAULTS[kind](i)
            model = f"fake/mix-{i}"
            fake_openai.enqueue(*fault.replies, model=model)
            plan.append((f"mixed question {i} ({kind})", model, fault))
        results = ask_all(app, [(question, model) for question, model, _ in plan])
        turns = stored_turns(app.parley.engine, [question for question, _, _ in plan])
        for (question, model, fault), (answer, conversation_id) in zip(plan, results, strict=True):
            turn = turns[question]
            stored = turn.answer
            assert stored.state in FINAL_STATES
            assert stored.state == fault.state, f"{question}: {stored.state} ({stored.error})"
            assert stored.conversation_id == conversation_id
            sent = requests_for(fake_openai, model)
            assert len(sent) == fault.upstream_requests, f"{question}: {len(sent)} requests"
            i = int(question.split()[2])
            if fault.state == "complete":
                assert (answer, stored.content, stored.error) == (_long(i), _long(i), None)
                continue
            shown = error_part(answer)
            assert fault.error in shown and user_message(stored.error) == shown, (
                f"{question}: {shown}"
            )
            if fault.partial:
                assert stored.content and _long(i).startswith(stored.content), question
                assert "partial answer above is kept" in shown
                assert answer.startswith(stored.content)
            else:
                assert stored.content == "", question
    finally:
        app.close()


# -- SIGKILL mid-stream ----------------------------------------------------------------------------


async def chat_endpoint(http: httpx.AsyncClient, base: str) -> gq.Event:
    """The public /chat event of the Parley at `base`, from its /config."""
    return gq.find_event((await http.get(f"{base}/config")).raise_for_status().json(), "chat")


@dataclass
class Watched:
    """What one /chat client had seen, and when (monotonic seconds)."""

    seen: list[tuple[float, str]] = field(default_factory=list)

    def at(self, moment: float) -> str:
        """The text shown at `moment` ("" before the first text)."""
        return next((text for when, text in reversed(self.seen) if when <= moment), "")


async def stream_then_signal(
    base: str,
    child: subprocess.Popen[bytes],
    questions: list[str],
    signal_number: int,
    words_first: int,
) -> tuple[dict[str, Watched], float]:
    """Start one /chat per question; once every answer has shown `words_first` words, send the
    server `signal_number` and wait for it to exit. Returns what each client had seen, and
    when the signal went."""
    watched = {q: Watched() for q in questions}
    ready = {q: asyncio.Event() for q in questions}

    async def one(http: httpx.AsyncClient, chat: gq.Event, question: str) -> None:
        async for outputs in gq.run(
            http, f"{base}/", os.urandom(8).hex(), chat, [question, "", "", "{}"]
        ):
            text = str(outputs[0])
            watched[question].seen.append((time.monotonic(), text))
            if len(text.split()) >= words_first:
                ready[question].set()

    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0)) as http:
        chat = await chat_endpoint(http, base)
        tasks = [asyncio.create_task(one(http, chat, q)) for q in questions]
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready.values())), 90)
            signalled_at = time.monotonic()
            os.kill(child.pid, signal_number)
            await asyncio.to_thread(child.wait, 60)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return watched, signalled_at


WORDS = " ".join(f"word{n}" for n in range(200))


def test_sigkill_mid_stream_keeps_what_streamed_and_the_restart_marks_it_interrupted(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """A run saves its text about once a second: a SIGKILL ~5 s into slow answers loses at
    most the last second or so, and the restart marks them interrupted, text kept."""
    # 200 words at 10 a second: every answer is mid-stream when the kill comes.
    fake_openai.default = Reply(content=WORDS, chunk_words=1, delay=0.1)
    db_file = tmp_path / "parley.db"
    log = tmp_path / "parley.log"
    questions = [f"killed question {i}" for i in range(5)]
    engine = make_engine(f"sqlite:///{db_file}")
    try:
        with parley_process(
            f"sqlite:///{db_file}", fake_openai, tmp_path, log, MAX_RUNS_PER_USER="10"
        ) as (
            child,
            base,
        ):
            watched, killed_at = asyncio.run(
                stream_then_signal(base, child, questions, signal.SIGKILL, words_first=45)
            )
            assert child.returncode == -signal.SIGKILL
        assert fake_openai.wait_for_disconnect(timeout=10, count=5), "upstream streams left open"

        fake_openai.default = Reply(echo=True)
        with parley_process(f"sqlite:///{db_file}", fake_openai, tmp_path, log) as (_, base):
            turns = stored_turns(engine, questions)
            for question in questions:
                answer = turns[question].answer
                assert answer.state == "interrupted"
                assert answer.error == message_rows.INTERRUPTED_ERROR
                last_shown = watched[question].seen[-1][1]
                earlier = watched[question].at(killed_at - 1.5)
                # At least what the client had seen 1.5 s before the kill, and nothing it
                # was not shown.
                assert len(earlier.split()) >= 25, earlier
                assert answer.content.startswith(earlier), (earlier, answer.content)
                assert last_shown.startswith(answer.content)
            # The conversation carries on after the restart, with the kept text.
            conversation_id = turns[questions[0]].question.conversation_id
            kept = turns[questions[0]].answer.content

            async def follow_up() -> str:
                async with httpx.AsyncClient(timeout=60) as http:
                    chat = await chat_endpoint(http, base)
                    answer = ""
                    async for outputs in gq.run(
                        http,
                        f"{base}/",
                        os.urandom(8).hex(),
                        chat,
                        ["Are you back?", conversation_id, "", "{}"],
                    ):
                        answer = str(outputs[0])
                    return answer

            assert asyncio.run(follow_up()) == "Echo: Are you back?"
            sent = [r for r in fake_openai.requests if r["path"].endswith("/chat/completions")]
            assert sent[-1]["json"]["messages"][:2] == [
                {"role": "user", "content": questions[0]},
                {"role": "assistant", "content": kept},
            ]
    finally:
        engine.dispose()


def test_sigterm_during_long_answers_saves_them_interrupted_within_the_grace_period(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """Answers longer than the grace period: the process exits within it (plus the saves),
    every row interrupted with the text it had, none left streaming."""
    fake_openai.default = Reply(content=WORDS * 3, chunk_words=1, delay=0.1)  # a 60 s answer
    db_file = tmp_path / "parley.db"
    questions = [f"long question {i}" for i in range(3)]
    engine = make_engine(f"sqlite:///{db_file}")
    try:
        with parley_process(
            f"sqlite:///{db_file}",
            fake_openai,
            tmp_path,
            tmp_path / "parley.log",
            SHUTDOWN_GRACE="3",
        ) as (child, base):
            watched, signalled_at = asyncio.run(
                stream_then_signal(base, child, questions, signal.SIGTERM, words_first=10)
            )
            exited_at = time.monotonic()
            # uvicorn re-raises the signal once it has shut down cleanly.
            assert child.returncode in (0, -signal.SIGTERM)
        assert fake_openai.wait_for_disconnect(timeout=10, count=3), "upstream streams left open"
        turns = stored_turns(engine, questions)  # fails on a row left "streaming"
        for question in questions:
            answer = turns[question].answer
            assert answer.state == "interrupted", answer.state
            assert "shut down while this answer was streaming" in (answer.error or "")
            assert len(answer.content.split()) >= 10
            assert WORDS.startswith(answer.content.rstrip())
            assert watched[question].seen[-1][1].startswith(answer.content)
        # The grace period (3 s), then the saves and the exit: well under uvicorn's 30 s.
        assert exited_at - signalled_at < 3 + 10
    finally:
        engine.dispose()


def test_fault_helpers_catch_a_lost_or_doubled_message(tmp_path: Path) -> None:
    """stored_turns must fail on a missing, doubled or still-streaming message."""
    from storage.db import migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'check.db'}")
    migrate(engine)
    try:
        with unit_of_work(session_factory(engine)) as session:
            user_id = repo.ensure_user(session=session, username="local").id
            assert user_id is not None
            chat_id = repo.create_conversation(session=session, user_id=user_id).id
            for text in ("kept", "doubled", "doubled"):
                question = message_rows.add_message(
                    session=session,
                    user_id=user_id,
                    conversation_id=chat_id,
                    parent_id=None,
                    role="user",
                    content=text,
                )
                message_rows.add_message(
                    session=session,
                    user_id=user_id,
                    conversation_id=chat_id,
                    parent_id=question.id,
                    role="assistant",
                    content="x",
                )
        with pytest.raises(AssertionError, match="lost or doubled"):
            stored_turns(engine, ["kept", "doubled"])
        with pytest.raises(AssertionError, match="lost or doubled"):
            stored_turns(engine, ["kept", "doubled", "missing"])
        with unit_of_work(session_factory(engine)) as session:
            message_rows.add_message(
                session=session,
                user_id=user_id,
                conversation_id=chat_id,
                parent_id=None,
                role="assistant",
                state="streaming",
            )
        with pytest.raises(AssertionError, match="left streaming"):
            stored_turns(engine, ["kept"])
    finally:
        engine.dispose()
