"""JSON export files → validated conversations to import. Pure; no I/O.

`parse_import` reads one conversation file (or a full export holding exactly one
conversation); `parse_import_all` reads either kind of file and returns every conversation in
it. Every refusal says what is wrong and where.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from storage.field_limits import (
    FINISH_REASON,
    MODEL,
    PARAMETERS_JSON_MAX,
    PROVIDER,
    TEXT,
    TOOL_CALL_ID,
    TOOL_NAME,
    FieldLimit,
    json_size,
    message_limit,
    problem,
)
from storage.transfer import ImportedConversation
from webapp.app.export import ALL_FORMAT, EXPORT_FORMAT, strip_secrets
from webapp.core import attachments
from webapp.core.params import PARAMS_BY_NAME, ParamError, normalize

__all__ = ["ImportRefused", "ImportedConversation", "parse_import", "parse_import_all"]


class ImportRefused(ValueError):
    """An import file was refused; the message says why, ready to show."""


ROLES = ("user", "assistant", "tool")
MODES = ("chat", "compare")
STATES = ("complete", "streaming", "stopped", "error", "interrupted")
_USAGE_NUMBERS = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens")
_TIMING_NUMBERS = ("duration_ms", "ttft_ms", "tokens_per_s", "reasoning_ms")
_MAX_ID_LENGTH = 200
_MAX_TOOL_STATUS = 20  # the column's width
_MAX_CHOICE_INDEX = 999
_MAX_TOOL_CALLS = 128  # per answer: the most tools a request may offer
_YEARS = range(1970, 3000)
_SURROGATE = re.compile("[\ud800-\udfff]")
# Any image that fits in an import file (20 MB) may come back in: an export made under a raised
# ATTACH_MAX_MB must import again. Each one is still decoded and checked.
IMPORT_ATTACHMENT_LIMITS = attachments.Limits(max_bytes=20_000_000, max_count=20)


def _kind(value: Any) -> str:
    """How a JSON value is named in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _show(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 2] + '…"'


