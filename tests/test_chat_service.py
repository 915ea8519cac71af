"""ChatService turns with real collaborators: the fake upstream on loopback and a real database
(a SQLite file, and a PostgreSQL server)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session, select

from storage import repository as repo
from storage import tree
from storage.db import make_engine, migrate, session_factory, unit_of_work
from storage.models import Message
from tests.fake_openai import ErrorReply, FakeOpenAI, Reply
from tests.services import stored_path
from webapp.app.chat import ChatService, TurnRefused, TurnUpdate
from webapp.app.chat_request import Action, EditMessage, NewMessage, Regenerate, TurnSettings
from webapp.app.error_text import user_message
from webapp.config import load_settings
from webapp.core.capabilities import CapabilityTable
from webapp.core.params import ParamError
from webapp.provider.client import ProviderClient

TURN = TurnSettings(provider="siliconflow", model="Qwen/Qwen3-8B", system_prompt="Be brief.")


async def run(
    service: ChatService,
    user_id: int,
    conversation_id: str | None,
    action: Action,
    turn: TurnSettings = TURN,
) -> TurnUpdate:
    last = None
    async for update in service.stream_turn(
        user_id=user_id, conversation_id=conversation_id, action=action, turn=turn
    ):
        last = update
    assert last is not None
    return last


async def user_id(service: ChatService, name: str = "local") -> int:
    user = await service.db(lambda s: repo.ensure_user(session=s, username=name))
    assert user.id is not None
    return user.id


async def test_regenerate_keeps_the_first_answer_as_a_version(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await user_id(service)
    fake.enqueue(Reply(content="First answer."), Reply(content="Second answer."))
    first = await run(service, uid, None, NewMessage("Question?"))
    second = await run(service, uid, first.conversation_id, Regenerate())
    assert second.state == "complete"
    path = await stored_path(service, uid, first.conversation_id)
    assert [m.content for m in path] == ["Question?", "Second answer."]
    messages = await service.db(
        lambda s: repo.load_messages(session=s, user_id=uid, conversation_id=first.conversation_id)
    )
    versions = tree.siblings(messages, path[-1].id)
    assert [m.content for m in versions] == ["First answer.", "Second answer."]
    # The regenerated request carried the same history and the system prompt.
    assert fake.requests[-1]["json"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Question?"},
    ]


async def test_edit_resends_from_the_edited_question_and_keeps_the_old_branch(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await user_id(service)
    first = await run(service, uid, None, NewMessage("What is 2+2?"))
    await run(service, uid, first.conversation_id, NewMessage("And 3+3?"))
    path = await stored_path(service, uid, first.conversation_id)
    edited = await run(service, uid, first.conversation_id, EditMessage(path[2].id, "And 4+4?"))
    assert edited.progress.choices[0].content == "Echo: And 4+4?"
    new_path = await stored_path(service, uid, first.conversation_id)
    assert [m.content for m in new_path] == [
        "What is 2+2?",
        "Echo: What is 2+2?",
        "And 4+4?",
        "Echo: And 4+4?",
    ]
    messages = await service.db(
        lambda s: repo.load_messages(session=s, user_id=uid, conversation_id=first.conversation_id)
    )
    assert [m.content for m in tree.siblings(messages, new_path[2].id)] == ["And 3+3?", "And 4+4?"]
    assert fake.requests[-1]["json"]["messages"][-1] == {"role": "user", "content": "And 4+4?"}
    assert len(fake.requests[-1]["json"]["messages"]) == 4  # system, q1, a1, edited q2


async def test_n_choices_are_saved_as_one_batch_and_the_first_is_kept(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await user_id(service)
    fake.enqueue(Reply(choices=["Alpha.", "Beta.", "Gamma."]))
    turn = TurnSettings(provider="siliconflow", model="Qwen/Qwen3-8B", params={"n": 3})
    update = await run(service, uid, None, NewMessage("Pick a word"), turn)
    assert [c.content for c in update.progress.choices] == ["Alpha.", "Beta.", "Gamma."]
    path = await stored_path(service, uid, update.conversation_id)
    assert path[-1].content == "Alpha."
    messages = await service.db(
        lambda s: repo.load_messages(session=s, user_id=uid, conversation_id=update.conversation_id)
    )
    batch = tree.siblings(messages, path[-1].id)
    assert [m.content for m in batch] == ["Alpha.", "Beta.", "Gamma."]
    assert len({m.batch_id for m in batch}) == 1 and batch[0].batch_id
    assert fake.requests[-1]["json"]["n"] == 3


async def test_refusals_send_nothing_and_save_nothing(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await user_id(service)
    bad = TurnSettings(provider="siliconflow", model="Qwen/Qwen3-8B", params={"temperature": 9})
    with pytest.raises(ParamError, match="Temperature"):
        await run(service, uid, None, NewMessage("hi"), bad)
    with pytest.raises(TurnRefused, match="Type a message"):
        await run(service, uid, None, NewMessage("   "))
    with pytest.raises(TurnRefused, match="No API key for jiekou.ai"):
        await run(
            service,
            uid,
            None,
            NewMessage("hi"),
            TurnSettings(provider="jiekou", model="deepseek/deepseek-v3.2"),
        )
    assert fake.requests == []
    count = await service.db(lambda s: repo.count_conversations(session=s, user_id=uid))
    assert count == 0


def stored_bytes(session: Session) -> bytes:
    """Everything the database holds: the SQLite file and its WAL, or every row of every
    PostgreSQL table as text."""
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database or "")
        return b"".join(
            p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
        )
    rows: list[Any] = []
    for table in inspect(engine).get_table_names():
        rows += session.connection().execute(text(f'SELECT t::text FROM "{table}" t')).all()
    return "\n".join(row[0] for row in rows).encode()


async def test_a_pasted_key_is_used_and_never_stored(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await user_id(service)
    turn = TurnSettings(
        provider="jiekou",
        model="deepseek/deepseek-v3.2",
        api_keys={"jiekou": "sk-pasted-secret-123"},
    )
    assert not service.settings.provider("jiekou").api_key  # configured without a key
    update = await run(service, uid, None, NewMessage("hi"), turn)
    assert update.state == "complete"
    assert fake.requests[-1]["headers"]["authorization"] == "Bearer sk-pasted-secret-123"
    assert fake.requests[-1]["json"]["max_tokens"] == 4096  # jiekou requires it
    database = await service.db(stored_bytes)
    assert b"Echo: hi" in database  # the check can see what was stored
    assert b"sk-pasted-secret-123" not in database


async def test_another_users_conversation_cannot_be_continued(
    service: ChatService, fake: FakeOpenAI
) -> None:
    alice, bob = await user_id(service, "alice"), await user_id(service, "bob")
    first = await run(service, alice, None, NewMessage("Alice's secret plan"))
    for action in (NewMessage("hijack"), Regenerate()):
        with pytest.raises(repo.NotFound):
            await run(service, bob, first.conversation_id, action)
    assert len(fake.requests) == 1
    path = await stored_path(service, alice, first.conversation_id)
    assert [m.content for m in path] == ["Alice's secret plan", "Echo: Alice's secret plan"]


async def test_an_asker_that_leaves_while_the_rows_are_written_still_gets_its_answer_saved(
    fake: FakeOpenAI, database_url: str
) -> None:
    settings = load_settings(
        {"SILICONFLOW_BASE_URL": fake.base_url, "SILICONFLOW_API_KEY": "k"}, dotenv_path=None
    )
    engine = make_engine(database_url)
    migrate(engine)
    sessions = session_factory(engine)
    entered, release = threading.Event(), threading.Event()
    gate = {"armed": False}

    def slow_sessions() -> Any:
        if gate["armed"]:
            gate["armed"] = False
            entered.set()
            release.wait(10)  # the prepare is in progress in its thread
        return sessions()

    async with httpx.AsyncClient() as http:
        clients = {p.name: ProviderClient(http, p) for p in settings.providers}
        service = ChatService(
            settings=settings,
            session_factory=slow_sessions,
            clients=clients,
            capabilities=CapabilityTable(),
        )
        uid = await user_id(service)
        gate["armed"] = True
        task = asyncio.create_task(run(service, uid, None, NewMessage("Stop me early")))
        await asyncio.to_thread(entered.wait, 10)
        task.cancel()  # the tab closes while the first rows are being written
        release.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Only Stop ends a run: once the rows exist, the answer is asked for and saved.
        assert await asyncio.to_thread(fake.wait_for_requests, 1, 10)
        assert await service.runs.wait(service.runs.live_for_user(uid), 10)
    with unit_of_work(sessions) as session:
        rows = sorted((m.role, m.state, m.content) for m in session.exec(select(Message)).all())
    assert rows == [
        ("assistant", "complete", "Echo: Stop me early"),
        ("user", "complete", "Stop me early"),
    ]
    engine.dispose()


async def test_a_refused_edit_changes_nothing(service: ChatService, fake: FakeOpenAI) -> None:
    uid = await user_id(service)
    first = await run(
        service,
        uid,
        None,
        NewMessage("hello"),
        TurnSettings(
            provider="siliconflow",
            model="Qwen/Qwen3-8B",
            system_prompt="A",
            params={"temperature": 0.1},
        ),
    )
    with pytest.raises(TurnRefused, match="can no longer be edited"):
        await run(
            service,
            uid,
            first.conversation_id,
            EditMessage("f" * 32, "changed"),
            TurnSettings(provider="siliconflow", model="Qwen/Qwen3-32B", system_prompt="B"),
        )
    conversation = await service.db(
        lambda s: repo.get_conversation(
            session=s, user_id=uid, conversation_id=first.conversation_id
        )
    )
    assert (conversation.system_prompt, conversation.model) == ("A", "Qwen/Qwen3-8B")
    assert conversation.parameters == {"temperature": 0.1, "tools": [], "tool_choice": "auto"}


async def test_fewer_choices_than_requested_are_marked(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await user_id(service)
    fake.enqueue(Reply(content="Only one."))  # a server that ignores n
    turn = TurnSettings(provider="siliconflow", model="Qwen/Qwen3-8B", params={"n": 2})
    update = await run(service, uid, None, NewMessage("two please"), turn)
    messages = await service.db(
        lambda s: repo.load_messages(session=s, user_id=uid, conversation_id=update.conversation_id)
    )
    first, second = [m for m in messages if m.role == "assistant"]
    assert (first.state, first.content) == ("complete", "Only one.")
    assert second.state == "error" and "fewer choices" in user_message(second.error)


async def test_n_refused_by_the_server_is_one_error_not_n(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await user_id(service)
    fake.enqueue(ErrorReply(400, '{"code":20015,"message":"n must be at most 4","data":null}'))
    turn = TurnSettings(provider="siliconflow", model="Qwen/Qwen3-8B", params={"n": 8})
    update = await run(service, uid, None, NewMessage("eight please"), turn)
    assert update.state == "error" and update.assistant_ids == update.assistant_ids[:1]
    messages = await service.db(
        lambda s: repo.load_messages(session=s, user_id=uid, conversation_id=update.conversation_id)
    )
    [answer] = [m for m in messages if m.role == "assistant"]
    assert (answer.state, answer.batch_id) == ("error", None)
    assert "n must be at most 4" in (answer.error or "")
    path = await stored_path(service, uid, update.conversation_id)
    assert [m.role for m in path] == ["user", "assistant"] and path[-1].id == answer.id
    fake.enqueue(Reply(content="Fine, one."))
    again = await run(service, uid, update.conversation_id, NewMessage("one then"), TURN)
    assert again.state == "complete"


async def test_without_usage_in_the_stream_the_prompt_is_estimated_too(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await user_id(service)
    question = "Summarise the plot of Hamlet in three sentences, please. " * 20  # 1,160 chars
    fake.enqueue(Reply(content="He hesitates; everyone dies.", style="no_usage"))
    update = await run(service, uid, None, NewMessage(question), TURN)
    path = await stored_path(service, uid, update.conversation_id)
    usage = path[-1].usage or {}
    assert usage["estimated"] is True and usage["completion_tokens"] > 0
    # ~1,170 characters of system prompt and question: about 290 tokens, plus overhead.
    assert 250 <= usage["prompt_tokens"] <= 350, usage
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_oversized_messages_are_refused(service: ChatService, fake: FakeOpenAI) -> None:
    uid = await user_id(service)
    limit = service.settings.max_message_chars
    with pytest.raises(TurnRefused, match="MAX_MESSAGE_CHARS"):
        await run(service, uid, None, NewMessage("x" * (limit + 1)))
    with pytest.raises(TurnRefused, match="system prompt"):
        await run(
            service,
            uid,
            None,
            NewMessage("hi"),
            TurnSettings(provider="siliconflow", model="m", system_prompt="y" * (limit + 1)),
        )
    assert fake.requests == []
