"""Pure SSE decoding and chat-chunk assembly into stream events (no I/O)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from webapp.core.messages import (
    ChoiceFinished,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallsReady,
    Usage,
)
from webapp.provider.errors import UpstreamStreamError, message_from_payload

DONE = "[DONE]"
# NUL and unpaired surrogates: JSON can carry them as \u escapes, but a lone surrogate cannot be
# encoded as UTF-8 (the page, the next request and the database would all fail on it) and no
# database stores NUL everywhere (storage.db replaces both the same way).
_UNSHOWABLE = re.compile("[\x00\ud800-\udfff]")
_ESCAPED = re.compile(r"\\u(0000|[dD][89a-fA-F])")
_STRAY_LIMIT = 64 * 1024
_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched server-sent event."""

    data: str
    event: str = ""
    id: str = ""


class SSEDecoder:
    """Turns SSE lines (terminators already removed) into messages, per the SSE spec."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id = ""
        self._first = True
        self.stray: list[str] = []  # non-SSE lines (e.g. a raw JSON error body), bounded
        self._stray_size = 0

    def feed(self, line: str) -> list[SSEMessage]:
        """Consume one line; return the messages it completes (usually zero or one)."""
        if self._first:
            self._first = False
            line = line.removeprefix("\ufeff")
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return []
        name, sep, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            # Some servers omit the blank line between events: a complete buffered
            # JSON value followed by another data line is its own event.
            out = self._dispatch() if self._data and _is_complete(self._data) else []
            self._data.append(value)
            return out
        if name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name != "retry" and self._stray_size < _STRAY_LIMIT:
            self.stray.append(line)
            self._stray_size += len(line)
        return []

    def flush(self) -> list[SSEMessage]:
        """Dispatch whatever is buffered when the stream ends without a final blank line."""
        return self._dispatch()

    def _dispatch(self) -> list[SSEMessage]:
        if not self._data:
            self._event = ""
            return []
        message = SSEMessage("\n".join(self._data), self._event, self._id)
        self._data = []
        self._event = ""
        return [message]


def loads_chunk(data: str | bytes) -> Any:
    """Parse one JSON chunk; text that cannot be shown or stored becomes U+FFFD (only when
    the raw data escapes such a character, so the common case costs one search)."""
    chunk = json.loads(data)
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    return _showable(chunk) if _ESCAPED.search(text) else chunk


def _showable(value: Any) -> Any:
    if isinstance(value, str):
        return _UNSHOWABLE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_showable(item) for item in value]
    if isinstance(value, dict):
        return {key: _showable(item) for key, item in value.items()}
    return value


def _is_complete(data: list[str]) -> bool:
    text = "\n".join(data)
    if text.strip() == DONE:
        return True
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


class ThinkSplitter:
    """Splits inline `<think>…</think>` at the very start of content into reasoning and text."""

    def __init__(self) -> None:
        self._state = "start"  # start | think | after | text
        self._buffer = ""

    def feed(self, text: str) -> list[tuple[bool, str]]:
        """Return (is_reasoning, text) pieces that are safe to emit now."""
        if self._state == "text":
            return [(False, text)]
        self._buffer += text
        out: list[tuple[bool, str]] = []
        while True:
            if self._state == "start":
                head = self._buffer.lstrip()
                if not head or _THINK_OPEN.startswith(head):
                    return out  # still undecided
                if head.startswith(_THINK_OPEN):
                    self._state, self._buffer = "think", head[len(_THINK_OPEN) :]
                    continue
                self._state = "text"
                return self._drain(out, False)
            if self._state == "think":
                end = self._buffer.find(_THINK_CLOSE)
                if end >= 0:
                    if end:
                        out.append((True, self._buffer[:end]))
                    self._state, self._buffer = "after", self._buffer[end + len(_THINK_CLOSE) :]
                    continue
                keep = _partial_suffix(self._buffer, _THINK_CLOSE)
                safe = self._buffer[: len(self._buffer) - keep]
                if safe:
                    out.append((True, safe))
                self._buffer = self._buffer[len(safe) :]
                return out
            # after: drop the whitespace between </think> and the answer
            self._buffer = self._buffer.lstrip()
            if not self._buffer:
                return out
            self._state = "text"
            return self._drain(out, False)

    def flush(self) -> list[tuple[bool, str]]:
        """Emit what is still held back when the choice ends."""
        if self._state == "think":
            return self._drain([], True)
        if self._state == "start":
            return self._drain([], False)
        self._buffer = ""
        return []

    def _drain(self, out: list[tuple[bool, str]], reasoning: bool) -> list[tuple[bool, str]]:
        if self._buffer:
            out.append((reasoning, self._buffer))
        self._buffer = ""
        return out


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of tag."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


# What the provider sends as ids and names is cut to what storage keeps (storage/field_limits.py),
# without control characters, so a hostile or broken server cannot make a turn's save fail.
MAX_CALL_ID_CHARS = 256
MAX_TOOL_NAME_CHARS = 128
MAX_FINISH_REASON_CHARS = 64
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str, limit: int) -> str:
    """`text` without control characters, at most `limit` characters long."""
    return _CONTROL.sub("", text)[:limit]


@dataclass(slots=True)
class _CallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Assembles streamed tool-call pieces of one choice by index."""

    def __init__(self) -> None:
        self._calls: dict[int, _CallParts] = {}
        self._slot_of: dict[int, int] = {}  # wire index -> slot (differs only on id clashes)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def feed(self, pieces: list[Any]) -> None:
        """Merge one delta's `tool_calls` list: set id/name when non-empty, append arguments."""
        for position, piece in enumerate(pieces):
            if not isinstance(piece, dict):
                continue
            index = piece.get("index")
            wire = index if isinstance(index, int) else position
            call_id = piece.get("id") or ""
            slot = self._slot_of.get(wire, wire)
            current = self._calls.get(slot)
            if current and call_id and current.id and call_id != current.id:
                # Same index, different id: a server numbering every call 0 (or none).
                slot = max(self._calls) + 1
                current = None
            self._slot_of[wire] = slot
            if current is None:
                current = self._calls[slot] = _CallParts()
            function = piece.get("function") or {}
            if not isinstance(function, dict):
                function = {}
            if isinstance(call_id, str) and call_id:
                current.id = call_id
            name = function.get("name")
            if isinstance(name, str) and name:
                current.name = name
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                current.arguments.append(arguments)
            elif isinstance(arguments, dict):
                current.arguments.append(json.dumps(arguments, ensure_ascii=False))

    def take(self) -> tuple[ToolCall, ...]:
        """Return the assembled calls in index order and reset."""
        calls = tuple(
            ToolCall(
                one_line(parts.id, MAX_CALL_ID_CHARS) or f"call_{slot}",
                one_line(parts.name, MAX_TOOL_NAME_CHARS),
                "".join(parts.arguments),
            )
            for slot, parts in sorted(self._calls.items())
        )
        self._calls.clear()
        self._slot_of.clear()
        return calls


