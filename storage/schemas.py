"""Shapes of the messages' JSON columns: usage, timings, tool calls and tool results.

What Parley writes has every key; imported rows and older ones may lack some (readers use
`.get`). typing_extensions' TypedDict, because pydantic (under SQLModel) needs it on 3.11.
"""

from __future__ import annotations

from typing import Any, NotRequired

from pydantic import PlainSerializer
from typing_extensions import TypedDict

# On a table field, the JSON is dumped as stored: pydantic would drop keys a TypedDict lacks.
AS_STORED = PlainSerializer(lambda value: value)


class StoredUsage(TypedDict, total=False):
    """Token counts of one answer, as the provider reported them or as estimated."""

    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    total_tokens: int
    estimated: bool  # counted from the streamed chunks: the provider sent no usage


class StoredTimings(TypedDict, total=False):
    """How long an answer (or a tool call: only duration_ms) took."""

    duration_ms: int
    ttft_ms: int
    tokens_per_s: float
    tokens_estimated: bool
    reasoning_ms: int


class StoredFunction(TypedDict):
    """The function a tool call names, with its arguments as JSON text."""

    name: str
    arguments: str


class StoredToolCall(TypedDict):
    """One tool call of an assistant message, in the OpenAI shape it is replayed in."""

    id: str
    type: str  # "function"
    function: StoredFunction


class StoredToolResult(TypedDict):
    """One tool result row to store under its assistant message (message_rows.record_tool_round)."""

    tool_call_id: str
    name: str
    content: str
    tool_status: str
    state: NotRequired[str]
    error: NotRequired[str | None]
    timings: NotRequired[StoredTimings]
    attachments: NotRequired[list[dict[str, Any]]]  # images the tool returned (user-image form)


class NextAnswer(TypedDict):
    """The settings of the answer row that follows a round of tool calls."""

    provider: str
    model: str
    parameters: dict[str, Any]
