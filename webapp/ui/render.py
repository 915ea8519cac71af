"""Stored messages and live turn progress → Chatbot messages. Pure; no I/O.

Every text shown goes through `text_item`, which runs webapp/ui/safe_markup.py on it: a shared
conversation shows the user's messages, the answers and tool results to another viewer.
"""

from __future__ import annotations

import html
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from storage.models import Message
from storage.schemas import StoredTimings, StoredUsage
from webapp.app.error_text import user_message
from webapp.core import attachments
from webapp.core.history import tool_results_by_answer
from webapp.core.markdown_text import fenced
from webapp.core.messages import ToolCall
from webapp.core.turn import ToolCallView, TurnProgress
from webapp.i18n import t
from webapp.ui.safe_markup import safe_markdown
from webapp.ui.session import SHOWN_MESSAGES

# The chat shows the last WINDOW stored messages; "Show earlier" adds WINDOW more each time.
# The shown history is rendered when a conversation opens and when a turn ends (the live
# answer streams apart from it, webapp/ui/live_view.py).
WINDOW = SHOWN_MESSAGES

STATE_MARKS = {
    "stopped": "⏹ Stopped by you: the answer above is partial.",
    "interrupted": "⚠ Interrupted: the server stopped while this answer was streaming.",
}

ChatbotMessage = dict[str, Any]
TOOL_SHOWN_CHARS = 5000  # a tool result longer than this is cut in the chat (stored whole)
TOOL_LABELS = {
    "running": "running…",
    "awaiting_approval": "awaiting your approval",
    "done": "done",
    "error": "error",
    "timeout": "timed out",
    "denied": "denied",
    "cancelled": "cancelled",
    "not_run": "not run",
}


@dataclass(slots=True)
class View:
    """What the Chatbot shows, and which stored message each shown item belongs to."""

    messages: list[ChatbotMessage]
    message_ids: list[str | None]
    feedback: list[str | None] | None = None  # per answer bubble, when known
    hidden: int = 0  # stored messages before the shown window ("Show earlier" reveals them)

    def chatbot(self) -> Any:
        """The Chatbot update: messages, and the stored likes when known."""
        if self.feedback is None:
            return self.messages
        return gr.update(value=self.messages, feedback_value=self.feedback)


_CONVERTER = gr.Chatbot(render=False)  # only converts messages (Chatbot.postprocess)
# Converted items by their content: a stored message's items are converted when its chat first
# opens, then reused by every later turn, reload and tab (the same text and marks make the
# same item). Gradio neither mutates nor keeps its own Message objects apart from the value.
SETTLED_ITEMS = 8192
_settled: OrderedDict[tuple[Any, ...], list[Any]] = OrderedDict()


def _item_key(item: ChatbotMessage) -> tuple[Any, ...] | None:
    content = item.get("content")
    metadata = item.get("metadata") or {}
    if not (
        isinstance(content, list)
        and len(content) == 1
        and isinstance(content[0], dict)
        and content[0].get("type") == "text"
        and len(content[0]) == 2
    ):
        return None  # only the text items render_path makes are cached
    if not all(isinstance(v, str | int | float | None) for v in metadata.values()):
        return None
    return item["role"], content[0]["text"], tuple(sorted(metadata.items()))


def _converted(item: ChatbotMessage) -> list[Any]:
    key = _item_key(item)
    if key is None:
        return list(_CONVERTER.postprocess([item]).root)  # type: ignore[list-item]
    hit = _settled.get(key)
    if hit is not None:
        _settled.move_to_end(key)
        return hit
    converted = list(_CONVERTER.postprocess([item]).root)  # type: ignore[list-item]
    _settled[key] = converted
    if len(_settled) > SETTLED_ITEMS:
        _settled.popitem(last=False)
    return converted


def settled(view: View) -> View:
    """The view with its messages already in Gradio's Chatbot form.

    Every Chatbot update runs Chatbot.postprocess over the whole history (pydantic models
    for every message) unless the messages are Gradio's own Message objects, which it passes
    through untouched. The stored history is converted here, each item once (`_converted`),
    so a turn in a 40-turn chat converts only its own question and answer.
    """
    messages: list[Any] = []
    ids: list[str | None] = []
    for message, message_id in zip(view.messages, view.message_ids, strict=True):
        converted = _converted(message)
        messages += converted
        ids += [message_id] * len(converted)
    return View(messages, ids, view.feedback, view.hidden)


