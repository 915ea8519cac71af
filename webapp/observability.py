"""Prometheus metrics and structured (JSON) logs: one record per chat request, never contents."""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
TURN_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
MAX_LABEL_VALUES = 200  # distinct models/providers/tools kept as labels; later ones are "other"
OTHER = "other"
HANDLER_NAME = "parley"  # marks the root handler configure_logging owns


@dataclass(frozen=True)
class TurnRecord:
    """What one chat request did, for metrics and the request log (no message contents)."""

    user: str
    provider: str
    model: str
    status: str  # complete | stopped | error | refused
    http_status: int | None
    error_kind: str | None  # e.g. "timeout", "connection"
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    ttft_s: float | None
    duration_s: float
    tool_calls: int
    conversation_id: str


class _LabelCap:
    """Keeps a label's distinct values bounded: a caller-chosen model name must not grow
    the registry without limit."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(value)
            return value


class Metrics:
    """Parley's Prometheus metrics, in a registry of their own (never the global default)."""

    def __init__(self, max_label_values: int = MAX_LABEL_VALUES) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._model = _LabelCap(max_label_values)
        self._provider = _LabelCap(max_label_values)
        self._tool = _LabelCap(max_label_values)
        registry = self.registry
        self.requests = Counter(
            "parley_requests",
            "Chat requests by outcome (complete|stopped|error|refused).",
            ["provider", "model", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "parley_errors",
            "Failed chat requests by HTTP status code or error kind.",
            ["provider", "status"],
            registry=registry,
        )
        self.tokens = Counter(
            "parley_tokens",
            "Tokens reported by providers (prompt|completion|reasoning).",
            ["provider", "model", "kind"],
            registry=registry,
        )
        self.ttft = Histogram(
            "parley_time_to_first_token_seconds",
            "Seconds from request to the first token.",
            ["provider"],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.turn_duration = Histogram(
            "parley_turn_duration_seconds",
            "Seconds a chat request took from start to end.",
            ["provider"],
            buckets=TURN_BUCKETS,
            registry=registry,
        )
        self.tool_calls = Counter(
            "parley_tool_calls",
            "Tool calls by tool and outcome.",
            ["tool", "status"],
            registry=registry,
        )
        self.active_streams = Gauge(
            "parley_active_streams", "Answers streaming right now.", registry=registry
        )
        self.queue_pending = Gauge(
            "parley_queue_pending", "Events waiting in Gradio's queue.", registry=registry
        )

    def observe_turn(self, record: TurnRecord) -> None:
        """Count one finished chat request."""
        provider, model = self._provider(record.provider), self._model(record.model)
        self.requests.labels(provider, model, record.status).inc()
        if record.status == "error":
            reason = (
                str(record.http_status)
                if record.http_status is not None
                else record.error_kind or "unknown"
            )
            self.errors.labels(provider, reason).inc()
        for kind, count in (
            ("prompt", record.prompt_tokens),
            ("completion", record.completion_tokens),
            ("reasoning", record.reasoning_tokens),
        ):
            if count > 0:
                self.tokens.labels(provider, model, kind).inc(count)
        if record.ttft_s is not None:
            self.ttft.labels(provider).observe(record.ttft_s)
        if record.status != "refused":  # refused turns never reached a provider
            self.turn_duration.labels(provider).observe(record.duration_s)

    def observe_tool(self, name: str, status: str) -> None:
        """Count one tool call (status e.g. ok | error | timeout | denied)."""
        self.tool_calls.labels(self._tool(name), status).inc()

    def stream_started(self) -> None:
        self.active_streams.inc()

    def stream_ended(self) -> None:
        self.active_streams.dec()

    def set_queue_pending(self, pending: int) -> None:
        self.queue_pending.set(pending)

    def render(self) -> tuple[bytes, str]:
        """The registry in Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colour codes
}


MAX_FIELD_CHARS = 1_000  # a longer `extra` value is cut: a log line is not a data store
# Line breaks and what terminals or log viewers treat as such or as controls: C0, DEL, C1,
# U+2028/2029, and the bidirectional overrides and isolates (CWE-117).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_text(text: str) -> str:
    """One line of printable text: control characters and line breaks become escapes."""
    return _UNSAFE.sub(_escape_char, text)


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return f"{value[:MAX_FIELD_CHARS]}…(+{len(value) - MAX_FIELD_CHARS:,} characters)"
    return value


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: _cut(v)
        for k, v in vars(record).items()
        if k not in _STANDARD_ATTRS and not k.startswith("_")
    }


def _field(value: Any) -> str:
    """A key=value field's value: quoted and escaped when a space, quote, = or control
    character could forge a field or a line."""
    text = str(value)
    if text and not _UNSAFE.search(text) and not any(c in text for c in ' "=\\'):
        return text
    return '"' + escape_text(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # JSON escapes line breaks itself; U+2028/2029 end lines in some log viewers.
        line = json.dumps(entry, default=str, ensure_ascii=False)
        return line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


class KeyValueFormatter(logging.Formatter):
    """Plain text lines with any `extra` fields appended as key=value.

    The message and every field are escaped to one line, so no value (a model id, a user
    name) can start a line of its own that reads like another log entry; a traceback still
    follows on the lines below.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        record.message = escape_text(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{k}={_field(v)}" for k, v in _extras(record).items())
        if not extras:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields
        return f"{head} {extras}{sep}{tail}"


def configure_logging(level: str, *, json_format: bool) -> None:
    """Send the root logger to stderr as JSON lines or key=value text; idempotent."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
            handler.close()
    handler = logging.StreamHandler()
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if json_format else KeyValueFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; keep the log to our own lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("mcp").setLevel(logging.WARNING)  # the MCP SDK logs each request at INFO


def log_turn(logger: logging.Logger, record: TurnRecord) -> None:
    """Write the one log line of a chat request: who, where, outcome, sizes, timings."""
    fields: dict[str, Any] = {
        "user": record.user,
        "provider": record.provider,
        "model": record.model,
        "status": record.status,
        "http_status": record.http_status,
        "error_kind": record.error_kind,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "ttft_ms": None if record.ttft_s is None else round(record.ttft_s * 1000),
        "duration_ms": round(record.duration_s * 1000),
        "tool_calls": record.tool_calls,
        "conversation_id": record.conversation_id,
    }
    level = logging.WARNING if record.status == "error" else logging.INFO
    logger.log(level, "turn %s", record.status, extra=fields)
