"""Conversations → JSON and Markdown exports. Pure; no I/O (imports: webapp/app/import_file.py).

An export never holds user ids, usernames or secrets: parameter keys that look like
credentials are dropped at every depth.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from storage.models import Conversation, Message
from storage.tree import active_path
from webapp.app.error_text import user_message
from webapp.core import attachments
from webapp.core.history import tool_results_by_answer
from webapp.core.markdown_text import answer_mark, fenced, quoted, thinking_details

__all__ = [
    "ALL_FORMAT",
    "EXPORT_FORMAT",
    "conversation_json",
    "conversation_markdown",
    "export_all_json",
    "strip_secrets",
]

EXPORT_FORMAT = "parley.conversation.v1"
ALL_FORMAT = "parley.export.v1"

_SECRET_WORDS = ("key", "token", "secret", "password", "authorization")
# Token counts ("max_tokens", "completion_tokens") are not credentials.
_TOKEN_COUNT = re.compile(
    r"(max|min|max_new|max_completion|max_output|prompt|completion|reasoning|total|cached"
    r"|input|output)_?tokens"
)
TOOL_LABELS = {"done": "done", "error": "error", "timeout": "timed out", "denied": "denied",
               "cancelled": "cancelled", "not_run": "not run"}  # fmt: skip


def is_secret_name(name: str) -> bool:
    """Whether a parameter name looks like a credential (api_key, accessToken, …)."""
    lowered = name.lower()
    if _TOKEN_COUNT.fullmatch(lowered):
        return False
    return any(word in lowered for word in _SECRET_WORDS)


def strip_secrets(value: Any) -> Any:
    """A deep copy of `value` without any mapping key that looks like a credential."""
    if isinstance(value, dict):
        return {
            key: strip_secrets(item)
            for key, item in value.items()
            if not (isinstance(key, str) and is_secret_name(key))
        }
    if isinstance(value, list | tuple):
        return [strip_secrets(item) for item in value]
    return copy.deepcopy(value)


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC with a "Z" (naive values are taken as UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return text.removesuffix("+00:00") + "Z"


def _creation_order(messages: Iterable[Message]) -> list[Message]:
    return sorted(messages, key=lambda m: (iso(m.created_at) or "", m.choice_index, m.id))


def _message_json(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "parent_id": message.parent_id,
        "role": message.role,
        "content": message.content,
        "reasoning": message.reasoning,
        "tool_calls": copy.deepcopy(message.tool_calls),
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        "tool_status": message.tool_status,
        "provider": message.provider,
        "model": message.model,
        "parameters": strip_secrets(message.parameters),
        "usage": copy.deepcopy(message.usage),
        "timings": copy.deepcopy(message.timings),
        "finish_reason": message.finish_reason,
        "state": message.state,
        "error": message.error,
        "feedback": message.feedback,
        "preferred": message.preferred,
        "choice_index": message.choice_index,
        "batch_id": message.batch_id,
        "attachments": copy.deepcopy(message.attachments),
        "created_at": iso(message.created_at),
    }


def conversation_json(
    conversation: Conversation, messages: list[Message], *, exported_at: datetime | None = None
) -> dict[str, Any]:
    """A conversation and its whole message tree as a JSON-ready dict."""
    return {
        "format": EXPORT_FORMAT,
        "exported_at": iso(exported_at or datetime.now(UTC)),
        "conversation": {
            "title": conversation.title,
            "system_prompt": conversation.system_prompt,
            "provider": conversation.provider,
            "model": conversation.model,
            "parameters": strip_secrets(conversation.parameters or {}),
            "created_at": iso(conversation.created_at),
            "updated_at": iso(conversation.updated_at),
            "current_leaf_id": conversation.current_leaf_id,
            "mode": conversation.mode,
        },
        "messages": [_message_json(message) for message in _creation_order(messages)],
    }


def export_all_json(
    items: Sequence[tuple[Conversation, list[Message]]], *, exported_at: datetime | None = None
) -> dict[str, Any]:
    """Several conversations in one JSON-ready dict."""
    moment = exported_at or datetime.now(UTC)
    return {
        "format": ALL_FORMAT,
        "exported_at": iso(moment),
        "conversations": [conversation_json(c, m, exported_at=moment) for c, m in items],
    }


# --- Markdown ------------------------------------------------------------------------------


def _pretty(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def figures(message: Message) -> str:
    """Tokens, time to first token and speed of an answer, as one short line."""
    usage, timings = message.usage or {}, message.timings or {}
    parts = []
    prompt = _number(usage.get("prompt_tokens"))
    completion = _number(usage.get("completion_tokens"))
    if prompt is not None or completion is not None:
        parts.append(f"{prompt or 0:g} prompt · {completion or 0:g} completion tokens")
    if reasoning := _number(usage.get("reasoning_tokens")):
        parts.append(f"{reasoning:g} reasoning tokens")
    if (ttft := _number(timings.get("ttft_ms"))) is not None:
        parts.append(f"first token {ttft / 1000:.2f} s")
    if (speed := _number(timings.get("tokens_per_s"))) is not None:
        parts.append(f"{'≈' if timings.get('tokens_estimated') else ''}{speed:g} tok/s")
    if (duration := _number(timings.get("duration_ms"))) is not None:
        parts.append(f"{duration / 1000:.2f} s in all")
    return " · ".join(parts)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _header(conversation: Conversation) -> list[str]:
    blocks = [f"# {_one_line(conversation.title) or 'Untitled'}"]
    facts = []
    if conversation.model:
        facts.append(f"**Model:** {_one_line(conversation.model)}")
    if conversation.provider:
        facts.append(f"**Provider:** {_one_line(conversation.provider)}")
    parameters = strip_secrets(conversation.parameters or {})
    if parameters:
        shown = ", ".join(
            f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in parameters.items()
        )
        facts.append(f"**Parameters:** {shown}")
    created = iso(conversation.created_at)
    if created:
        facts.append(f"**Created:** {created}")
    if facts:
        blocks.append("  \n".join(facts))
    if conversation.system_prompt.strip():
        blocks.append("> **System prompt**\n>\n" + quoted(conversation.system_prompt))
    return blocks


def _tool_blocks(message: Message, results: dict[str, Message]) -> list[str]:
    blocks = []
    for raw in message.tool_calls or []:
        function = raw.get("function") or {}
        name = _one_line(str(function.get("name") or "(unnamed tool)"))
        result = results.pop(str(raw.get("id", "")), None)
        status = (result.tool_status or "done") if result is not None else "not run"
        blocks.append(f"#### Tool call: {name} · {TOOL_LABELS.get(status, status)}")
        blocks += ["**Arguments**", fenced(_pretty(str(function.get("arguments", ""))), "json")]
        if result is not None:
            blocks += ["**Result**", fenced(result.content)]
            if result.error and result.error != result.content:
                blocks.append(quoted(f"⚠ {result.error}"))
    return blocks


def _answer_blocks(message: Message, results: dict[str, Message]) -> list[str]:
    blocks = []
    if message.reasoning:
        blocks.append(thinking_details(message.reasoning))
    if message.content:
        blocks.append(message.content)
    blocks += _tool_blocks(message, results)
    mark = answer_mark(message.state, user_message(message.error))
    if mark:
        blocks.append(quoted(mark))
    line = figures(message) if not message.tool_calls else ""
    if line:
        blocks.append(f"<small>{line}</small>")
    return blocks


def conversation_markdown(conversation: Conversation, messages: list[Message]) -> str:
    """The active branch of a conversation as readable Markdown."""
    path = active_path(messages, conversation.current_leaf_id)
    by_answer = tool_results_by_answer(path)
    shown: set[str] = set()  # tool rows already shown under their call
    blocks = _header(conversation)
    heading = ""
    for message in path:
        if message.role == "user":
            heading = "### You"
            blocks.append(heading)
            if message.attachments:  # the full images, so the file stands on its own
                blocks.append(attachments.markdown(message.attachments, full=True))
            if message.content:
                blocks.append(message.content)
        elif message.role == "assistant":
            speaker = f"### {_one_line(message.model or conversation.model) or 'Assistant'}"
            if speaker != heading:  # the rounds of one tool-using answer share a heading
                heading = speaker
                blocks.append(heading)
            results = by_answer.get(message.id, {})
            before = dict(results)
            blocks += _answer_blocks(message, results)  # takes the results it shows
            shown |= {row.id for call_id, row in before.items() if call_id not in results}
        elif message.role == "tool" and message.id not in shown:
            # A result whose call is not on the path: show it on its own.
            blocks += [
                f"#### Tool result: {_one_line(message.name or '(unnamed tool)')}",
                fenced(message.content),
            ]
    return "\n\n".join(blocks) + "\n"