def text_item(role: str, text: str, metadata: dict[str, Any] | None = None) -> ChatbotMessage:
    """A Chatbot item of model or user text (and a block title), made safe to render."""
    if metadata and "title" in metadata:
        metadata = {**metadata, "title": safe_markdown(str(metadata["title"]))}
    return _markup(role, safe_markdown(text), metadata)


def _markup(role: str, text: str, metadata: dict[str, Any] | None = None) -> ChatbotMessage:
    """A Chatbot item of markup Parley wrote itself (attachment thumbnails), as it is."""
    # A text part (not a bare string) keeps the text exact: Gradio dedents bare strings.
    item: ChatbotMessage = {"role": role, "content": [{"type": "text", "text": text}]}
    if metadata:
        item["metadata"] = metadata
    return item


def stats_line(
    usage: StoredUsage | None,
    timings: StoredTimings | None,
    model: str = "",
    lang: str = "en",
) -> str:
    """The figures shown under an answer: tokens, time to first token, tokens/s."""
    parts = []
    if usage and usage.get("estimated"):
        if usage.get("prompt_tokens"):
            parts.append(t("≈{tokens} prompt", lang).format(tokens=usage["prompt_tokens"]))
        parts.append(
            t("≈{tokens} completion tokens (estimated)", lang).format(
                tokens=usage.get("completion_tokens", 0)
            )
        )
    elif usage:
        parts.append(t("{tokens} prompt", lang).format(tokens=usage.get("prompt_tokens", 0)))
        completion = usage.get("completion_tokens", 0)
        if usage.get("reasoning_tokens"):
            parts.append(t("{tokens} completion", lang).format(tokens=completion))
            parts.append(
                t("{tokens} reasoning tokens", lang).format(tokens=usage["reasoning_tokens"])
            )
        else:
            parts.append(t("{tokens} completion tokens", lang).format(tokens=completion))
    if timings:
        if "ttft_ms" in timings:
            parts.append(
                t("first token {seconds} s", lang).format(
                    seconds=f"{timings['ttft_ms'] / 1000:.2f}"
                )
            )
        if "tokens_per_s" in timings:
            approx = "≈" if timings.get("tokens_estimated") else ""
            parts.append(
                approx + t("{rate} tok/s", lang).format(rate=f"{timings['tokens_per_s']:g}")
            )
    if model:
        parts.append(model)
    return " · ".join(parts)


def _thinking(
    reasoning: str, *, pending: bool, seconds: float | None, lang: str = "en"
) -> ChatbotMessage:
    metadata: dict[str, Any] = {
        "title": t("Thinking", lang),
        "status": "pending" if pending else "done",
    }
    if seconds is not None:
        metadata["duration"] = round(seconds, 1)
    return text_item("assistant", reasoning, metadata)


