"""Stored messages → the OpenAI-format messages sent to a provider. Pure; no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar

from storage.schemas import StoredToolCall
from webapp.core.attachments import content_parts, tool_images_message
from webapp.core.messages import ChatMessage


class Identified(Protocol):
    """A stored message with an id (for pairing answers with their tool results)."""

    id: str
    role: str
    tool_calls: list[StoredToolCall] | None
    tool_call_id: str | None


M = TypeVar("M", bound=Identified)


class StoredMessage(Protocol):
    """The fields of a stored message this module reads (storage.models.Message has them)."""

    role: str
    content: str
    reasoning: str
    tool_calls: list[StoredToolCall] | None
    tool_call_id: str | None
    name: str | None
    state: str
    attachments: list[dict[str, Any]] | None


def to_provider_messages(
    system_prompt: str,
    path: Iterable[StoredMessage],
    *,
    reasoning_passback: bool = False,
    attachments: bool = True,
    tool_images: bool = False,
) -> list[ChatMessage]:
    """Build the request's `messages` from the active path.

    Reasoning is never sent back, except on tool-call turns for models that require it.
    Assistant answers that failed before producing any text are left out; partial answers
    (stopped, interrupted) are sent as the user saw them. A user message with attachments
    becomes a list of content parts; with `attachments=False` (a model known to take no images)
    they are left out and only the text is sent. With `tool_images` (a model known to take
    images), the images tools returned follow their round's tool messages as a user message;
    without, the model has only the results' notes about them.
    """
    messages: list[ChatMessage] = []
    if system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt})
    path = list(path)
    answered = _answered_calls(path)
    images: list[tuple[str, list[dict[str, Any]]]] = []  # of the tool messages just added
    for message in path:
        if images and message.role != "tool":
            _add_tool_images(messages, images)
        if message.role == "user":
            if attachments and message.attachments:
                parts = content_parts(message.content, message.attachments)
                messages.append({"role": "user", "content": parts})
            else:
                messages.append({"role": "user", "content": message.content})
        elif message.role == "assistant":
            calls = [c for c in message.tool_calls or [] if _call_id(c) in answered]
            if calls != list(message.tool_calls or []):
                calls = []  # some results are missing: the provider would refuse the calls
            if not message.content and not calls:
                continue
            item: ChatMessage = {"role": "assistant", "content": message.content or ""}
            if calls:
                item["tool_calls"] = calls
                if reasoning_passback and message.reasoning:
                    item["reasoning_content"] = message.reasoning
            messages.append(item)
        elif message.role == "tool" and message.tool_call_id in answered:
            messages.append(
                {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
            )
            if tool_images and message.attachments:
                images.append((message.name or "", message.attachments))
    _add_tool_images(messages, images)
    return messages


def _add_tool_images(
    messages: list[ChatMessage], images: list[tuple[str, list[dict[str, Any]]]]
) -> None:
    """Add the round's tool images as one user message, and empty `images`."""
    shown = tool_images_message(images)
    if shown is not None:
        messages.append(shown)
    images.clear()


def _call_id(call: Any) -> str | None:
    return call.get("id") if isinstance(call, dict) else None


def _answered_calls(path: list[StoredMessage]) -> set[str]:
    """Ids of tool calls whose assistant message is followed by a result for every call."""
    answered: set[str] = set()
    for position, message in enumerate(path):
        if message.role != "assistant" or not message.tool_calls:
            continue
        ids = {_call_id(c) for c in message.tool_calls}
        results = set()
        for later in path[position + 1 :]:
            if later.role != "tool":
                break
            results.add(later.tool_call_id)
        if None not in ids and ids <= results:
            answered |= {i for i in ids if i is not None}
    return answered


def tool_results_by_answer(path: Sequence[M]) -> dict[str, dict[str, M]]:
    """For each answer with tool calls, its results: the tool rows right after it, by call id.

    Matched per answer, not across the conversation: servers that send no call ids get
    `call_0` in every round, so a conversation-wide match would show one round's result twice.
    """
    found: dict[str, dict[str, M]] = {}
    current: dict[str, M] | None = None
    for message in path:
        if message.role == "assistant":
            current = found.setdefault(message.id, {}) if message.tool_calls else None
        elif message.role == "tool" and current is not None and message.tool_call_id:
            current.setdefault(message.tool_call_id, message)
        elif message.role != "tool":
            current = None
    return found


def auto_title(text: str, limit: int = 60) -> str:
    """A conversation title from its first message: first line, trimmed at a word."""
    line = " ".join(text.strip().split())
    if len(line) <= limit:
        return line or "New chat"
    cut = line[:limit].rsplit(" ", 1)[0]
    return (cut if len(cut) > limit // 2 else line[:limit]) + "…"
