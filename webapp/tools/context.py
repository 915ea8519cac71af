"""What a running tool may use: data access bound to the calling user, never a DB session."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# (query, limit) -> hits from the calling user's own conversations, newest first:
# [{"conversation_id": str, "title": str, "updated_at": ISO-8601 str, "snippet": str}, ...]
SearchFn = Callable[[str, int], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Per-call context, built by the chat service for the user whose turn it is.

    A tool asks for it by declaring a parameter annotated `ToolContext` (any name); that
    parameter is filled in by Parley and never appears in the JSON schema the model sees.
    """

    conversation_id: str | None = None
    search_conversations: SearchFn | None = None  # bound to the calling user; None if unavailable
    # Values the user set this session for MCP headers' {{user.NAME}} (secrets: never logged).
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
