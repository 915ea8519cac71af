"""Plain types shared by the provider, the engine and the UI. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A conversation message in OpenAI shape: {"role": ..., "content": ..., ...}.
ChatMessage = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the visible answer for one choice."""

    text: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning ("thinking") for one choice."""

    text: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One fully assembled tool call requested by the model."""

    id: str
    name: str
    arguments: str  # raw JSON text as the model sent it; may be invalid JSON


@dataclass(frozen=True, slots=True)
class ToolCallsReady:
    """The model finished a choice asking for these tool calls."""

    calls: tuple[ToolCall, ...]
    choice: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as reported by the provider (latest report wins)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ChoiceFinished:
    """A choice ended with the provider's finish_reason (stop, length, tool_calls, ...)."""

    reason: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class StreamStarted:
    """The upstream accepted the request (HTTP 200); retries are no longer possible."""

    attempt: int = 1


@dataclass(frozen=True, slots=True)
class RequestSized:
    """A request is about to be sent; its prompt is estimated at `prompt_tokens` tokens (used
    when the provider reports no usage)."""

    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class Retrying:
    """A retryable failure before the first byte; the client will try again after a delay."""

    attempt: int
    delay_s: float
    reason: str


# running | awaiting_approval | done | error | timeout | denied | cancelled | not_run
ToolStatus = str
FINAL_TOOL_STATUSES = frozenset({"done", "error", "timeout", "denied", "cancelled", "not_run"})


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one tool call: what goes back to the model, and how it went."""

    call_id: str
    name: str
    arguments: str  # the raw JSON text the model sent
    content: str  # the text sent back to the model as the `tool` message
    status: ToolStatus = "done"  # done | error | timeout | denied | cancelled | not_run
    duration_ms: int = 0
    error: str | None = None  # a short reason when status is not "done"
    # Images the tool returned (MCP), as user-image attachments: shown in the tool block, and
    # sent after the tool messages to a model that takes images.
    images: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """What a tool returns when it has images besides its text (MCP tools)."""

    text: str
    images: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    """A tool call is about to run, or waits for the user's approval."""

    call: ToolCall
    status: ToolStatus = "running"  # running | awaiting_approval


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    """A tool call ended (in any way); `result` is what the model will see."""

    result: ToolResult


@dataclass(frozen=True, slots=True)
class RoundStarted:
    """Tool results were added and the model is asked again (round numbers start at 1)."""

    round: int


@dataclass(frozen=True, slots=True)
class ToolRoundLimit:
    """The model asked for tools again after `rounds` rounds: the turn ends here."""

    rounds: int


StreamEvent = (
    TextDelta | ReasoningDelta | ToolCallsReady | Usage | ChoiceFinished | StreamStarted | Retrying
)
TurnEvent = (
    StreamEvent | ToolCallStarted | ToolCallFinished | RoundStarted | ToolRoundLimit | RequestSized
)


@dataclass(slots=True)
class ChoiceState:
    """The accumulated state of one choice during a turn."""

    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
