"""Tool calls waiting for a person's approval, keyed by user and conversation.

The streaming turn awaits a decision; a separate UI event (Approve / Deny) resolves it. Both
run on the server's event loop. A user can only decide on calls of their own conversations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from webapp.core.messages import ToolCall

Owner = tuple[int, str]  # (user_id, conversation_id)


@dataclass(slots=True)
class _Pending:
    call: ToolCall
    decision: asyncio.Future[bool]


class Approvals:
    """Pending approvals of every running turn; holds nothing once a turn ends."""

    def __init__(self) -> None:
        self._pending: dict[Owner, list[_Pending]] = {}

    def asker(
        self, user_id: int, conversation_id: str, timeout_s: float
    ) -> Callable[[ToolCall], Awaitable[bool | None]]:
        """A function the engine calls to ask; it returns True, False, or None on timeout."""

        async def ask(call: ToolCall) -> bool | None:
            owner = (user_id, conversation_id)
            item = _Pending(call, asyncio.get_running_loop().create_future())
            self._pending.setdefault(owner, []).append(item)
            try:
                async with asyncio.timeout(timeout_s):
                    return await item.decision
            except TimeoutError:
                return None
            finally:
                queue = self._pending.get(owner, [])
                if item in queue:
                    queue.remove(item)
                if not queue:
                    self._pending.pop(owner, None)

        return ask

    def pending(self, user_id: int, conversation_id: str) -> list[ToolCall]:
        """Calls awaiting a decision in this conversation, oldest first."""
        return [item.call for item in self._pending.get((user_id, conversation_id), [])]

    def resolve(
        self, user_id: int, conversation_id: str, approved: bool, call_id: str | None = None
    ) -> ToolCall | None:
        """Decide on one call (the oldest, or `call_id`); return it, or None if none waits."""
        for item in self._pending.get((user_id, conversation_id), []):
            if not item.decision.done() and (call_id is None or item.call.id == call_id):
                item.decision.set_result(approved)
                return item.call
        return None
