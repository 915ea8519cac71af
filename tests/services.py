"""Helpers for tests of the services (ChatService and what runs on it), beside the `service`
fixture of tests/conftest.py."""

from __future__ import annotations

from typing import Any

from storage import repository as repo
from webapp.app.chat import ChatService


async def stored_path(service: ChatService, user_id: int, conversation_id: str) -> list[Any]:
    """The conversation's active path as stored: what a reload would show."""

    def work(session: Any) -> list[Any]:
        return repo.load_thread(
            session=session, user_id=user_id, conversation_id=conversation_id
        ).path

    return await service.db(work)


async def local_user(service: ChatService, name: str = "local") -> int:
    """The id of the user `name` (created on first use)."""
    user = await service.db(lambda s: repo.ensure_user(session=s, username=name))
    assert user.id is not None
    return user.id
