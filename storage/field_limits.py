"""The one table of text field limits: how long each stored or sent text may be.

Input is checked where it enters (UI handlers, the /chat API, imports, presets), so the
refusal names the field, the limit and the fix; `GuardedSession` checks again before every
flush, so nothing longer is ever stored, whichever path wrote it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, inspect
from sqlmodel import Session

from storage.models import Conversation, Message, Preset, User

# C0 controls, DEL, C1 controls (NEL among them), the Unicode line and paragraph separators.
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class FieldLimit:
    """One text field: how messages name it, its longest length, and what to do instead."""

    label: str  # "The model id"
    max_chars: int
    one_line: bool = True  # ids and names: control characters (line breaks too) are refused
    setting: str = ""  # the setting that sets max_chars, named in the message
    fix: str = "Shorten it."


class FieldTooLong(ValueError):
    """A text is longer than its field allows, or holds a control character; the message
    names the field, the limit and the fix."""


TEXT_MAX = 10_000_000  # any long text: TOOL_MAX_RESULT_CHARS and MAX_MESSAGE_CHARS stay below
PARAMETERS_JSON_MAX = 64_000  # stored parameters, usage and timings, as JSON

MODEL = FieldLimit(
    "The model id", 200, fix="Use the id the provider lists, such as Qwen/Qwen3-32B."
)
PROVIDER = FieldLimit(
    "The provider name", 64, fix="Use the name of a configured provider, such as siliconflow."
)
TITLE = FieldLimit("The title", 200, one_line=False)
USERNAME = FieldLimit("The user name", 150)
PRESET_NAME = FieldLimit("A preset name", 100)
TOOL_NAME = FieldLimit("A tool name", 128)
TOOL_CHOICE = FieldLimit(
    "The tool choice", 100, fix="Use auto, none, required or an offered tool's name."
)
TOOL_CALL_ID = FieldLimit("A tool call id", 256)
FINISH_REASON = FieldLimit("A finish reason", 64)
STOP = FieldLimit("A stop sequence", 500, one_line=False)
TEXT = FieldLimit("The text", TEXT_MAX, one_line=False)


def message_limit(max_chars: int, label: str = "The message") -> FieldLimit:
    """The limit of text a person writes (a message, a system prompt): MAX_MESSAGE_CHARS."""
    return FieldLimit(label, max_chars, one_line=False, setting="MAX_MESSAGE_CHARS")


def problem(limit: FieldLimit, value: str) -> str | None:
    """What is wrong with `value` ("is 5,000 characters; the limit is 200"), or None."""
    if len(value) > limit.max_chars:
        setting = f" ({limit.setting})" if limit.setting else ""
        return f"is {len(value):,} characters; the limit is {limit.max_chars:,}{setting}"
    if limit.one_line and (found := CONTROL_CHARS.search(value)):
        return (
            f"contains a control character (U+{ord(found.group()):04X} at position "
            f"{found.start() + 1:,}); it must be one line of printable text"
        )
    return None


def check(limit: FieldLimit, value: str) -> str:
    """Return `value` when it fits `limit`; raise FieldTooLong otherwise."""
    found = problem(limit, value)
    if found:
        raise FieldTooLong(f"{limit.label} {found}. {limit.fix}")
    return value


def shown(value: Any, limit: int = 60) -> str:
    """A value as a message may quote it: repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_size(value: Any) -> int:
    """Characters of `value` as JSON (how stored parameters are measured)."""
    return len(json.dumps(value, ensure_ascii=False, default=str))


def check_json_size(label: str, value: Any, limit: int = PARAMETERS_JSON_MAX) -> None:
    """Refuse a JSON value (parameters, usage) longer than `limit` characters."""
    if value is not None and (size := json_size(value)) > limit:
        raise FieldTooLong(
            f"{label} are {size:,} characters as JSON; the limit is {limit:,}. Shorten them."
        )


ROW_FIELDS: dict[type, dict[str, FieldLimit]] = {
    Conversation: {"title": TITLE, "system_prompt": TEXT, "provider": PROVIDER, "model": MODEL},
    Message: {
        "content": TEXT,
        "reasoning": TEXT,
        "provider": PROVIDER,
        "model": MODEL,
        "name": TOOL_NAME,
        "tool_call_id": TOOL_CALL_ID,
        "error": TEXT,
    },
    Preset: {
        "name": PRESET_NAME,
        "system_prompt": TEXT,
        "provider": PROVIDER,
        "model": MODEL,
        "tool_choice": TOOL_CHOICE,
    },
    User: {"username": USERNAME},
}
ROW_JSON: dict[type, dict[str, str]] = {
    Conversation: {"parameters": "The conversation's parameters"},
    Message: {
        "parameters": "The message's parameters",
        "usage": "The message's usage figures",
        "timings": "The message's timings",
    },
    Preset: {"parameters": "The preset's parameters", "tools": "The preset's tools"},
}


def check_row(row: object, changed: set[str] | None = None) -> None:
    """Refuse a row whose text fields (all, or only the `changed` ones) exceed the table."""
    kind = type(row)
    for name, limit in ROW_FIELDS.get(kind, {}).items():
        value = getattr(row, name)
        if isinstance(value, str) and (changed is None or name in changed):
            check(limit, value)
    for name, label in ROW_JSON.get(kind, {}).items():
        if changed is None or name in changed:
            check_json_size(label, getattr(row, name))


def _changed(row: object) -> set[str]:
    state = inspect(row)
    return {attr.key for attr in state.attrs if attr.history.has_changes()}


class GuardedSession(Session):
    """A session that refuses to flush a text field longer than the table allows."""


@event.listens_for(GuardedSession, "before_flush")
def _guard(session: Session, _context: Any, _instances: Any) -> None:
    for row in session.new:
        check_row(row)
    for row in session.dirty:
        # Only what changed: a row stored before these limits must stay usable.
        if type(row) in ROW_FIELDS:
            check_row(row, _changed(row))
