"""Storage layer tests on real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from storage import message_rows, tree
from storage import repository as repo
from storage.accounts import AccountError, create_account
from storage.api_keys import create_key
from storage.db import (
    StorageUnavailable,
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    migrate,
    session_factory,
    unit_of_work,
)
from storage.models import Conversation, Message, User
from tests.pg import create_database, drop_database

Call = Callable[..., Any]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL to a SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'parley.db'}"


def _chat(call: Call, user_id: int, title: str = "New chat") -> str:
    """Create a conversation and return its id."""
    return call(repo.create_conversation, user_id=user_id, title=title).id


def _add(call: Call, user_id: int, conversation_id: str, parent_id: str | None, **kw: Any) -> str:
    """Add a message (role defaults to user) and return its id."""
    kw.setdefault("role", "user")
    return call(
        message_rows.add_message,
        user_id=user_id,
        conversation_id=conversation_id,
        parent_id=parent_id,
        **kw,
    ).id


def _backups(url: str) -> list[Path]:
    """List the backup files written next to a SQLite database."""
    path = Path(make_url(url).database or "")
    return sorted(path.parent.glob(f"{path.name}.bak-*"))


# --- engine and migrations -------------------------------------------------------------


def test_migrate_creates_schema_and_is_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        assert {"users", "conversations", "messages"} <= set(inspect(engine).get_table_names())
        assert current_revision(engine) == head_revision()
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("conversations")}
        assert "ix_conversations_user_id_updated_at" in indexes
        assert migrate(engine) is None
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_upgrading_a_filled_first_schema_database_loses_nothing(database_url: str) -> None:
    """A database made with migration 0001 and filled, then upgraded to head by start-up."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
        now = datetime(2026, 1, 2, 3, 4, 5)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (username, is_admin, created_at) VALUES ('ana', false, :t)"
                ),
                {"t": now},
            )
            user_id = connection.execute(text("SELECT id FROM users")).scalar_one()
            connection.execute(
                text(
                    "INSERT INTO conversations (id, user_id, title, system_prompt, provider, "
                    "model, parameters, current_leaf_id, created_at, updated_at) "
                    "VALUES ('c' || :z, :u, "
                    "'Kept', 'Be kind', 'siliconflow', 'Qwen/Qwen3-8B', '{\"top_k\": 5}', "
                    "'a' || :z, :t, :t)"
                ),
                {"z": "0" * 31, "u": user_id, "t": now},
            )
            for row_id, parent, role, content in (
                ("u", None, "user", "Question?"),
                ("a", "u", "assistant", "Answer ✓"),
            ):
                connection.execute(
                    text(
                        "INSERT INTO messages (id, conversation_id, user_id, parent_id, role, "
                        "content, reasoning, provider, model, state, choice_index, usage, "
                        "created_at, updated_at) VALUES (:id || :z, 'c' || :z, :u, "
                        ":parent, :role, :content, 'hm', '', '', 'complete', 0, "
                        "'{\"total_tokens\": 7}', :t, :t)"
                    ),
                    {
                        "id": row_id,
                        "z": "0" * 31,
                        "u": user_id,
                        "parent": parent and parent + "0" * 31,
                        "role": role,
                        "content": content,
                        "t": now,
                    },
                )
        migrate(engine)
        assert current_revision(engine) == head_revision()
        with unit_of_work(session_factory(engine)) as session:
            [conversation] = repo.list_conversations(session=session, user_id=user_id)
            thread = repo.load_thread(
                session=session, user_id=user_id, conversation_id=conversation.id
            )
        full, path = thread.conversation, thread.path
        assert (full.title, full.system_prompt, full.parameters) == (
            "Kept",
            "Be kind",
            {"top_k": 5},
        )
        assert [(m.role, m.content, m.reasoning, m.usage, m.tool_status) for m in path] == [
            ("user", "Question?", "hm", {"total_tokens": 7}, None),
            ("assistant", "Answer ✓", "hm", {"total_tokens": 7}, None),
        ]
        assert path[0].created_at == now.replace(tzinfo=UTC)
    finally:
        engine.dispose()