@dataclass(slots=True)
class _Choice:
    think: ThinkSplitter = field(default_factory=ThinkSplitter)
    tools: ToolCallAssembler = field(default_factory=ToolCallAssembler)
    finished: bool = False


class ChunkAssembler:
    """Turns decoded chat-completion chunks into StreamEvents, tolerating every known quirk."""

    def __init__(self, provider: str = "", key_env: str = "") -> None:
        self._provider = provider
        self._key_env = key_env
        self._choices: dict[int, _Choice] = {}
        self._last_usage: Usage | None = None
        self.produced = False  # any event at all came out
        self.finished_any = False

    def feed(self, chunk: Any) -> list[StreamEvent]:
        """Handle one decoded JSON chunk; raises UpstreamStreamError on an error object."""
        if not isinstance(chunk, dict):
            raise self._error(chunk)
        if "error" in chunk and chunk["error"]:
            raise self._error(chunk)
        choices = chunk.get("choices")
        if choices is None and "usage" not in chunk and isinstance(chunk.get("message"), str):
            raise self._error(chunk)  # {"code": ..., "message": ...} sent as a chunk
        events: list[StreamEvent] = []
        for position, choice in enumerate(choices if isinstance(choices, list) else []):
            if isinstance(choice, dict):
                self._choice(choice, position, events)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            converted = convert_usage(usage)
            if converted != self._last_usage:
                self._last_usage = converted
                events.append(converted)
        if events:
            self.produced = True
        return events

    def finish(self) -> list[StreamEvent]:
        """Flush held-back text and unfinished tool calls at the end of the stream."""
        events: list[StreamEvent] = []
        for index, state in sorted(self._choices.items()):
            self._flush_think(state, index, events)
            if state.tools:
                events.append(ToolCallsReady(state.tools.take(), index))
        if events:
            self.produced = True
        return events

    def _choice(self, choice: dict[str, Any], position: int, events: list[StreamEvent]) -> None:
        raw_index = choice.get("index")
        index = raw_index if isinstance(raw_index, int) else position
        state = self._choices.setdefault(index, _Choice())
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = choice.get("message")  # a whole (non-streamed) completion
        if not isinstance(delta, dict):
            delta = {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.append(ReasoningDelta(reasoning, index))
        content = delta.get("content")
        if isinstance(content, str) and content:
            events.extend(_pieces(state.think.feed(content), index))
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, list) and tool_calls:
            state.tools.feed(tool_calls)
        reason = choice.get("finish_reason")
        if reason and isinstance(reason, str) and not state.finished:
            state.finished = True
            self.finished_any = True
            self._flush_think(state, index, events)
            if state.tools:
                events.append(ToolCallsReady(state.tools.take(), index))
            reason = one_line(reason, MAX_FINISH_REASON_CHARS)
            events.append(ChoiceFinished("stop" if reason == "eos" else reason, index))

    def _flush_think(self, state: _Choice, index: int, events: list[StreamEvent]) -> None:
        events.extend(_pieces(state.think.flush(), index))

    def _error(self, payload: Any) -> UpstreamStreamError:
        detail = message_from_payload(payload) or json.dumps(payload, ensure_ascii=False)
        return UpstreamStreamError(self._provider, self._key_env, detail=detail)


def _pieces(pieces: list[tuple[bool, str]], index: int) -> list[StreamEvent]:
    return [ReasoningDelta(t, index) if r else TextDelta(t, index) for r, t in pieces]


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def convert_usage(usage: dict[str, Any]) -> Usage:
    """Map a provider usage object to Usage, reading reasoning tokens where they hide."""
    details = usage.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    if reasoning is None:
        reasoning = usage.get("reasoning_tokens")
    prompt = _int(usage.get("prompt_tokens"))
    completion = _int(usage.get("completion_tokens"))
    total = _int(usage.get("total_tokens")) or prompt + completion
    return Usage(prompt, completion, _int(reasoning), total)
