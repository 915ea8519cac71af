"""Undo and version switching on a real SQLite file (webapp/app/versions.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storage import message_rows
from storage import repository as repo
from storage.db import make_engine, migrate, session_factory, unit_of_work
from webapp.app.versions import NavigationRefused, Versions, version_info


@pytest.fixture
def sessions(tmp_path: Path) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


def build(sessions: Any) -> tuple[int, str, dict[str, str]]:
    """q1 → a1; q2 → a2, a2b (regenerated, current); returns user, conversation, ids."""
    with unit_of_work(sessions) as s:
        uid = repo.ensure_user(session=s, username="alice").id
        chat = repo.create_conversation(session=s, user_id=uid).id
        ids: dict[str, str] = {}
        parent = None
        for name, role in (
            ("q1", "user"),
            ("a1", "assistant"),
            ("q2", "user"),
            ("a2", "assistant"),
        ):
            parent = ids[name] = message_rows.add_message(
                session=s,
                user_id=uid,
                conversation_id=chat,
                parent_id=parent,
                role=role,
                content=name,
            ).id
        ids["a2b"] = message_rows.add_message(
            session=s,
            user_id=uid,
            conversation_id=chat,
            parent_id=ids["q2"],
            role="assistant",
            content="a2b",
        ).id
    return uid, chat, ids


def path_contents(sessions: Any, uid: int, chat: str) -> list[str]:
    with unit_of_work(sessions) as s:
        thread = repo.load_thread(session=s, user_id=uid, conversation_id=chat)
        return [m.content for m in thread.path]


async def test_switching_versions_changes_the_path(sessions: Any) -> None:
    uid, chat, ids = build(sessions)
    versions = Versions(sessions)
    assert path_contents(sessions, uid, chat) == ["q1", "a1", "q2", "a2b"]
    target = await versions.switch(
        user_id=uid, conversation_id=chat, message_id=ids["a2b"], step=-1
    )
    assert target == ids["a2"]
    assert path_contents(sessions, uid, chat) == ["q1", "a1", "q2", "a2"]
    with pytest.raises(NavigationRefused, match="no version in that direction"):
        await versions.switch(user_id=uid, conversation_id=chat, message_id=ids["a2"], step=-1)
    # step 0: keep a version that is not in use ("Use this version")
    await versions.switch(user_id=uid, conversation_id=chat, message_id=ids["a2b"], step=0)
    assert path_contents(sessions, uid, chat) == ["q1", "a1", "q2", "a2b"]


async def test_undo_steps_back_and_keeps_the_question(sessions: Any) -> None:
    uid, chat, ids = build(sessions)
    versions = Versions(sessions)
    assert await versions.undo(user_id=uid, conversation_id=chat) == "q2"
    assert path_contents(sessions, uid, chat) == ["q1", "a1"]
    with unit_of_work(sessions) as s:
        assert len(repo.load_messages(session=s, user_id=uid, conversation_id=chat)) == 5
    with pytest.raises(NavigationRefused, match="first question cannot be undone"):
        await versions.undo(user_id=uid, conversation_id=chat)


async def test_another_user_cannot_navigate(sessions: Any) -> None:
    uid, chat, ids = build(sessions)
    with unit_of_work(sessions) as s:
        mallory = repo.ensure_user(session=s, username="mallory").id
    versions = Versions(sessions)
    with pytest.raises(repo.NotFound):
        await versions.undo(user_id=mallory, conversation_id=chat)
    with pytest.raises((repo.NotFound, NavigationRefused)):
        await versions.switch(user_id=mallory, conversation_id=chat, message_id=ids["a2b"], step=-1)
    assert path_contents(sessions, uid, chat) == ["q1", "a1", "q2", "a2b"]


def test_version_info(sessions: Any) -> None:
    uid, chat, ids = build(sessions)
    with unit_of_work(sessions) as s:
        messages = repo.load_messages(session=s, user_id=uid, conversation_id=chat)
    active = {ids["q1"], ids["a1"], ids["q2"], ids["a2b"]}
    info = version_info(messages, ids["a2"], active)
    assert info is not None
    assert (info.index, info.count, info.role, info.on_active_path) == (0, 2, "assistant", False)
    assert version_info(messages, ids["q1"], active) is None
