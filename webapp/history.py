"""Stored messages → the OpenAI-format messages sent to a provider. Pure; no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from webapp.messages import ChatMessage


class StoredMessage(Protocol):
    """The fields of a stored message this module reads (storage.models.Message has them)."""

    role: str
    content: str
    reasoning: str
    tool_calls: list[dict[str, Any]] | None
    tool_call_id: str | None
    name: str | None
    state: str


def to_provider_messages(
    system_prompt: str, path: Iterable[StoredMessage], *, reasoning_passback: bool = False
) -> list[ChatMessage]:
    """Build the request's `messages` from the active path.

    Reasoning is never sent back, except on tool-call turns for models that require it.
    Assistant answers that failed before producing any text are left out; partial answers
    (stopped, interrupted) are sent as the user saw them.
    """
    messages: list[ChatMessage] = []
    if system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt})
    for message in path:
        if message.role == "user":
            messages.append({"role": "user", "content": message.content})
        elif message.role == "assistant":
            if not message.content and not message.tool_calls:
                continue
            item: ChatMessage = {"role": "assistant", "content": message.content or ""}
            if message.tool_calls:
                item["tool_calls"] = message.tool_calls
                if reasoning_passback and message.reasoning:
                    item["reasoning_content"] = message.reasoning
            messages.append(item)
        elif message.role == "tool":
            call_id = message.tool_call_id or ""
            messages.append({"role": "tool", "tool_call_id": call_id, "content": message.content})
    return messages


def auto_title(text: str, limit: int = 60) -> str:
    """A conversation title from its first message: first line, trimmed at a word."""
    line = " ".join(text.strip().split())
    if len(line) <= limit:
        return line or "New chat"
    cut = line[:limit].rsplit(" ", 1)[0]
    return (cut if len(cut) > limit // 2 else line[:limit]) + "…"
