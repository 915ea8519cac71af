"""Moving along a conversation's message tree: undo, and switching between versions.

Each operation is one unit of work (read and write in one short session), so it cannot
interleave with another tab's turn between the read and the write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import Session

from storage import message_rows, tree
from storage import repository as repo
from storage.db import unit_of_work
from storage.models import Message


class NavigationRefused(Exception):
    """The move is not possible; the message says why."""


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """Where a message sits among its versions (siblings)."""

    index: int  # 0-based position of this message among its versions
    count: int
    role: str
    on_active_path: bool


class Versions:
    """Tree navigation for one user's conversations."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self._session_factory = session_factory

    async def _run(self, work: Callable[[Session], object]) -> object:
        def run() -> object:
            with unit_of_work(self._session_factory) as session:
                return work(session)

        return await asyncio.to_thread(run)

    async def undo(self, *, user_id: int, conversation_id: str) -> str:
        """Step back before the last question (it stays as an earlier version); return its text."""

        def work(session: Session) -> str:
            thread = repo.load_thread(
                session=session, user_id=user_id, conversation_id=conversation_id
            )
            users = [m for m in thread.path if m.role == "user"]
            if not users:
                raise NavigationRefused("There is nothing to undo yet.")
            last = users[-1]
            if last.parent_id is None:
                raise NavigationRefused(
                    "The first question cannot be undone: edit it, or start a new chat."
                )
            message_rows.set_current_leaf(
                session=session,
                user_id=user_id,
                conversation_id=conversation_id,
                message_id=last.parent_id,
            )
            return last.content

        return str(await self._run(work))

    async def switch(
        self, *, user_id: int, conversation_id: str, message_id: str, step: int
    ) -> str:
        """Make a version of `message_id` current: `step` -1/+1 moves to a sibling, 0 keeps
        this one. The conversation continues from that version's latest branch. Returns the
        id of the version now in use."""

        def work(session: Session) -> str:
            messages = repo.load_messages(
                session=session, user_id=user_id, conversation_id=conversation_id
            )
            versions = tree.siblings(messages, message_id)
            position = next((i for i, m in enumerate(versions) if m.id == message_id), None)
            if position is None:
                raise NavigationRefused("That message is not in this conversation any more.")
            index = position + step
            if not 0 <= index < len(versions):
                raise NavigationRefused("There is no version in that direction.")
            target = versions[index]
            message_rows.set_current_leaf(
                session=session,
                user_id=user_id,
                conversation_id=conversation_id,
                message_id=tree.latest_leaf_under(messages, target.id),
            )
            return target.id

        return str(await self._run(work))


def version_info(
    messages: list[Message], message_id: str, active_ids: set[str]
) -> VersionInfo | None:
    """Where `message_id` sits among its versions, or None when it has only one."""
    versions = tree.siblings(messages, message_id)
    if len(versions) < 2:
        return None
    index = next(i for i, m in enumerate(versions) if m.id == message_id)
    return VersionInfo(index, len(versions), versions[index].role, message_id in active_ids)