# One app instance starting up: migrate once everyone is ready, so the migrations overlap.
_START_UP = """
import sys
from storage.db import make_engine, migrate
engine = make_engine(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
migrate(engine)
"""


def test_instances_starting_together_migrate_one_at_a_time(postgres_url: str) -> None:
    """Several app processes run migrate() on one empty PostgreSQL database at once."""
    url = create_database(postgres_url)
    root = Path(__file__).resolve().parent.parent
    instances = [
        subprocess.Popen(
            [sys.executable, "-c", _START_UP, url],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for instance in instances:
            assert instance.stdout and instance.stdout.readline() == "ready\n"
        for instance in instances:
            assert instance.stdin
            instance.stdin.write("go\n")
            instance.stdin.flush()
        for instance in instances:
            _, errors = instance.communicate(timeout=60)
            assert instance.returncode == 0, errors
        engine = make_engine(url)
        try:
            assert current_revision(engine) == head_revision()
            assert {"users", "conversations", "messages"} <= set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
    finally:
        for instance in instances:
            instance.kill()
            instance.wait()
        drop_database(url)


def test_postgres_url_uses_psycopg() -> None:
    engine = make_engine("postgresql://user@localhost:5432/parley")
    assert engine.url.drivername == "postgresql+psycopg"


def test_sqlite_pragmas_and_parent_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'parley.db'}"
    engine = make_engine(url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert (tmp_path / "nested" / "dir" / "parley.db").exists()
    finally:
        engine.dispose()


def test_no_backup_for_fresh_or_current_database(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        assert migrate(engine) is None
        assert migrate(engine) is None
    finally:
        engine.dispose()
    engine = make_engine(sqlite_url)  # a new process opening an up-to-date file
    try:
        assert migrate(engine) is None
    finally:
        engine.dispose()
    assert _backups(sqlite_url) == []


def test_backup_written_before_upgrading_an_older_file(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        migrate(engine)
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert current_revision(engine) is None
        backup = migrate(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    assert _backups(sqlite_url) == [backup]
    assert backup is not None and backup.name.startswith("parley.db.bak-none-")
    with sqlite3.connect(backup) as copy:  # a usable snapshot of the pre-migration file
        tables = {row[0] for row in copy.execute("SELECT name FROM sqlite_master")}
    assert "alembic_version" in tables and "messages" not in tables


def test_backup_written_for_unversioned_file_with_data(tmp_path: Path, sqlite_url: str) -> None:
    with sqlite3.connect(tmp_path / "parley.db") as legacy:
        legacy.execute("CREATE TABLE notes (body TEXT)")
        legacy.execute("INSERT INTO notes VALUES ('keep me')")
    engine = make_engine(sqlite_url)
    try:
        backup = migrate(engine)
    finally:
        engine.dispose()
    assert backup is not None and backup.exists()
    with sqlite3.connect(backup) as copy:
        assert copy.execute("SELECT body FROM notes").fetchall() == [("keep me",)]


def test_upgrading_keys_user_names_and_keeps_older_case_twins_apart(database_url: str) -> None:
    """Migration 0007 on users made before names matched without case ("BOB" next to "bob")."""
    engine = make_engine(database_url)
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0006")
        with engine.begin() as connection:
            for name in ("bob", "BOB", "Carol"):
                connection.execute(
                    text(
                        "INSERT INTO users (username, is_admin, disabled, "
                        "created_at) VALUES (:n, false, false, :t)"
                    ),
                    {"n": name, "t": datetime(2026, 1, 1)},
                )
            ids = dict(connection.execute(text("SELECT username, id FROM users")).all())
        migrate(engine)
        find = session_factory(engine)
        with unit_of_work(find) as session:
            assert repo.find_user(session=session, username="bob").id == ids["bob"]
            assert repo.find_user(session=session, username="BOB").id == ids["BOB"]
            assert repo.find_user(session=session, username="Bob").id == ids["bob"]  # the oldest
            carol = repo.ensure_user(session=session, username="CAROL")
            assert (carol.id, carol.username) == (ids["Carol"], "Carol")
            # Rows that point at users: the downgrade must not copy the table away under them.
            repo.create_conversation(session=session, user_id=ids["bob"], title="kept")
            create_key(session=session, user_id=ids["BOB"], name="kept")
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0006")
        assert "username_key" not in {c["name"] for c in inspect(engine).get_columns("users")}
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM conversations")).scalar() == 1
            assert connection.execute(text("SELECT count(*) FROM api_keys")).scalar() == 1
    finally:
        engine.dispose()


# --- conversations ---------------------------------------------------------------------


def test_ensure_user_is_get_or_create(call: Call) -> None:
    first = call(repo.ensure_user, username="local")
    second = call(repo.ensure_user, username="local")
    assert isinstance(first, User) and first.id == second.id and not first.is_admin


def test_user_names_match_whatever_their_case(call: Call) -> None:
    first = call(repo.ensure_user, username="ALICE")
    again = [call(repo.ensure_user, username=name) for name in ("alice", "Alice", "ALICE")]
    assert {user.id for user in again} == {first.id}
    assert {user.username for user in again} == {"ALICE"}  # the first spelling, for display
    assert call(repo.find_user, username="aLiCe").id == first.id
    assert call(repo.find_user, username="alice2") is None
    with pytest.raises(AccountError, match="'ALICE' already exists"):
        call(create_account, username="alice", password_hash=None)
    with pytest.raises(IntegrityError):  # the database itself refuses a second spelling
        call(lambda session: (session.add(User(username="Alice")), session.commit()))


def test_conversation_crud(call: Call, alice: int) -> None:
    created = call(
        repo.create_conversation,
        user_id=alice,
        system_prompt="Be brief.",
        provider="openai",
        model="gpt-x",
        parameters={"temperature": 0.2},
    )
    assert len(created.id) == 32 and created.title == "New chat"
    assert created.created_at.tzinfo is not None

    loaded = call(repo.get_conversation, user_id=alice, conversation_id=created.id)
    assert isinstance(loaded, Conversation)
    assert (loaded.system_prompt, loaded.provider, loaded.model) == ("Be brief.", "openai", "gpt-x")
    assert loaded.parameters == {"temperature": 0.2}
    assert loaded.updated_at.utcoffset() == timedelta(0)

    call(repo.rename_conversation, user_id=alice, conversation_id=created.id, title="  Trip  ")
    assert call(repo.get_conversation, user_id=alice, conversation_id=created.id).title == "Trip"
    call(repo.rename_conversation, user_id=alice, conversation_id=created.id, title="x" * 500)
    got = call(repo.get_conversation, user_id=alice, conversation_id=created.id)
    assert got.title == "x" * 200
    call(repo.rename_conversation, user_id=alice, conversation_id=created.id, title="   ")
    assert call(repo.get_conversation, user_id=alice, conversation_id=created.id).title == (
        "Untitled"
    )

    call(repo.update_conversation_settings, user_id=alice, conversation_id=created.id, model="m2")
    got = call(repo.get_conversation, user_id=alice, conversation_id=created.id)
    assert (got.system_prompt, got.provider, got.model) == ("Be brief.", "openai", "m2")
    call(
        repo.update_conversation_settings,
        user_id=alice,
        conversation_id=created.id,
        system_prompt="",
        parameters={"top_p": 0.9},
    )
    got = call(repo.get_conversation, user_id=alice, conversation_id=created.id)
    assert (got.system_prompt, got.parameters, got.model) == ("", {"top_p": 0.9}, "m2")

    _add(call, alice, created.id, None, content="hello")
    assert call(repo.count_conversations, user_id=alice) == 1
    call(repo.delete_conversation, user_id=alice, conversation_id=created.id)
    assert call(repo.count_conversations, user_id=alice) == 0
    with pytest.raises(repo.NotFound):
        call(repo.get_conversation, user_id=alice, conversation_id=created.id)
    with pytest.raises(repo.NotFound):
        call(repo.load_messages, user_id=alice, conversation_id=created.id)


def test_set_title_if_default(call: Call, alice: int) -> None:
    chat = _chat(call, alice)
    assert call(repo.set_title_if_default, user_id=alice, conversation_id=chat, title="Paris")
    assert not call(repo.set_title_if_default, user_id=alice, conversation_id=chat, title="Rome")
    assert call(repo.get_conversation, user_id=alice, conversation_id=chat).title == "Paris"


def test_list_is_newest_activity_first(call: Call, alice: int) -> None:
    first, second, third = (_chat(call, alice, title) for title in ("one", "two", "three"))
    assert [c.id for c in call(repo.list_conversations, user_id=alice)] == [third, second, first]
    _add(call, alice, first, None, content="bump")
    listed = call(repo.list_conversations, user_id=alice)
    assert [c.id for c in listed] == [first, third, second]
    assert listed[0].title == "one" and listed[0].updated_at.tzinfo is not None
    assert len(call(repo.list_conversations, user_id=alice, limit=2)) == 2


def test_search_title_and_content_case_insensitive(call: Call, alice: int) -> None:
    by_title = _chat(call, alice, "Holiday PLANS")
    by_content = _chat(call, alice)
    _add(call, alice, by_content, None, content="Where should we go on holiday?")
    _add(call, alice, _chat(call, alice, "Unrelated"), None, content="tax forms")
    found = {c.id for c in call(repo.list_conversations, user_id=alice, query="HOLIDAY")}
    assert found == {by_title, by_content}
    assert call(repo.list_conversations, user_id=alice, query="nothing-like-this") == []


def test_search_treats_wildcards_literally(call: Call, alice: int) -> None:
    percent = _chat(call, alice, "Growth 100% sure")
    underscore = _chat(call, alice)
    _add(call, alice, underscore, None, content="call my_function")
    _chat(call, alice, "Growth 100 percent")
    _chat(call, alice, "myXfunction")
    hits = call(repo.list_conversations, user_id=alice, query="100%")
    assert [c.id for c in hits] == [percent]
    assert [c.id for c in call(repo.list_conversations, user_id=alice, query="my_f")] == [
        underscore
    ]
    assert call(repo.list_conversations, user_id=alice, query="\\") == []


# --- messages and the tree -------------------------------------------------------------


def test_message_fields_round_trip(call: Call, alice: int) -> None:
    chat = _chat(call, alice)
    question = _add(call, alice, chat, None, content="2+2?", attachments=[{"name": "a.png"}])
    answer = call(
        message_rows.add_message,
        user_id=alice,
        conversation_id=chat,
        parent_id=question,
        role="assistant",
        state="streaming",
        provider="openai",
        model="gpt-x",
        parameters={"temperature": 0.0, "n": 1},
    )
    assert answer.state == "streaming"
    done = call(
        message_rows.complete_message,
        user_id=alice,
        message_id=answer.id,
        content="4",
        reasoning="2 plus 2",
        usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        timings={"ttft_ms": 120, "duration_ms": 300},
        finish_reason="tool_calls",
        tool_calls=[{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    )
    assert isinstance(done, Message) and done.content == "4"
    tool = _add(
        call, alice, chat, answer.id, role="tool", content="ok", tool_call_id="c1", name="f"
    )
    messages = call(repo.load_messages, user_id=alice, conversation_id=chat)
    assert [m.id for m in messages] == [question, answer.id, tool]
    stored = messages[1]
    assert (stored.content, stored.reasoning, stored.state) == ("4", "2 plus 2", "complete")
    assert stored.usage == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    assert stored.timings == {"ttft_ms": 120, "duration_ms": 300}
    assert stored.tool_calls is not None and stored.tool_calls[0]["id"] == "c1"
    assert stored.parameters == {"temperature": 0.0, "n": 1}
    assert messages[0].attachments == [{"name": "a.png"}]
    assert (messages[2].tool_call_id, messages[2].name) == ("c1", "f")
    conversation = call(repo.get_conversation, user_id=alice, conversation_id=chat)
    assert conversation.current_leaf_id == tool


def test_add_message_validation(call: Call, alice: int) -> None:
    chat, other = _chat(call, alice), _chat(call, alice)
    foreign_parent = _add(call, alice, other, None)
    with pytest.raises(repo.NotFound):
        _add(call, alice, chat, foreign_parent)
    with pytest.raises(repo.NotFound):
        _add(call, alice, chat, uuid.uuid4().hex)
    with pytest.raises(TypeError):
        _add(call, alice, chat, None, conversation_id_typo="x")
    with pytest.raises(ValueError):
        _add(call, alice, chat, None, state="done")
    with pytest.raises(ValueError):
        _add(call, alice, chat, None, role="robot")
    assert call(repo.load_messages, user_id=alice, conversation_id=chat) == []


def test_regenerate_branches_and_active_path(call: Call, alice: int) -> None:
    chat = _chat(call, alice)
    question = _add(call, alice, chat, None, content="Q")
    first = _add(call, alice, chat, question, role="assistant", content="A1")
    follow_up = _add(call, alice, chat, first, content="Q2")
    second = _add(call, alice, chat, question, role="assistant", content="A2")  # regenerate
    leaf = call(repo.get_conversation, user_id=alice, conversation_id=chat).current_leaf_id
    assert leaf == second

    messages = call(repo.load_messages, user_id=alice, conversation_id=chat)
    assert [m.content for m in tree.active_path(messages, leaf)] == ["Q", "A2"]
    assert [m.id for m in tree.siblings(messages, second)] == [first, second]
    assert [m.id for m in tree.siblings(messages, question)] == [question]
    assert tree.siblings(messages, uuid.uuid4().hex) == []

    # Switch to version 1/2: its newest descendant becomes the leaf.
    target = tree.latest_leaf_under(messages, first)
    assert target == follow_up
    call(message_rows.set_current_leaf, user_id=alice, conversation_id=chat, message_id=target)
    leaf = call(repo.get_conversation, user_id=alice, conversation_id=chat).current_leaf_id
    assert [m.content for m in tree.active_path(messages, leaf)] == ["Q", "A1", "Q2"]
    assert tree.latest_leaf_under(messages, question) == second
    assert tree.latest_leaf_under(messages, second) == second


def test_active_path_falls_back_to_newest(call: Call, alice: int) -> None:
    chat = _chat(call, alice)
    question = _add(call, alice, chat, None, content="Q")
    answer = _add(call, alice, chat, question, role="assistant", make_current=False)
    leaf = call(repo.get_conversation, user_id=alice, conversation_id=chat).current_leaf_id
    assert leaf == question  # make_current=False left the leaf alone
    messages = call(repo.load_messages, user_id=alice, conversation_id=chat)
    assert [m.id for m in tree.active_path(messages, None)] == [question, answer]
    assert [m.id for m in tree.active_path(messages, uuid.uuid4().hex)] == [question, answer]
    assert tree.active_path([], None) == []


def test_n_choices_are_ordered_by_choice_index(call: Call, alice: int) -> None:
    chat = _chat(call, alice)
    question = _add(call, alice, chat, None)
    ids = [
        _add(call, alice, chat, question, role="assistant", choice_index=index)
        for index in range(3)
    ]
    messages = call(repo.load_messages, user_id=alice, conversation_id=chat)
    assert [m.id for m in tree.siblings(messages, ids[1])] == ids


def test_set_current_leaf_rejects_other_conversation(call: Call, alice: int) -> None:
    chat, other = _chat(call, alice), _chat(call, alice)
    elsewhere = _add(call, alice, other, None)
    with pytest.raises(repo.NotFound):
        call(
            message_rows.set_current_leaf, user_id=alice, conversation_id=chat, message_id=elsewhere
        )


def test_feedback(call: Call, alice: int) -> None:
    chat = _chat(call, alice)
    message = _add(call, alice, chat, None, role="assistant")

    def feedback() -> int | None:
        return call(repo.load_messages, user_id=alice, conversation_id=chat)[0].feedback

    call(message_rows.set_feedback, user_id=alice, message_id=message, value=1)
    assert feedback() == 1
    call(message_rows.set_feedback, user_id=alice, message_id=message, value=-1)
    assert feedback() == -1
    for bad in (0, 2, True):
        with pytest.raises(ValueError):
            call(message_rows.set_feedback, user_id=alice, message_id=message, value=bad)
    call(message_rows.set_feedback, user_id=alice, message_id=message, value=None)
    assert feedback() is None


def test_mark_interrupted(call: Call, alice: int, bob: int) -> None:
    chats = [_chat(call, alice), _chat(call, bob)]
    streaming = [
        _add(call, alice, chats[0], None, role="assistant", state="streaming"),
        _add(call, bob, chats[1], None, role="assistant", state="streaming"),
    ]
    _add(call, alice, chats[0], streaming[0], role="user", content="fine")
    assert call(message_rows.mark_interrupted) == 2
    assert call(message_rows.mark_interrupted) == 0
    for user_id, chat in ((alice, chats[0]), (bob, chats[1])):
        first = call(repo.load_messages, user_id=user_id, conversation_id=chat)[0]
        assert first.state == "interrupted"
        assert first.error == message_rows.INTERRUPTED_ERROR
    last = call(repo.load_messages, user_id=alice, conversation_id=chats[0])[-1]
    assert last.state == "complete" and last.error is None


# --- isolation and ids -----------------------------------------------------------------


def test_other_users_data_behaves_as_missing(call: Call, alice: int, bob: int) -> None:
    chat = _chat(call, alice, "Secret")
    message = _add(call, alice, chat, None, content="private")
    bob_chat = _chat(call, bob)
    attempts: list[tuple[Call, dict[str, Any]]] = [
        (repo.get_conversation, {"conversation_id": chat}),
        (repo.load_messages, {"conversation_id": chat}),
        (repo.rename_conversation, {"conversation_id": chat, "title": "pwned"}),
        (repo.set_title_if_default, {"conversation_id": chat, "title": "pwned"}),
        (repo.update_conversation_settings, {"conversation_id": chat, "model": "pwned"}),
        (repo.delete_conversation, {"conversation_id": chat}),
        (message_rows.add_message, {"conversation_id": chat, "parent_id": message, "role": "user"}),
        (
            message_rows.add_message,
            {"conversation_id": bob_chat, "parent_id": message, "role": "user"},
        ),
        (message_rows.set_feedback, {"message_id": message, "value": -1}),
        (message_rows.complete_message, {"message_id": message, "content": "pwned"}),
        (message_rows.set_current_leaf, {"conversation_id": chat, "message_id": message}),
        (message_rows.set_current_leaf, {"conversation_id": bob_chat, "message_id": message}),
    ]
    for function, kwargs in attempts:
        with pytest.raises(repo.NotFound):
            call(function, user_id=bob, **kwargs)

    assert call(repo.list_conversations, user_id=bob, query="private") == []
    assert call(repo.list_conversations, user_id=bob, query="secret") == []
    assert call(repo.count_conversations, user_id=bob) == 1
    conversation = call(repo.get_conversation, user_id=alice, conversation_id=chat)
    assert (conversation.title, conversation.model) == ("Secret", "")
    assert conversation.current_leaf_id == message
    messages = call(repo.load_messages, user_id=alice, conversation_id=chat)
    assert [(m.content, m.feedback) for m in messages] == [("private", None)]
    assert call(repo.load_messages, user_id=bob, conversation_id=bob_chat) == []


@pytest.mark.parametrize(
    # Fixed values, not uuid4() at import: parallel workers must collect the same test ids.
    "bad_id",
    [
        "",
        "abc",
        "G" * 32,
        "D0DB856C47FC435CA18C0674E69A5B51",
        "' OR 1=1 --",
        "d82900ce-6401-4404-8152-bcc030ebaa4b",
    ],
)
def test_malformed_ids_are_rejected(call: Call, alice: int, bad_id: str) -> None:
    chat = _chat(call, alice)
    attempts: list[tuple[Call, dict[str, Any]]] = [
        (repo.get_conversation, {"conversation_id": bad_id}),
        (repo.load_messages, {"conversation_id": bad_id}),
        (repo.delete_conversation, {"conversation_id": bad_id}),
        (message_rows.add_message, {"conversation_id": bad_id, "parent_id": None, "role": "user"}),
        (message_rows.add_message, {"conversation_id": chat, "parent_id": bad_id, "role": "user"}),
        (message_rows.set_feedback, {"message_id": bad_id, "value": 1}),
        (message_rows.set_current_leaf, {"conversation_id": chat, "message_id": bad_id}),
    ]
    for function, kwargs in attempts:
        with pytest.raises(repo.InvalidId):
            call(function, user_id=alice, **kwargs)


# --- scale -----------------------------------------------------------------------------


def test_many_conversations_list_fast(engine: Engine, call: Call, alice: int) -> None:
    start = datetime.now(UTC) - timedelta(days=30)
    with unit_of_work(session_factory(engine)) as session:
        session.add_all(
            Conversation(
                user_id=alice,
                title=f"chat {index}",
                updated_at=start + timedelta(minutes=index),
            )
            for index in range(10_000)
        )
        session.commit()
    listed = call(repo.list_conversations, user_id=alice)
    assert len(listed) == 200 and listed[0].title == "chat 9999"
    assert call(repo.count_conversations, user_id=alice) == 10_000
    searched = call(repo.list_conversations, user_id=alice, query="chat 42")
    assert searched[0].title == "chat 4299"  # "chat 42" also matches "chat 42xx"


def test_many_messages_load_in_order(engine: Engine, call: Call, alice: int) -> None:
    chat = _chat(call, alice)
    conversation = call(repo.get_conversation, user_id=alice, conversation_id=chat)
    parent: str | None = None
    rows = []
    for index in range(1_000):
        message = Message(
            conversation_id=chat,
            user_id=alice,
            parent_id=parent,
            role="user" if index % 2 == 0 else "assistant",
            content=f"message {index} " + "lorem ipsum " * 20,
            created_at=conversation.created_at + timedelta(milliseconds=index),
        )
        rows.append(message)
        parent = message.id
    with unit_of_work(session_factory(engine)) as session:
        session.add_all(rows)
        session.commit()
    messages = call(repo.load_messages, user_id=alice, conversation_id=chat)
    path = tree.active_path(messages, parent)
    assert len(messages) == 1_000 and len(path) == 1_000
    assert path[-1].id == parent


def test_loading_a_chat_reads_its_own_messages_not_all_of_the_users(sqlite_url: str) -> None:
    """SQLite (no statistics) chose the user_id index for "this conversation's messages of
    this user": opening one chat read every message the user has."""
    from sqlalchemy import event

    engine = make_engine(sqlite_url)
    migrate(engine)
    factory = session_factory(engine)
    with unit_of_work(factory) as session:
        user = repo.ensure_user(session=session, username="ann")
        assert user.id is not None
        chats = [
            repo.create_conversation(session=session, user_id=user.id, title=f"c{i}").id
            for i in range(3)
        ]
        for chat in chats:
            message_rows.add_message(
                session=session,
                user_id=user.id,
                conversation_id=chat,
                parent_id=None,
                role="user",
                content="hi",
            )
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM messages" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    with unit_of_work(factory) as session:
        loaded = repo.load_messages(session=session, user_id=user.id, conversation_id=chats[1])
    event.remove(engine, "before_cursor_execute", record)
    assert [m.conversation_id for m in loaded] == [chats[1]]
    [(statement, parameters)] = seen
    with sqlite3.connect(make_url(sqlite_url).database or "") as raw:
        plan = " ".join(
            row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)
        )
    assert "ix_messages_conversation_id_created_at" in plan, plan


def test_a_database_that_does_not_answer_is_storage_unavailable_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    """unit_of_work stands StorageUnavailable in for SQLAlchemy's OperationalError (so no
    layer above storage/ catches SQLAlchemy's exceptions), after rolling the unit back."""
    engine = make_engine(f"sqlite:///{tmp_path / 'chat.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    with unit_of_work(sessions) as session:
        user_id = repo.ensure_user(session=session, username="alice").id
    assert user_id is not None
    # Another connection holds the write lock: this unit's write waits out the busy timeout.
    blocker = sqlite3.connect(tmp_path / "chat.db", timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageUnavailable) as raised, unit_of_work(sessions) as session:
            session.connection().exec_driver_sql("PRAGMA busy_timeout = 50")
            repo.create_conversation(session=session, user_id=user_id, title="Never saved")
    finally:
        blocker.rollback()
        blocker.close()
    assert "locked" in str(raised.value)
    assert type(raised.value.__cause__).__name__ == "OperationalError"
    with unit_of_work(sessions) as session:
        assert repo.list_conversations(session=session, user_id=user_id) == []
