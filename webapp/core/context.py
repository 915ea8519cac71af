"""How much of a model's context a conversation fills, and fitting a request into it. Pure.

The figure is the provider's own count where it gave one (the last answer's prompt and
completion tokens, reasoning left out because it is not sent back), plus an estimate
(webapp/core/token_estimate.py) of what came after it; with no usage at all, all of it is an
estimate, and the gauge says so. The model's window comes from the server's /models listing
(vLLM, llama.cpp, OpenRouter list it), else the capability table, else a default marked
"assumed": a request is refused before sending only against a window that is known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from storage.schemas import StoredToolCall, StoredUsage
from webapp.core.capabilities import Capabilities
from webapp.core.token_estimate import MESSAGE_OVERHEAD, prompt_tokens, text_tokens
from webapp.i18n import t

DEFAULT_CONTEXT_TOKENS = 32_768  # a model no listing or table names (marked "assumed")
AMBER_AT = 0.8  # the gauge turns amber from this share of the window
HEADROOM = 0.1  # dropping old turns aims this share below the window (estimates are rough)


class PathMessage(Protocol):
    role: str
    content: str
    usage: StoredUsage | None
    tool_calls: list[StoredToolCall] | None
    attachments: list[dict[str, Any]] | None


@dataclass(frozen=True, slots=True)
class ContextLimit:
    """A model's context window in tokens, and where the figure came from."""

    tokens: int
    source: str  # "server" (its /models listing) | "table" (capabilities) | "assumed"

    @property
    def known(self) -> bool:
        return self.source != "assumed"


def context_limit(model: str, caps: Capabilities, listed: Mapping[str, int]) -> ContextLimit:
    """The window of `model`: the server's own figure first, then the capability table."""
    if listed.get(model):
        return ContextLimit(listed[model], "server")
    if caps.context_tokens:
        return ContextLimit(caps.context_tokens, "table")
    return ContextLimit(DEFAULT_CONTEXT_TOKENS, "assumed")


def _as_request(message: PathMessage) -> dict[str, Any]:
    """A stored message as the estimator reads it (pictures count as image parts)."""
    content: Any = message.content or ""
    if message.attachments:
        content = [
            {"type": "text", "text": content},
            *({"type": "image_url"} for _ in message.attachments),
        ]
    return {"role": message.role, "content": content, "tool_calls": message.tool_calls}


def used_tokens(path: Sequence[PathMessage], system_prompt: str = "") -> tuple[int, bool]:
    """(tokens of the conversation so far, whether any part of it is an estimate)."""
    base, start, estimated = 0, 0, True
    for index in range(len(path) - 1, -1, -1):
        usage = path[index].usage if path[index].role == "assistant" else None
        if usage and not usage.get("estimated") and usage.get("prompt_tokens"):
            completion = int(usage.get("completion_tokens") or 0)
            completion -= int(usage.get("reasoning_tokens") or 0)  # thinking is not sent back
            base = int(usage["prompt_tokens"]) + max(0, completion)
            start, estimated = index + 1, False
            break
    if estimated and system_prompt.strip():
        base = MESSAGE_OVERHEAD + text_tokens(system_prompt)
    rest = path[start:]
    return base + prompt_tokens([_as_request(m) for m in rest]), estimated or bool(rest)


@dataclass(frozen=True, slots=True)
class Gauge:
    """The conversation's tokens against the model's window, as shown under the box."""

    used: int
    estimated: bool
    limit: ContextLimit

    @property
    def share(self) -> float:
        return self.used / self.limit.tokens

    @property
    def level(self) -> str:
        """ok | amber (from 80 %) | over (the window is full)."""
        if self.share >= 1:
            return "over"
        return "amber" if self.share >= AMBER_AT else "ok"

    def text(self, lang: str = "en") -> str:
        used = ("≈" if self.estimated else "") + _short(self.used)
        line = t("Context: {used} of {limit} tokens ({share} %)", lang).format(
            used=used, limit=_short(self.limit.tokens), share=round(self.share * 100)
        )
        if self.limit.source == "assumed":
            line += " · " + t("window assumed: set context_tokens in CAPABILITIES_FILE", lang)
        if self.level == "amber":
            line = "⚠ " + line + " · " + t("nearly full", lang)
        elif self.level == "over":
            line = "⛔ " + line + " · " + t("full: older turns must be dropped", lang)
        return line


def _short(tokens: int) -> str:
    """12,345 → "12.3k"; 131,072 → "131k"; small numbers as they are."""
    if tokens < 1000:
        return str(tokens)
    if tokens < 100_000:
        return f"{tokens / 1000:.1f}k".replace(".0k", "k")
    return f"{round(tokens / 1000)}k"


def answer_room(max_tokens: int, limit: ContextLimit) -> int:
    """The tokens kept free for the answer: max_tokens when set, but at most a quarter of the
    window (providers clamp a larger max_tokens to what is left; refusing every message of a
    chat whose max_tokens is the whole window would help nobody)."""
    return min(max(0, max_tokens), limit.tokens // 4)


def would_exceed(used: int, reserve: int, limit: ContextLimit) -> bool:
    """Whether a request of `used` prompt tokens leaving `reserve` for the answer overflows a
    known window (an assumed one never refuses: the provider's own error says if it does)."""
    return limit.known and used + reserve > limit.tokens


def fit_messages(
    messages: list[dict[str, Any]], limit: ContextLimit, reserve: int, scale: float = 1.0
) -> tuple[list[dict[str, Any]], int]:
    """Drop the oldest turns (a question and everything up to the next one) until the request
    fits the window with some headroom; the system prompt and the last question stay.
    `scale` corrects the estimate by the provider's own count. Returns (messages, dropped)."""
    budget = limit.tokens - reserve - int(limit.tokens * HEADROOM)
    head = [m for m in messages[:1] if m.get("role") == "system"]
    turns: list[list[dict[str, Any]]] = []
    for message in messages[len(head) :]:
        # A user message right after tool messages shows the tools' images: same turn.
        follows_tools = bool(turns) and turns[-1][-1].get("role") == "tool"
        if (message.get("role") == "user" and not follows_tools) or not turns:
            turns.append([])
        turns[-1].append(message)
    sizes = [prompt_tokens(turn) for turn in turns]
    total = prompt_tokens(head) + sum(sizes)
    dropped = 0
    while dropped < len(turns) - 1 and scale * total > budget:
        total -= sizes[dropped]
        dropped += 1
    return [*head, *(m for turn in turns[dropped:] for m in turn)], dropped
