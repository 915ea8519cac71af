"""End to end through gradio_client: the /chat API against a fake upstream on loopback."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from gradio_client.exceptions import AppError

from storage import message_rows
from storage import repository as repo
from storage.db import session_factory, unit_of_work
from tests.conftest import RunningApp
from tests.fake_openai import ErrorReply, Reply


def stored(app: RunningApp, conversation_id: str) -> list[Any]:
    with unit_of_work(session_factory(app.parley.engine)) as session:
        user = repo.ensure_user(session=session, username="local")
        return repo.load_thread(
            session=session, user_id=user.id, conversation_id=conversation_id
        ).path


def test_chat_streams_progressively_and_saves_everything(app: RunningApp) -> None:
    answer = "Streaming works one piece at a time, and all of it is saved."
    app.fake.enqueue(Reply(content=answer, reasoning="First I think.", chunk_chars=3, delay=0.02))
    job = app.client().submit(
        "Hello?", "", "", '{"temperature": 0.4, "top_k": 20}', api_name="/chat"
    )
    outputs = [tuple(o) for o in job]
    final_answer, conversation_id = job.result()
    assert final_answer == answer
    partials = {o[0] for o in outputs if o[0] and o[0] != answer}
    assert partials, "expected partial answers before the final one"
    assert all(answer.startswith(p) for p in partials)

    body = app.fake.requests[-1]["json"]
    assert body["messages"] == [{"role": "user", "content": "Hello?"}]
    assert body["temperature"] == 0.4 and body["top_k"] == 20 and body["stream"] is True
    user, assistant = stored(app, conversation_id)
    assert (user.role, user.content) == ("user", "Hello?")
    assert assistant.content == answer and assistant.reasoning == "First I think."
    assert assistant.state == "complete" and assistant.finish_reason == "stop"
    assert assistant.parameters == {"temperature": 0.4, "top_k": 20}
    assert assistant.usage and assistant.usage["completion_tokens"] > 0
    assert assistant.timings and assistant.timings["ttft_ms"] >= 0


def test_follow_up_sends_history_without_reasoning(app: RunningApp) -> None:
    app.fake.enqueue(Reply(content="Four.", reasoning="2+2 is 4"))
    client = app.client()
    _, conversation_id = client.predict("2+2?", "", "", "{}", api_name="/chat")
    answer, same_id = client.predict("And doubled?", conversation_id, "", "{}", api_name="/chat")
    assert same_id == conversation_id
    assert answer == "Echo: And doubled?"
    assert app.fake.requests[-1]["json"]["messages"] == [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "Four."},
        {"role": "user", "content": "And doubled?"},
    ]


def test_provider_error_is_explained_and_the_message_kept(app: RunningApp) -> None:
    app.fake.enqueue(ErrorReply(401, '"Invalid token"'))
    answer, conversation_id = app.client().predict("Hi", "", "", "{}", api_name="/chat")
    assert "SiliconFlow rejected the API key (401)" in answer
    assert "SILICONFLOW_API_KEY" in answer
    user, assistant = stored(app, conversation_id)
    assert user.content == "Hi"
    assert assistant.state == "error" and "401" in (assistant.error or "")


def test_broken_stream_keeps_the_partial_answer(app: RunningApp) -> None:
    app.fake.enqueue(Reply(content="abcdefghijklmnop", chunk_chars=2, drop_after=4))
    answer, conversation_id = app.client().predict("Go", "", "", "{}", api_name="/chat")
    _, assistant = stored(app, conversation_id)
    assert assistant.state == "error"
    assert assistant.content and "abcdefghijklmnop".startswith(assistant.content)
    assert "broke while the answer was streaming" in answer


def test_bad_conversation_ids_and_parameters_are_refused(app: RunningApp) -> None:
    client = app.client()
    with pytest.raises(AppError, match="malformed"):
        client.predict("Hi", "not-an-id", "", "{}", api_name="/chat")
    with pytest.raises(AppError, match="does not exist"):
        client.predict("Hi", "0" * 32, "", "{}", api_name="/chat")
    with pytest.raises(AppError, match="Temperature must be between 0 and 2"):
        client.predict("Hi", "", "", '{"temperature": 3}', api_name="/chat")
    with pytest.raises(AppError, match="JSON object"):
        client.predict("Hi", "", "", "[1, 2]", api_name="/chat")
    assert app.fake.requests == []


def test_twenty_concurrent_conversations_all_finish_and_are_saved(app: RunningApp) -> None:
    app.fake.default = Reply(echo=True, chunk_chars=2, delay=0.02)
    client = app.client()

    def one(index: int) -> tuple[str, str, float]:
        began = time.monotonic()
        answer, conversation_id = client.predict(
            f"question {index}", "", "", "{}", api_name="/chat"
        )
        return answer, conversation_id, time.monotonic() - began

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    wall = time.monotonic() - began
    print(
        f"\n20 concurrent conversations: wall {wall:.2f} s, "
        f"slowest {max(r[2] for r in results):.2f} s, fastest {min(r[2] for r in results):.2f} s"
    )
    assert [r[0] for r in results] == [f"Echo: question {i}" for i in range(20)]
    assert len({r[1] for r in results}) == 20
    for index, (_, conversation_id, _) in enumerate(results):
        user, assistant = stored(app, conversation_id)
        assert user.content == f"question {index}"
        assert assistant.content == f"Echo: question {index}" and assistant.state == "complete"


def test_stop_closes_the_upstream_and_keeps_the_partial_answer(app: RunningApp) -> None:
    app.fake.enqueue(Reply(content="partial answer that never ends", chunk_chars=4, stall_after=4))
    client = app.client()
    job = client.submit("Tell me everything", "", "", "{}", api_name="/chat")
    seen: list[tuple[str, str]] = []
    for output in job:
        seen.append(tuple(output))
        if output[0]:  # the first text has arrived; the upstream now stalls
            break
    conversation_id = seen[-1][1]
    job.cancel()  # a client that leaves only stops watching ...
    assert app.fake.active_streams == 1 and app.fake.disconnects == 0
    # ... Stop ends it.
    assert client.predict(conversation_id, api_name="/stop") == "stopped 1 answer"
    assert app.fake.wait_for_disconnect(timeout=10), "upstream never saw the connection close"
    _, assistant = wait_for_state(app, conversation_id, "stopped")
    assert assistant.content and "partial answer that never ends".startswith(assistant.content)
    assert client.predict(conversation_id, api_name="/stop") == "no answer was streaming"
    # Reopening after a "reload" (a new client) sends what was saved, partial answer included.
    answer, _ = app.client().predict("Continue", conversation_id, "", "{}", api_name="/chat")
    assert answer == "Echo: Continue"
    sent = app.fake.requests[-1]["json"]["messages"]
    assert sent[0] == {"role": "user", "content": "Tell me everything"}
    assert sent[1] == {"role": "assistant", "content": assistant.content}


def wait_for_state(app: RunningApp, conversation_id: str, state: str) -> list[Any]:
    """Poll the database (bounded) until the last message reaches `state`."""
    deadline = time.monotonic() + 10
    while True:
        path = stored(app, conversation_id)
        if path[-1].state == state or time.monotonic() > deadline:
            assert path[-1].state == state, f"state stayed {path[-1].state!r}"
            return path
        time.sleep(0.05)


def test_answers_streaming_when_the_server_died_are_marked_interrupted(
    fake_openai: Any, database_url: str
) -> None:
    from storage.db import make_engine, migrate
    from tests.conftest import start_app

    engine = make_engine(database_url)
    migrate(engine)
    with unit_of_work(session_factory(engine)) as session:
        user = repo.ensure_user(session=session, username="local")
        chat = repo.create_conversation(session=session, user_id=user.id)
        question = message_rows.add_message(
            session=session,
            user_id=user.id,
            conversation_id=chat.id,
            parent_id=None,
            role="user",
            content="Still there?",
        )
        message_rows.add_message(
            session=session,
            user_id=user.id,
            conversation_id=chat.id,
            parent_id=question.id,
            role="assistant",
            content="",
            state="streaming",
        )
    engine.dispose()
    restarted = start_app(fake_openai, database_url)
    try:
        user_message, answer = stored(restarted, chat.id)
        assert user_message.content == "Still there?"
        assert answer.state == "interrupted" and "server stopped" in (answer.error or "")
    finally:
        restarted.close()


def test_rate_limit_is_retried_before_the_first_token(app: RunningApp) -> None:
    app.fake.enqueue(
        ErrorReply(
            429, '{"message":"Request was rejected due to rate limiting."}', {"Retry-After": "0"}
        ),
        Reply(content="Got through."),
    )
    answer, _ = app.client().predict("Hi", "", "", "{}", api_name="/chat")
    assert answer == "Got through."
    assert len(app.fake.requests) == 2


def test_chat_api_documents_named_inputs_and_outputs(app: RunningApp) -> None:
    info = app.client().view_api(print_info=False, return_format="dict")
    endpoint = info["named_endpoints"]["/chat"]
    assert [p["label"] for p in endpoint["parameters"]] == [
        "message",
        "conversation_id",
        "model",
        "parameters_json",
    ]
    assert [r["label"] for r in endpoint["returns"]] == ["answer_so_far", "conversation_id"]
    # UI events are not public API.
    assert list(info["named_endpoints"]) == ["/chat", "/attach", "/stop"]
    for name in ("/attach", "/stop"):
        assert [p["label"] for p in info["named_endpoints"][name]["parameters"]] == [
            "conversation_id"
        ]
    answer, conversation_id = app.client().predict("Only the message", api_name="/chat")
    assert answer == "Echo: Only the message" and len(conversation_id) == 32
