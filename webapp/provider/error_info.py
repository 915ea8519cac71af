"""An error as data: what is stored with a failed answer and rendered at the edge.

`messages.error` holds either this record as a JSON object (``{"kind": "authentication",
"status": 401, ...}``) or plain text: Parley's own notes, and rows saved before errors were
data, which are shown as they are. Parley's own notes that carry a number (the tool-round
limit, fewer choices than asked, an unwatched run) are records too. No wording here:
`webapp.app.error_text.user_message` turns either form into the user's language.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from webapp.provider.errors import ProviderError


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """How a request to a provider failed: the error tree's kind and the provider's own words."""

    kind: str  # ProviderError.kind: "authentication", "rate_limited", "stream_timeout", …
    provider: str = ""  # the provider's label, e.g. "SiliconFlow"
    status: int | None = None  # the HTTP status, when one came
    detail: str = ""  # the provider's own message, untranslated
    partial: bool = False  # part of the answer had arrived (and is kept)
    retried: bool = True  # the request went through the retry policy
    key_env: str = ""  # the setting that holds the key, e.g. "SILICONFLOW_API_KEY"
    attempts: int = 1  # requests made before giving up
    timeout_s: float | None = None  # the read timeout that ran out
    number: float | None = None  # Parley's own notes: the rounds, choices or minutes they name

    @classmethod
    def of(cls, exc: ProviderError, *, partial: bool = False, retried: bool = True) -> ErrorInfo:
        """The data of a provider error."""
        return cls(
            kind=exc.kind,
            provider=exc.provider,
            status=exc.status,
            detail=exc.detail,
            partial=partial,
            retried=retried,
            key_env=exc.key_env,
            attempts=exc.attempts,
            timeout_s=exc.timeout_s,
        )

    def to_json(self) -> str:
        """The stored form (one JSON object)."""
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))


# What each field may hold in a stored record; anything else makes the whole text plain.
_FIELD_CHECKS: dict[str, Any] = {
    "kind": lambda v: isinstance(v, str) and bool(v),
    "provider": lambda v: isinstance(v, str),
    "status": lambda v: v is None or (type(v) is int),
    "detail": lambda v: isinstance(v, str),
    "partial": lambda v: type(v) is bool,
    "retried": lambda v: type(v) is bool,
    "key_env": lambda v: isinstance(v, str),
    "attempts": lambda v: type(v) is int and v >= 1,
    "timeout_s": lambda v: v is None or (type(v) in (int, float) and v >= 0),
    "number": lambda v: v is None or (type(v) in (int, float) and v >= 0),
}


def stored_error(error: ErrorInfo | str | None) -> str | None:
    """The text for `messages.error`: the record as JSON, a note as it is, None for nothing."""
    if isinstance(error, ErrorInfo):
        return error.to_json()
    return error or None


def parse_error(text: str | None) -> ErrorInfo | str | None:
    """A stored `messages.error` back as data; text that is not a record stays text."""
    if not text:
        return None
    if not text.startswith("{"):
        return text
    try:
        payload = json.loads(text)
    except ValueError:
        return text
    if not isinstance(payload, dict) or "kind" not in payload:
        return text
    if set(payload) - set(_FIELD_CHECKS):
        return text
    if not all(check(payload[name]) for name, check in _FIELD_CHECKS.items() if name in payload):
        return text
    return ErrorInfo(**payload)
