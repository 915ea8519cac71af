"""What the Compare tab shows, from stored messages and live column runs: each column's
items, its figures line and its header; blind mode masks provider and model names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.models import Message
from webapp.app.compare import ColumnRun
from webapp.app.compare_rounds import (
    figures_line,
)
from webapp.app.error_text import user_message
from webapp.i18n import t
from webapp.provider.pricing import format_cost
from webapp.ui.render import ChatbotMessage, answer_items, text_item


@dataclass
class Column:
    """What one column shows."""

    header: str = ""
    messages: list[ChatbotMessage] = field(default_factory=list)
    stats: str = ""
    best: Any = None  # the Best button's update


def masked(text: str | None, hide: Sequence[str], lang: str) -> str | None:
    """Blind mode: an error or retry note names no provider and no model before the vote."""
    for name in sorted(hide, key=len, reverse=True):
        if text and name and name in text:
            text = text.replace(name, t("the provider", lang))
            text = text[:1].upper() + text[1:]  # "SiliconFlow is …" → "The provider is …"
    return text


def history_items(
    history: Sequence[Message],
    stats_for_last: bool = False,
    cost: Callable[[Message], str] | None = None,
    lang: str = "en",
    hide: Sequence[str] = (),
) -> list[ChatbotMessage]:
    items: list[ChatbotMessage] = []
    for position, message in enumerate(history):
        if message.role == "user":
            items.append(text_item("user", message.content))
            continue
        last = position == len(history) - 1
        stats = ""
        if cost is not None and (stats_for_last or not last) and message.state != "streaming":
            stats = figures_line(message.usage, message.timings, cost(message), lang)
        seconds = (message.timings or {}).get("reasoning_ms")
        items += answer_items(
            content=message.content,
            reasoning=message.reasoning,
            state=message.state,
            error=masked(user_message(message.error, lang), hide, lang),
            stats=stats,
            thinking_seconds=seconds / 1000 if seconds is not None else None,
            lang=lang,
        )
    return items


def live_items(run: ColumnRun, lang: str, hide: Sequence[str] = ()) -> list[ChatbotMessage]:
    choice, progress = run.progress.choices[0], run.progress
    done = run.state != "streaming"
    items = answer_items(
        content=choice.content,
        reasoning=choice.reasoning,
        state=run.state,
        error=masked(user_message(run.error, lang), hide, lang),
        stats="",
        thinking_pending=progress.is_thinking(0) and not done,
        thinking_seconds=progress.thinking_seconds(0),
        lang=lang,
    )
    if progress.retry_note and not choice.content and not choice.reasoning and not done:
        items = [text_item("assistant", f"⏳ {masked(progress.retry_note, hide, lang)}")]
    return items


def live_stats(run: ColumnRun, lang: str) -> str:
    timings, usage = run.progress.timings(), run.progress.usage_dict()
    if run.state == "streaming":
        if "ttft_ms" not in timings:
            return t("waiting for the first token…", lang)
        return t("first token {seconds} s", lang).format(
            seconds=f"{timings['ttft_ms'] / 1000:.2f}"
        ) + t(" · streaming…", lang)
    line = figures_line(usage, timings, format_cost(run.cost), lang)
    return state_prefix(run.state, lang) + line


def state_prefix(state: str, lang: str) -> str:
    prefix = {"error": "failed · ", "stopped": "stopped · "}.get(state, "")
    return t(prefix, lang) if prefix else ""


def header(label: str, provider_label: str, *, shown: bool, best: bool, lang: str = "en") -> str:
    text = f"**{label}**" + (f" · {provider_label}" if shown and provider_label else "")
    return text + (t(" · ★ best", lang) if best else "")
