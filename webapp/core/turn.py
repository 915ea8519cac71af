"""Accumulates a turn's stream events into displayable state, with timings. Pure; no I/O."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from storage.schemas import StoredTimings, StoredUsage
from webapp.core.messages import (
    ChoiceFinished,
    ChoiceState,
    ReasoningDelta,
    RequestSized,
    Retrying,
    RoundStarted,
    StreamStarted,
    TextDelta,
    ToolCall,
    ToolCallFinished,
    ToolCallsReady,
    ToolCallStarted,
    ToolResult,
    ToolRoundLimit,
    TurnEvent,
    Usage,
)

MIN_RATE_WINDOW_S = 0.05  # below this, a tokens/s figure is noise, not a measurement


@dataclass(slots=True)
class ChoiceClock:
    """When one choice's reasoning and answer started and ended (monotonic seconds)."""

    reasoning_start: float | None = None
    reasoning_end: float | None = None
    chunks: int = 0  # content/reasoning chunks; a token estimate when no usage arrives


@dataclass(slots=True)
class ToolCallView:
    """One tool call as the user sees it: arguments, status, and (when done) its result."""

    call: ToolCall
    status: str = "running"  # running | awaiting_approval | done | error | timeout | denied ...
    result: ToolResult | None = None
    started_at: float = 0.0


@dataclass(slots=True)
class RoundView:
    """A finished round of a tool-using turn: the answer that asked for tools, and the calls."""

    content: str
    reasoning: str
    thinking_s: float | None
    tools: list[ToolCallView]
    usage: StoredUsage | None
    timings: StoredTimings


