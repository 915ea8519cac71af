"""Stored messages and live turn progress → Chatbot messages. Pure; no I/O."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from storage.models import Message
from webapp.turn import TurnProgress

WINDOW = 120  # render at most this many stored messages: every streamed update re-renders all

STATE_MARKS = {
    "stopped": "⏹ Stopped by you: the answer above is partial.",
    "interrupted": "⚠ Interrupted: the server stopped while this answer was streaming.",
}

ChatbotMessage = dict[str, Any]


@dataclass(slots=True)
class View:
    """What the Chatbot shows, and which stored message each shown item belongs to."""

    messages: list[ChatbotMessage]
    message_ids: list[str | None]
    feedback: list[str | None] | None = None  # per answer bubble, when known

    def chatbot(self) -> Any:
        """The Chatbot update: messages, and the stored likes when known."""
        if self.feedback is None:
            return self.messages
        return gr.update(value=self.messages, feedback_value=self.feedback)


def _text(role: str, text: str, metadata: dict[str, Any] | None = None) -> ChatbotMessage:
    # A text part (not a bare string) keeps the text exact: Gradio dedents bare strings.
    item: ChatbotMessage = {"role": role, "content": [{"type": "text", "text": text}]}
    if metadata:
        item["metadata"] = metadata
    return item


def stats_line(
    usage: dict[str, Any] | None, timings: dict[str, Any] | None, model: str = ""
) -> str:
    """The figures shown under an answer: tokens, time to first token, tokens/s."""
    parts = []
    if usage:
        parts.append(f"{usage.get('prompt_tokens', 0)} prompt")
        parts.append(f"{usage.get('completion_tokens', 0)} completion")
        if usage.get("reasoning_tokens"):
            parts.append(f"{usage['reasoning_tokens']} reasoning tokens")
        else:
            parts[-1] += " tokens"
    if timings:
        if "ttft_ms" in timings:
            parts.append(f"first token {timings['ttft_ms'] / 1000:.2f} s")
        if "tokens_per_s" in timings:
            approx = "≈" if timings.get("tokens_estimated") else ""
            parts.append(f"{approx}{timings['tokens_per_s']:g} tok/s")
    if model:
        parts.append(model)
    return " · ".join(parts)


def _thinking(reasoning: str, *, pending: bool, seconds: float | None) -> ChatbotMessage:
    metadata: dict[str, Any] = {"title": "Thinking", "status": "pending" if pending else "done"}
    if seconds is not None:
        metadata["duration"] = round(seconds, 1)
    return _text("assistant", reasoning, metadata)


def _answer_items(
    *,
    content: str,
    reasoning: str,
    state: str,
    error: str | None,
    stats: str,
    thinking_pending: bool = False,
    thinking_seconds: float | None = None,
    header: str = "",
) -> list[ChatbotMessage]:
    items = []
    if header:
        items.append(_text("assistant", f"**{header}**"))
    if reasoning:
        items.append(_thinking(reasoning, pending=thinking_pending, seconds=thinking_seconds))
    if content:
        items.append(_text("assistant", content))
    mark = STATE_MARKS.get(state, "")
    if state == "error":
        mark = f"⚠ {error or 'This answer failed; use Retry to try again.'}"
    elif error and state == "complete":
        mark = f"ⓘ {error}"
    if mark:
        items.append(_text("assistant", mark))
    if not items and state == "streaming":
        items.append(_text("assistant", "…"))
    if stats:
        items.append(_text("assistant", f"<small>{html.escape(stats)}</small>"))
    return items


def _stored_answer(message: Message, header: str = "") -> list[ChatbotMessage]:
    seconds = (message.timings or {}).get("reasoning_ms")
    return _answer_items(
        content=message.content,
        reasoning=message.reasoning,
        state=message.state,
        error=message.error,
        stats=stats_line(message.usage, message.timings, message.model)
        if message.state != "streaming" else "",
        thinking_seconds=seconds / 1000 if seconds is not None else None,
        header=header,
    )


def render_path(
    path: Sequence[Message], choice_groups: dict[str, list[Message]] | None = None
) -> View:
    """Render the stored active path (windowed to the most recent messages)."""
    view = View([], [])
    hidden = max(0, len(path) - WINDOW)
    if hidden:
        view.messages.append(_text("assistant", f"… {hidden} earlier messages not shown."))
        view.message_ids.append(None)
    for message in path[hidden:]:
        group = (choice_groups or {}).get(message.id)
        if message.role == "user":
            items = [_text("user", message.content)]
        elif message.role == "assistant" and group and len(group) > 1:
            items = []
            for sibling in group:
                kept = "✓ kept" if sibling.id == message.id else "not kept"
                header = f"Choice {sibling.choice_index + 1} of {len(group)} ({kept})"
                items += _stored_answer(sibling, header)
                view.messages += items
                view.message_ids += [sibling.id] * len(items)
                items = []
            continue
        elif message.role == "assistant":
            items = _stored_answer(message)
        else:
            continue
        view.messages += items
        view.message_ids += [message.id] * len(items)
    return view


def render_live(
    prior: View,
    progress: TurnProgress,
    assistant_ids: Sequence[str],
    *,
    state: str,
    error: str,
    model: str,
) -> View:
    """The stored view plus the turn being streamed (every choice when n > 1)."""
    view = View(list(prior.messages), list(prior.message_ids))
    done = state != "streaming"
    count = len(assistant_ids)
    for index, message_id in enumerate(assistant_ids):
        choice = progress.choices[index]
        stats = ""
        if done:
            stats = stats_line(progress.usage_dict() if index == 0 else None,
                               progress.timings(), model)
        header = ""
        if count > 1:
            header = f"Choice {index + 1} of {count}" + (" (✓ kept)" if index == 0 else "")
        items = _answer_items(
            content=choice.content,
            reasoning=choice.reasoning,
            state=state,
            error=error if index == 0 else "",
            stats=stats,
            thinking_pending=progress.is_thinking(index) and not done,
            thinking_seconds=progress.thinking_seconds(index),
            header=header,
        )
        if progress.retry_note and not choice.content and not choice.reasoning and not done:
            items = [_text("assistant", f"⏳ {progress.retry_note}")]
        view.messages += items
        view.message_ids += [message_id] * len(items)
    return view


FEEDBACK_LABELS = {1: "Like", -1: "Dislike"}


def feedback_values(view: View, feedback: dict[str, int | None]) -> list[str | None]:
    """Stored likes for the Chatbot's `feedback_value`: one entry per answer bubble.

    Gradio groups consecutive assistant items into one bubble and reports a like against the
    bubble's last item, so the bubble's last item names the stored answer.
    """
    values: list[str | None] = []
    for index, item in enumerate(view.messages):
        last_of_bubble = index + 1 == len(view.messages) or (
            view.messages[index + 1]["role"] != item["role"])
        if item["role"] == "assistant" and last_of_bubble:
            message_id = view.message_ids[index]
            values.append(FEEDBACK_LABELS.get(feedback.get(message_id or "") or 0))
    return values
