"""The tool side of a turn: which tools are offered, how calls run, how results are stored.

Binds the registry, executor and approvals to one user's turn for the engine, and turns a
round's tool calls into the rows the repository stores. Holds no per-user data between turns.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from sqlmodel import Session

from storage import repository as repo
from storage.schemas import StoredToolCall, StoredToolResult
from webapp.config import Settings
from webapp.core.engine import ToolSetup
from webapp.core.messages import ToolCall, ToolResult
from webapp.core.turn import ToolCallView
from webapp.tools.approval import Approvals
from webapp.tools.context import SearchFn, ToolContext
from webapp.tools.execute import ToolExecutor
from webapp.tools.registry import Tool, ToolRegistry
from webapp.tools.selection import Selection, ToolSelectionError, select

T = TypeVar("T")
Db = Callable[[Callable[[Session], Any]], Awaitable[Any]]

UNFINISHED_TEXT = {
    "cancelled": "The user stopped the turn before this call finished; it has no result.",
    "not_run": "This call was not run (the turn ended first).",
}


class ToolTurns:
    """Tools for chat turns: selection, execution bound to a user, approvals."""

    def __init__(
        self,
        settings: Settings,
        registry: ToolRegistry,
        db: Db,
        executor: ToolExecutor | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self._db = db
        self._executor = executor or ToolExecutor(
            registry,
            timeout_s=settings.tool_timeout_s,
            max_result_chars=settings.tool_max_result_chars,
        )
        self.approvals = Approvals()

    def select(
        self, names: tuple[str, ...], tool_choice: str, model: str, supported: bool | None
    ) -> Selection:
        """Check the turn's tools and tool_choice; raise ToolSelectionError with the fix."""
        selection = select(self.registry, names, tool_choice)
        if selection.names and supported is False:
            raise ToolSelectionError(
                f"{model} does not take tools: untick them under Tools, or pick another model."
            )
        return selection

    def setup(
        self,
        selection: Selection,
        user_id: int,
        conversation_id: str,
        *,
        interactive: bool,
        reasoning_passback: bool,
        credentials: Mapping[str, str] | None = None,
        images: bool = False,
    ) -> ToolSetup | None:
        """How the engine runs this turn's tools, bound to this user and conversation;
        `images`: the model takes images, so the images tools return are sent to it."""
        if not selection.names:
            return None
        context = ToolContext(
            conversation_id=conversation_id,
            search_conversations=self._search_for(user_id),
            credentials=dict(credentials or {}),
        )
        # tool_choice "none" sends the tools (so the model sees them) but allows no call.
        offered = frozenset() if selection.tool_choice == "none" else frozenset(selection.names)

        async def run(call: ToolCall) -> ToolResult:
            return await self._executor.run(call, context, offered)

        def needs_approval(name: str) -> bool:
            tool = self.registry.get(name)
            return tool is not None and tool.needs_approval

        approve = None
        if interactive:
            approve = self.approvals.asker(
                user_id, conversation_id, self.settings.tool_approval_timeout_s
            )
        return ToolSetup(
            schemas=[tool.schema() for tool in self.registry.tools(selection.names)],
            run=run,
            offered=offered,
            needs_approval=needs_approval,
            tool_choice=selection.tool_choice,
            max_rounds=self.settings.tool_max_rounds,
            approve=approve,
            reasoning_passback=reasoning_passback,
            images=images,
        )

    def _search_for(self, user_id: int) -> SearchFn:
        """Searching the user's own conversations, for the tools' context."""

        async def search(query: str, limit: int) -> list[dict[str, Any]]:
            hits: list[dict[str, Any]] = await self._db(
                lambda s: repo.search_snippets(session=s, user_id=user_id, query=query, limit=limit)
            )
            return hits

        return search

    def unattended(self) -> list[Tool]:
        """The tools a caller with no person to approve calls may run (the MCP server's)."""
        return [tool for tool in self.registry.tools() if not tool.needs_approval]

    async def run_unattended(self, user_id: int, name: str, arguments: str) -> ToolResult:
        """Run one call outside any turn, for the user (no conversation; a tool that needs
        approval is refused like an unknown one); never raises for tool-side problems."""
        offered = frozenset(tool.name for tool in self.unattended())
        context = ToolContext(search_conversations=self._search_for(user_id))
        call = ToolCall(id=f"call_{uuid.uuid4().hex[:12]}", name=name, arguments=arguments)
        return await self._executor.run(call, context, offered)


def stored_calls(calls: list[ToolCall]) -> list[StoredToolCall] | None:
    """Tool calls in the OpenAI shape they are stored and replayed in."""
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ] or None


def tool_rows(
    views: list[ToolCallView], calls: list[StoredToolCall] | None, missing: str
) -> list[StoredToolResult]:
    """One stored result per call, in call order; calls without a result get `missing`."""
    by_id = {view.call.id: view for view in views}
    rows: list[StoredToolResult] = []
    for call in calls or []:
        view = by_id.get(call["id"])
        result = view.result if view is not None else None
        if result is None:
            rows.append(
                {
                    "tool_call_id": call["id"],
                    "name": call["function"]["name"],
                    "content": UNFINISHED_TEXT[missing],
                    "tool_status": missing,
                    "state": "stopped" if missing == "cancelled" else "complete",
                }
            )
            continue
        row: StoredToolResult = {
            "tool_call_id": result.call_id,
            "name": result.name,
            "content": result.content,
            "tool_status": result.status,
            "error": result.error,
            "timings": {"duration_ms": result.duration_ms},
        }
        if result.images:
            row["attachments"] = list(result.images)
        rows.append(row)
    return rows