def _safe_text(text: str) -> str:
    """Text every database can store: NUL and unpaired surrogates become U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


MAX_DEPTH = 64  # nesting deeper than any real export; deeper input is refused, not recursed


def _sanitize(document: Any) -> Any:
    """Make every string of a parsed document storable, in place (no recursion); refuse
    nesting deeper than MAX_DEPTH, which later deep copies could not handle."""
    if isinstance(document, str):
        return _safe_text(document)
    stack = [(document, 1)] if isinstance(document, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ImportRefused(
                f"The file nests data more than {MAX_DEPTH} levels deep; a "
                "Parley export never does."
            )
        if isinstance(node, dict):
            items = list(node.items())
            node.clear()
            node.update((_safe_text(key), value) for key, value in items)
        for key, value in list(node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(value, str):
                node[key] = _safe_text(value)
            elif isinstance(value, dict | list):
                stack.append((value, depth + 1))
    return document


def _refuse_constant(name: str) -> Any:
    raise ImportRefused(f"The file is not valid JSON: {name} is not a JSON number.")


def _load_document(data: bytes | str, max_bytes: int) -> Any:
    """Size check, UTF-8 decoding and JSON parsing, each with a clear refusal."""
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ImportRefused(
            f"The file is too large ({size:,} bytes; the limit is {max_bytes:,} bytes)."
        )
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ImportRefused(
                f"The file is not UTF-8 text: byte 0x{data[exc.start]:02x} at "
                f"position {exc.start:,} is invalid."
            ) from None
    else:
        text = data.removeprefix("\ufeff")
    try:
        return _sanitize(json.loads(text, parse_constant=_refuse_constant))
    except ImportRefused:
        raise
    except json.JSONDecodeError as exc:
        raise ImportRefused(
            f"The file is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except RecursionError:
        raise ImportRefused("The file is nested too deeply to be a Parley export.") from None
    except ValueError:  # an integer too long to convert
        raise ImportRefused("The file is not valid JSON: a number is too long.") from None


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_ID_LENGTH


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _or_null(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or test(value)


def _is_tool_call(call: Any) -> bool:
    function = call.get("function") if isinstance(call, dict) else None
    return (
        isinstance(function, dict)
        and isinstance(call.get("id"), str)
        and call.get("type", "function") == "function"
        and isinstance(function.get("name"), str)
        and isinstance(function.get("arguments"), str)
    )


class _Fields:
    """Typed access to one JSON object of the file, refusing with its location."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self.data, self.where = data, where

    def get(
        self,
        name: str,
        expected: str,
        test: Callable[[Any], bool],
        default: Any = None,
        *,
        required: bool = False,
    ) -> Any:
        if name not in self.data:
            if required:
                raise ImportRefused(f'{self.where}: "{name}" is missing.')
            return default
        value = self.data[name]
        if not test(value):
            raise ImportRefused(f'{self.where}: "{name}" must be {expected}, not {_kind(value)}.')
        return value

    def fits(self, name: str, value: str | None, limit: FieldLimit) -> None:
        """Refuse a text longer than its field allows (the limits of storage.field_limits)."""
        if value is not None and (found := problem(limit, value)):
            raise ImportRefused(f'{self.where}: "{name}" {found}.')

    def text(self, name: str, limit: FieldLimit = TEXT) -> str:
        value = str(self.get(name, "a string", _is_text, ""))
        self.fits(name, value, limit)
        return value

    def optional_text(self, name: str, limit: FieldLimit = TEXT) -> str | None:
        value: str | None = self.get(name, "a string or null", _or_null(_is_text))
        self.fits(name, value, limit)
        return value

    def mapping(self, name: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self.get(
            name, "an object or null", _or_null(lambda v: isinstance(v, dict))
        )
        if value is not None and (size := json_size(value)) > PARAMETERS_JSON_MAX:
            raise ImportRefused(
                f'{self.where}: "{name}" is {size:,} characters as JSON; the '
                f"limit is {PARAMETERS_JSON_MAX:,}."
            )
        return value

    def timestamp(self, name: str, *, required: bool) -> datetime | None:
        value = self.get(name, "an ISO-8601 timestamp", _or_null(_is_text), required=required)
        if value is None:
            if required:
                raise ImportRefused(f'{self.where}: "{name}" must be an ISO-8601 timestamp.')
            return None
        try:
            moment = datetime.fromisoformat(value)
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        except (ValueError, OverflowError):
            raise ImportRefused(
                f'{self.where}: "{name}" is not an ISO-8601 timestamp: {_show(value)}.'
            ) from None
        if moment.year not in _YEARS:
            raise ImportRefused(f'{self.where}: "{name}" is out of range: {_show(value)}.')
        return moment

    def figures(self, name: str, numbers: Sequence[str]) -> dict[str, Any] | None:
        value = self.mapping(name)
        for key in numbers:
            if value and key in value and not _or_null(_is_number)(value[key]):
                raise ImportRefused(
                    f'{self.where}: "{name}.{key}" must be a number, not {_kind(value[key])}.'
                )
        return value


def _check_tool_calls(where: str, calls: list[Any]) -> None:
    """Each call well formed, and its id, name and arguments within their fields' limits."""
    if len(calls) > _MAX_TOOL_CALLS:
        raise ImportRefused(
            f"{where} has {len(calls)} tool calls; at most {_MAX_TOOL_CALLS} are accepted."
        )
    for index, call in enumerate(calls, 1):
        if not _is_tool_call(call):
            raise ImportRefused(
                f'{where}: tool call {index} must look like {{"id": "…", "type": '
                '"function", "function": {"name": "…", "arguments": "…"}}.'
            )
        for name, value, limit in (
            ("id", call["id"], TOOL_CALL_ID),
            ("function.name", call["function"]["name"], TOOL_NAME),
            ("function.arguments", call["function"]["arguments"], TEXT),
        ):
            if found := problem(limit, value):
                raise ImportRefused(f'{where}: tool call {index} "{name}" {found}.')


def _check_message(
    number: int, raw: Any, budget: attachments.PixelBudget, max_message_chars: int
) -> dict[str, Any]:
    """One message of the file → the dict `import_conversation` stores.

    Long: one check per field of the file's message, each with its own message naming the field."""
    if not isinstance(raw, dict):
        raise ImportRefused(f"message {number} must be an object, not {_kind(raw)}.")
    fields = _Fields(raw, f"message {number}")
    message_id = fields.get(
        "id", "a non-empty string of at most 200 characters", _is_id, required=True
    )
    where = fields.where = f"message {number} (id {_show(message_id)})"
    role = fields.get("role", "a string", _is_text, required=True)
    if role not in ROLES:
        raise ImportRefused(f"{where} has role {_show(role)}; expected user, assistant or tool.")
    state = fields.get("state", "a string", _is_text, "complete")
    if state not in STATES:
        raise ImportRefused(
            f"{where} has state {_show(state)}; expected complete, streaming, "
            "stopped, error or interrupted."
        )
    tool_calls = fields.get("tool_calls", "a list or null", _or_null(lambda v: isinstance(v, list)))
    _check_tool_calls(where, tool_calls or [])
    if tool_calls and role != "assistant":
        raise ImportRefused(
            f'{where} has "tool_calls", but only an assistant message can call tools.'
        )
    message = {
        "id": message_id,
        "role": role,
        "state": state,
        "tool_calls": tool_calls,
        "parent_id": fields.get("parent_id", "a message id or null", _or_null(_is_id)),
        # What a person wrote has the limit of what they can type: MAX_MESSAGE_CHARS.
        "content": fields.text(
            "content", message_limit(max_message_chars) if role == "user" else TEXT
        ),
        "reasoning": fields.text("reasoning"),
        "tool_call_id": fields.optional_text("tool_call_id", TOOL_CALL_ID),
        "name": fields.optional_text("name", TOOL_NAME),
        "tool_status": fields.get(
            "tool_status",
            "a string of at most 20 characters or null",
            _or_null(lambda v: _is_text(v) and len(v) <= _MAX_TOOL_STATUS),
        ),
        "provider": fields.text("provider", PROVIDER),
        "model": fields.text("model", MODEL),
        "parameters": strip_secrets(fields.mapping("parameters")),
        "usage": fields.figures("usage", _USAGE_NUMBERS),
        "timings": fields.figures("timings", _TIMING_NUMBERS),
        "finish_reason": fields.optional_text("finish_reason", FINISH_REASON),
        "error": fields.optional_text("error"),
        "feedback": fields.get(
            "feedback", "1, -1 or null", lambda v: v is None or (type(v) is int and v in (1, -1))
        ),
        "preferred": fields.get("preferred", "true or false", lambda v: type(v) is bool, False),
        "choice_index": fields.get(
            "choice_index",
            f"a whole number from 0 to {_MAX_CHOICE_INDEX}",
            lambda v: type(v) is int and 0 <= v <= _MAX_CHOICE_INDEX,
            0,
        ),
        "batch_id": fields.get("batch_id", "a non-empty string or null", _or_null(_is_id)),
        "attachments": fields.get(
            "attachments",
            "a list of objects or null",
            _or_null(lambda v: isinstance(v, list) and all(isinstance(a, dict) for a in v)),
        ),
        "created_at": fields.timestamp("created_at", required=True),
    }
    if role == "tool" and not message["tool_call_id"]:
        raise ImportRefused(f'{where} is a tool result without "tool_call_id".')
    if message["attachments"]:
        message["attachments"] = _restore_attachments(where, message["attachments"], budget)
    return message


def _restore_attachments(
    where: str, items: list[Any], budget: attachments.PixelBudget
) -> list[dict[str, Any]]:
    """Attachments are decoded and checked again, their previews remade: none is trusted."""
    if len(items) > IMPORT_ATTACHMENT_LIMITS.max_count:
        raise ImportRefused(
            f"{where} has {len(items)} attachments; at most "
            f"{IMPORT_ATTACHMENT_LIMITS.max_count} are accepted."
        )
    restored = []
    for number, item in enumerate(items, 1):
        try:
            restored.append(attachments.restore(item, IMPORT_ATTACHMENT_LIMITS, budget))
        except attachments.AttachmentError as exc:
            raise ImportRefused(f"{where}, attachment {number}: {exc}") from None
    return restored


def _check_tree(messages: list[dict[str, Any]], leaf_id: str | None) -> None:
    """Unique ids, parents in the file, no cycles, and a current leaf in the file."""
    numbers: dict[str, int] = {}
    for number, message in enumerate(messages, 1):
        first = numbers.setdefault(message["id"], number)
        if first != number:
            raise ImportRefused(
                f"message {number} (id {_show(message['id'])}) repeats the id of message {first}."
            )
    parents = {message["id"]: message["parent_id"] for message in messages}
    for number, message in enumerate(messages, 1):
        if message["parent_id"] is not None and message["parent_id"] not in numbers:
            raise ImportRefused(
                f"message {number} (id {_show(message['id'])}) names a parent "
                f"that is not in the file ({_show(message['parent_id'])})."
            )
    rooted: set[str] = set()
    for message in messages:
        chain: list[str] = []
        node: str | None = message["id"]
        while node is not None and node not in rooted:
            if node in chain:
                raise ImportRefused(
                    f"message {numbers[node]} (id {_show(node)}) is its own "
                    "ancestor: the parent links form a cycle."
                )
            chain.append(node)
            node = parents[node]
        rooted.update(chain)
    if leaf_id is not None and leaf_id not in numbers:
        raise ImportRefused(
            f'conversation: "current_leaf_id" {_show(leaf_id)} is not a message in the file.'
        )


def _check_parameters(raw: dict[str, Any]) -> dict[str, Any]:
    """Conversation settings: the known request parameters, tools and tool choice are checked.

    Other names (from an older or newer version) are kept as they are: nothing reads them.
    """
    value = strip_secrets(raw)
    tools, choice = value.get("tools"), value.get("tool_choice")
    if tools is not None and not (isinstance(tools, list) and all(map(_is_text, tools))):
        raise ImportRefused('conversation: "parameters.tools" must be a list of tool names.')
    if choice is not None and not isinstance(choice, str):
        raise ImportRefused('conversation: "parameters.tool_choice" must be a string.')
    known = {name: item for name, item in value.items() if name in PARAMS_BY_NAME}
    try:
        clean = normalize(known)
    except ParamError as exc:
        raise ImportRefused(f'conversation: "parameters" are invalid: {exc}.') from None
    return {name: item for name, item in value.items() if name not in known} | clean


def _check_conversation(
    document: Any, budget: attachments.PixelBudget, max_message_chars: int
) -> ImportedConversation:
    """One "parley.conversation.v1" document → a validated import."""
    if not isinstance(document, dict):
        raise ImportRefused(
            f"Not a Parley conversation export: the file holds {_kind(document)}, not an object."
        )
    if "format" not in document:
        raise ImportRefused('Not a Parley conversation export: "format" is missing.')
    if document["format"] != EXPORT_FORMAT:
        raise ImportRefused(
            f"Unsupported format {_show(document['format'])}; expected "
            f'"{EXPORT_FORMAT}" or "{ALL_FORMAT}".'
        )
    top = _Fields(document, "Not a Parley conversation export")
    raw = top.get("conversation", "an object", lambda v: isinstance(v, dict), required=True)
    raw_messages = top.get("messages", "a list", lambda v: isinstance(v, list), required=True)
    fields = _Fields(raw, "conversation")
    messages = [
        _check_message(number, item, budget, max_message_chars)
        for number, item in enumerate(raw_messages, 1)
    ]
    leaf_id = fields.get("current_leaf_id", "a message id or null", _or_null(_is_id))
    _check_tree(messages, leaf_id)
    order = sorted(
        range(len(messages)),
        key=lambda i: (messages[i]["created_at"], messages[i]["choice_index"], i),
    )
    return ImportedConversation(
        title=fields.text("title"),  # shortened to TITLE_MAX_LENGTH like any title
        system_prompt=fields.text("system_prompt", message_limit(max_message_chars)),
        provider=fields.text("provider", PROVIDER),
        model=fields.text("model", MODEL),
        parameters=_check_parameters(fields.mapping("parameters") or {}),
        created_at=fields.timestamp("created_at", required=False),
        updated_at=fields.timestamp("updated_at", required=False),
        current_leaf_id=leaf_id,
        mode=fields.get("mode", '"chat" or "compare"', lambda v: v in MODES, "chat"),
        messages=[messages[i] for i in order],
    )


def _conversation_documents(document: Any) -> list[Any] | None:
    """The conversation documents of a full export; None for any other file."""
    if isinstance(document, dict) and document.get("format") == ALL_FORMAT:
        items = document.get("conversations")
        if not isinstance(items, list):
            raise ImportRefused(
                f'A full Parley export needs a "conversations" list, not {_kind(items)}.'
            )
        if not items:
            raise ImportRefused("This full export holds no conversations.")
        return items
    return None


def parse_import_all(
    data: bytes | str,
    *,
    max_bytes: int = 20_000_000,
    max_messages: int = 20_000,
    max_message_chars: int = 100_000,
) -> list[ImportedConversation]:
    """Validate a conversation file or a full export; return every conversation in it.

    Each text has the limit it has when typed or stored live (storage.field_limits), and what
    a person wrote (questions, system prompts) the MAX_MESSAGE_CHARS of `max_message_chars`.
    """
    document = _load_document(data, max_bytes)
    budget = attachments.PixelBudget()  # for the whole file
    documents = _conversation_documents(document)
    total = sum(
        len(d["messages"])
        for d in documents or [document]
        if isinstance(d, dict) and isinstance(d.get("messages"), list)
    )
    if total > max_messages:
        raise ImportRefused(f"The file holds {total:,} messages; the limit is {max_messages:,}.")
    if documents is None:
        return [_check_conversation(document, budget, max_message_chars)]
    imported = []
    for number, document in enumerate(documents, 1):
        try:
            imported.append(_check_conversation(document, budget, max_message_chars))
        except ImportRefused as exc:
            raise ImportRefused(f"Conversation {number} of the export: {exc}") from None
    return imported


def parse_import(
    data: bytes | str,
    *,
    max_bytes: int = 20_000_000,
    max_messages: int = 20_000,
    max_message_chars: int = 100_000,
) -> ImportedConversation:
    """Validate one conversation file (or a full export holding just one conversation)."""
    conversations = parse_import_all(
        data, max_bytes=max_bytes, max_messages=max_messages, max_message_chars=max_message_chars
    )
    if len(conversations) != 1:
        raise ImportRefused(
            f"This file is a full export holding {len(conversations)} conversations; import it "
            "as a full export, or import one conversation file at a time."
        )
    return conversations[0]