def pretty_arguments(arguments: str) -> str:
    """Pretty JSON when the arguments parse, else the raw text."""
    try:
        return json.dumps(json.loads(arguments or "{}"), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments


def tool_item(
    call: ToolCall,
    status: str,
    result: str | None,
    duration_ms: int | None,
    lang: str = "en",
    images: Sequence[attachments.Attachment] = (),
) -> ChatbotMessage:
    """One collapsible block for a tool call: name, arguments, result (and the images the tool
    returned, as thumbnails), duration, status."""
    parts = [t("**Arguments**", lang), fenced(pretty_arguments(call.arguments), "json")]
    if status == "awaiting_approval":
        parts.append(t("Approve or deny this call with the buttons under the chat.", lang))
    if result is not None:
        shown = result
        if len(result) > TOOL_SHOWN_CHARS:
            shown = (
                result[:TOOL_SHOWN_CHARS]
                + f"\n… ({len(result) - TOOL_SHOWN_CHARS:,} more characters stored)"
            )
        parts += [t("**Result**", lang), fenced(shown)]
        if images:
            parts.append(attachments.markdown(images))
    icon = "⚠" if status in ("error", "timeout") else "🛠"
    metadata: dict[str, Any] = {
        "title": f"{icon} {call.name or t('(unnamed tool)', lang)} · "
        f"{t(TOOL_LABELS.get(status, status), lang)}",
        "status": "pending" if status in ("running", "awaiting_approval") else "done",
    }
    if duration_ms is not None and result is not None:
        metadata["duration"] = round(duration_ms / 1000, 2)
    return text_item("assistant", "\n\n".join(parts), metadata)


def _live_tool_items(views: Sequence[ToolCallView], lang: str) -> list[ChatbotMessage]:
    return [
        tool_item(
            v.call,
            v.status,
            v.result.content if v.result else None,
            v.result.duration_ms if v.result else None,
            lang,
            v.result.images if v.result else (),
        )
        for v in views
    ]


def _stored_tool_items(
    message: Message, results: dict[str, Message], lang: str
) -> list[ChatbotMessage]:
    items = []
    for raw in message.tool_calls or []:
        function = raw.get("function") or {}
        call = ToolCall(
            str(raw.get("id", "")),
            str(function.get("name", "")),
            str(function.get("arguments", "")),
        )
        row = results.get(call.id)
        if row is None:
            status = "running" if message.state == "streaming" else "not_run"
            items.append(tool_item(call, status, None, None, lang))
        else:
            duration = (row.timings or {}).get("duration_ms")
            items.append(
                tool_item(
                    call,
                    row.tool_status or "done",
                    row.content,
                    duration,
                    lang,
                    row.attachments or (),
                )
            )
    return items


def answer_items(
    *,
    content: str,
    reasoning: str,
    state: str,
    error: str | None,
    stats: str,
    thinking_pending: bool = False,
    thinking_seconds: float | None = None,
    header: str = "",
    tools: list[ChatbotMessage] | None = None,
    lang: str = "en",
) -> list[ChatbotMessage]:
    items = []
    if header:
        items.append(text_item("assistant", f"**{header}**"))
    if reasoning:
        items.append(
            _thinking(reasoning, pending=thinking_pending, seconds=thinking_seconds, lang=lang)
        )
    if content:
        items.append(text_item("assistant", content))
    items += tools or []
    mark = t(STATE_MARKS.get(state, ""), lang)
    if state == "error":
        mark = f"⚠ {error or t('This answer failed; use Retry to try again.', lang)}"
    elif error and state == "complete":
        mark = f"ⓘ {error}"
    if mark:
        items.append(text_item("assistant", mark))
    if not items and state == "streaming":
        items.append(text_item("assistant", "…"))
    if stats:
        items.append(text_item("assistant", f"<small>{html.escape(stats)}</small>"))
    return items


def _stored_answer(
    message: Message, header: str = "", results: dict[str, Message] | None = None, lang: str = "en"
) -> list[ChatbotMessage]:
    seconds = (message.timings or {}).get("reasoning_ms")
    # A round that asked for tools shows no figures: they appear under the final answer.
    show_stats = message.state != "streaming" and not message.tool_calls
    return answer_items(
        content=message.content,
        reasoning=message.reasoning,
        state=message.state,
        error=user_message(message.error, lang),
        stats=(
            stats_line(message.usage, message.timings, message.model, lang) if show_stats else ""
        ),
        thinking_seconds=seconds / 1000 if seconds is not None else None,
        header=header,
        tools=_stored_tool_items(message, results or {}, lang),
        lang=lang,
    )


def render_path(
    path: Sequence[Message],
    choice_groups: dict[str, list[Message]] | None = None,
    lang: str = "en",
    *,
    window: int = WINDOW,
    note: bool = True,
) -> View:
    """Render the stored active path, windowed to its last `window` messages; with `note`,
    a line says how many earlier ones are not shown (the chat page has a button instead)."""
    hidden = max(0, len(path) - window)
    while hidden and path[hidden].role != "user":  # the window starts at a question
        hidden -= 1
    view = View([], [], hidden=hidden)
    results = tool_results_by_answer(path)
    if hidden and note:
        view.messages.append(
            text_item(
                "assistant", t("… {count} earlier messages not shown.", lang).format(count=hidden)
            )
        )
        view.message_ids.append(None)
    for message in path[hidden:]:
        group = (choice_groups or {}).get(message.id)
        if message.role == "user":
            items = [text_item("user", message.content)] if message.content else []
            if message.attachments:
                # The pictures are an item of their own, after the text and with no message id:
                # Gradio sends one edit per item of a bubble, first to last, so the text's edit
                # runs and the pictures' unchanged one is ignored.
                view.messages += items
                view.message_ids += [message.id] * len(items)
                items = []
                view.messages.append(_markup("user", attachments.markdown(message.attachments)))
                view.message_ids.append(None)
        elif message.role == "assistant" and group and len(group) > 1:
            items = []
            for sibling in group:
                kept = t("✓ kept" if sibling.id == message.id else "not kept", lang)
                header = (
                    t("Choice {index} of {count}", lang).format(
                        index=sibling.choice_index + 1, count=len(group)
                    )
                    + f" ({kept})"
                )
                items += _stored_answer(sibling, header, lang=lang)
                view.messages += items
                view.message_ids += [sibling.id] * len(items)
                items = []
            continue
        elif message.role == "assistant":
            items = _stored_answer(message, results=results.get(message.id, {}), lang=lang)
        else:
            continue
        view.messages += items
        view.message_ids += [message.id] * len(items)
    return view


# Gradio's sanitizer keeps class names but drops data-* attributes: the id goes in a class.
LIVE_PLACEHOLDER = (
    '<div class="parley-live parley-live-{conversation_id} parley-live-lang-{lang}"></div>'
)


def render_waiting(
    prior: View, conversation_id: str, assistant_ids: Sequence[str], lang: str = "en"
) -> View:
    """The stored view plus a placeholder the page fills with the live answer.

    While a run streams, its text reaches the page through webapp/live_view.py (appended,
    never re-sent), so the Chatbot is written only twice per turn: this, and the end.
    """
    view = View(list(prior.messages), list(prior.message_ids))
    live = LIVE_PLACEHOLDER.format(
        conversation_id=html.escape(conversation_id, quote=True),
        lang="zh" if lang == "zh" else "en",
    )
    view.messages.append(_markup("assistant", live))
    view.message_ids.append(assistant_ids[0] if assistant_ids else None)
    return view


def render_live(
    prior: View,
    progress: TurnProgress,
    assistant_ids: Sequence[str],
    *,
    state: str,
    error: str,
    model: str,
    lang: str = "en",
) -> View:
    """The stored view plus the turn being streamed (every choice when n > 1)."""
    view = View(list(prior.messages), list(prior.message_ids))
    done = state != "streaming"
    count = len(assistant_ids)
    for past in progress.rounds:  # earlier rounds of a tool-using turn
        items = answer_items(
            content=past.content,
            reasoning=past.reasoning,
            state="complete",
            error=None,
            stats="",
            thinking_seconds=past.thinking_s,
            tools=_live_tool_items(past.tools, lang),
            lang=lang,
        )
        view.messages += items
        view.message_ids += [assistant_ids[0]] * len(items)
    for index, message_id in enumerate(assistant_ids):
        choice = progress.choices[index]
        stats = ""
        if done:
            stats = stats_line(
                progress.usage_dict() if index == 0 else None, progress.timings(), model, lang
            )
        header = ""
        if count > 1:
            header = t("Choice {index} of {count}", lang).format(index=index + 1, count=count)
            header += " " + t("(✓ kept)", lang) if index == 0 else ""
        items = answer_items(
            content=choice.content,
            reasoning=choice.reasoning,
            state=state,
            error=error if index == 0 else "",
            stats=stats,
            thinking_pending=progress.is_thinking(index) and not done,
            thinking_seconds=progress.thinking_seconds(index),
            header=header,
            tools=_live_tool_items(progress.tools, lang) if index == 0 else None,
            lang=lang,
        )
        if progress.retry_note and not choice.content and not choice.reasoning and not done:
            items = [text_item("assistant", f"⏳ {progress.retry_note}")]
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
            view.messages[index + 1]["role"] != item["role"]
        )
        if item["role"] == "assistant" and last_of_bubble:
            message_id = view.message_ids[index]
            values.append(FEEDBACK_LABELS.get(feedback.get(message_id or "") or 0))
    return values