@dataclass(slots=True)
class TurnProgress:
    """Everything known so far about one turn, updated event by event."""

    n: int = 1
    clock: Callable[[], float] = time.monotonic
    started: float = 0.0
    first_token_at: float | None = None
    last_event_at: float | None = None
    usage: Usage | None = None
    retry_note: str = ""
    choices: list[ChoiceState] = field(default_factory=list)
    clocks: list[ChoiceClock] = field(default_factory=list)
    tools: list[ToolCallView] = field(default_factory=list)  # this round's calls
    rounds: list[RoundView] = field(default_factory=list)  # earlier rounds of this turn
    round_limit: int | None = None  # set when the model asked for tools past the limit
    prompt_estimate: int = 0  # this request's prompt tokens, estimated (no usage from provider)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self._grow(self.n)

    def tool(self, call_id: str) -> ToolCallView | None:
        return next((view for view in self.tools if view.call.id == call_id), None)

    @property
    def awaiting_approval(self) -> list[ToolCall]:
        return [view.call for view in self.tools if view.status == "awaiting_approval"]

    def _next_round(self) -> None:
        """Keep the finished round for display and start counting the next request afresh."""
        choice = self.choices[0]
        self.rounds.append(
            RoundView(
                choice.content,
                choice.reasoning,
                self.thinking_seconds(0),
                self.tools,
                self.usage_dict(),
                self.timings(),
            )
        )
        self.tools = []
        self.choices, self.clocks = [], []
        self._grow(self.n)
        self.started = self.clock()
        self.first_token_at = self.last_event_at = None
        self.usage = None
        self.prompt_estimate = 0

    def _tool_event(self, event: ToolCallStarted | ToolCallFinished, now: float) -> None:
        if isinstance(event, ToolCallStarted):
            view = self.tool(event.call.id)
            if view is None:
                self.tools.append(ToolCallView(event.call, event.status, started_at=now))
            else:
                view.status, view.started_at = event.status, now
            return
        result = event.result
        view = self.tool(result.call_id)
        if view is None:
            call = ToolCall(result.call_id, result.name, result.arguments)
            view = ToolCallView(call, started_at=now)
            self.tools.append(view)
        view.status, view.result = result.status, result

    def _grow(self, count: int) -> None:
        while len(self.choices) < count:
            self.choices.append(ChoiceState())
            self.clocks.append(ChoiceClock())

    def _unexpected(self, choice: int) -> bool:
        """A choice index the request did not ask for (a server may ignore n, or misbehave)."""
        return not 0 <= choice < self.n

    def apply(self, event: TurnEvent) -> None:
        """Fold one event into the state."""
        now = self.clock()
        if isinstance(event, ToolCallStarted | ToolCallFinished):
            self._tool_event(event, now)
            return
        if isinstance(event, RoundStarted):
            self._next_round()
            return
        if isinstance(event, ToolRoundLimit):
            self.round_limit = event.rounds
            return
        if isinstance(event, RequestSized):
            self.prompt_estimate = event.prompt_tokens
            return
        self.last_event_at = now
        per_choice = TextDelta | ReasoningDelta | ChoiceFinished | ToolCallsReady
        if isinstance(event, per_choice) and self._unexpected(event.choice):
            return
        if isinstance(event, TextDelta | ReasoningDelta):
            choice, clock = self.choices[event.choice], self.clocks[event.choice]
            if self.first_token_at is None:
                self.first_token_at = now
            clock.chunks += 1
            if isinstance(event, ReasoningDelta):
                choice.reasoning += event.text
                if clock.reasoning_start is None:
                    clock.reasoning_start = now
            else:
                choice.content += event.text
                if clock.reasoning_start is not None and clock.reasoning_end is None:
                    clock.reasoning_end = now
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, ChoiceFinished):
            self.choices[event.choice].finish_reason = event.reason
            clock = self.clocks[event.choice]
            if clock.reasoning_start is not None and clock.reasoning_end is None:
                clock.reasoning_end = now
        elif isinstance(event, ToolCallsReady):
            self.choices[event.choice].tool_calls = list(event.calls)
        elif isinstance(event, StreamStarted):
            self.retry_note = ""
        elif isinstance(event, Retrying):
            self.retry_note = (
                # `attempt` is already the number of the attempt about to be made.
                f"{event.reason}: retrying in {event.delay_s:.1f} s (attempt {event.attempt})"
            )

    def thinking_seconds(self, index: int) -> float | None:
        """How long choice `index` has been (or was) reasoning."""
        clock = self.clocks[index]
        if clock.reasoning_start is None:
            return None
        end = clock.reasoning_end if clock.reasoning_end is not None else self.clock()
        return max(0.0, end - clock.reasoning_start)

    def is_thinking(self, index: int) -> bool:
        clock = self.clocks[index]
        return clock.reasoning_start is not None and clock.reasoning_end is None

    def timings(self) -> StoredTimings:
        """Time to first token, duration, reasoning time and tokens/s, for storage and display."""
        end = self.last_event_at or self.clock()
        result: StoredTimings = {"duration_ms": round((end - self.started) * 1000)}
        if self.first_token_at is not None:
            result["ttft_ms"] = round((self.first_token_at - self.started) * 1000)
            generating = end - self.first_token_at
            tokens = self.usage.completion_tokens if self.usage else 0
            estimated = not tokens
            if estimated:
                tokens = sum(c.chunks for c in self.clocks)
            if generating >= MIN_RATE_WINDOW_S and tokens:
                result["tokens_per_s"] = round(tokens / generating, 1)
                result["tokens_estimated"] = estimated
        thinking = self.thinking_seconds(0) if self.clocks else None
        if thinking is not None:
            result["reasoning_ms"] = round(thinking * 1000)
        return result

    def usage_dict(self) -> StoredUsage | None:
        if self.usage is None:
            return None
        return {
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "reasoning_tokens": self.usage.reasoning_tokens,
            "total_tokens": self.usage.total_tokens,
        }

    def stored_usage(self) -> StoredUsage | None:
        """Usage to store: the provider's report, else an estimate from the streamed chunks.

        A stopped or broken stream never gets the final usage chunk, and some servers send no
        usage at all; the estimate (the prompt from its text, about one token per streamed
        chunk) keeps per-day token limits honest. It is marked "estimated".
        """
        usage = self.usage_dict()
        if usage is not None:
            return usage
        chunks = sum(clock.chunks for clock in self.clocks)
        if not chunks:
            return None
        prompt = self.prompt_estimate
        return {
            "prompt_tokens": prompt,
            "completion_tokens": chunks,
            "reasoning_tokens": 0,
            "total_tokens": prompt + chunks,
            "estimated": True,
        }
