"""The user's conversations as the page uses them: open one, list them, rename, delete, and
rate an answer. No Gradio.

Every call is scoped to the user. A conversation that is gone or not theirs raises the
repository's NotFound (InvalidId for a malformed id); a database that does not answer raises
storage.db.StorageUnavailable. Wording is the caller's (webapp/app/error_text.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlmodel import Session

from storage import message_rows
from storage import repository as repo

T = TypeVar("T")
Db = Callable[[Callable[[Session], Any]], Awaitable[Any]]  # one unit of work, off the loop


class Conversations:
    """Reads and small writes of a user's conversations, each one unit of work."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def thread(self, user_id: int, conversation_id: str) -> repo.Thread:
        """The conversation with its messages and the active path through them."""
        thread: repo.Thread = await self._db(
            lambda s: repo.load_thread(session=s, user_id=user_id, conversation_id=conversation_id)
        )
        return thread

    async def listing(self, user_id: int, query: str = "") -> list[tuple[str, str]]:
        """(title, id) of the user's conversations, newest activity first, filtered by text."""
        items: list[repo.ConversationSummary] = await self._db(
            lambda s: repo.list_conversations(session=s, user_id=user_id, query=query)
        )
        return [(item.title, item.id) for item in items]

    async def rename(self, user_id: int, conversation_id: str, title: str) -> None:
        await self._db(
            lambda s: repo.rename_conversation(
                session=s, user_id=user_id, conversation_id=conversation_id, title=title
            )
        )

    async def delete(self, user_id: int, conversation_id: str) -> None:
        """The conversation and its messages (what its answers used stays in the usage)."""
        await self._db(
            lambda s: repo.delete_conversation(
                session=s, user_id=user_id, conversation_id=conversation_id
            )
        )

    async def set_feedback(self, user_id: int, message_id: str, value: int | None) -> None:
        """A like (1), a dislike (-1), or none, on one of the user's answers."""
        await self._db(
            lambda s: message_rows.set_feedback(
                session=s, user_id=user_id, message_id=message_id, value=value
            )
        )
