"""TurnProgress: folding stream events into text, choices and timings (fake clock)."""

from __future__ import annotations

import pytest

from webapp.core.messages import (
    ChoiceFinished,
    ReasoningDelta,
    Retrying,
    StreamEvent,
    StreamStarted,
    TextDelta,
    ToolCall,
    ToolCallsReady,
    Usage,
)
from webapp.core.turn import TurnProgress


class FakeClock:
    """A clock whose time only moves when the test says so."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def at(progress: TurnProgress, clock: FakeClock, time: float, event: StreamEvent) -> None:
    clock.now = time
    progress.apply(event)


def test_content_and_reasoning_accumulate() -> None:
    clock = FakeClock()
    progress = TurnProgress(clock=clock)
    for event in [
        ReasoningDelta("Let me "),
        ReasoningDelta("think."),
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta("!"),
    ]:
        progress.apply(event)
    assert len(progress.choices) == 1
    assert progress.choices[0].reasoning == "Let me think."
    assert progress.choices[0].content == "Hello!"
    assert progress.clocks[0].chunks == 5


def test_time_to_first_token_and_duration() -> None:
    clock = FakeClock(100.0)
    progress = TurnProgress(clock=clock)
    assert progress.started == 100.0
    at(progress, clock, 100.5, StreamStarted())
    assert progress.first_token_at is None
    at(progress, clock, 101.25, TextDelta("a"))
    at(progress, clock, 102.0, TextDelta("b"))
    at(progress, clock, 103.0, ChoiceFinished("stop"))
    assert progress.first_token_at == 101.25
    timings = progress.timings()
    assert timings["ttft_ms"] == 1250
    assert timings["duration_ms"] == 3000


def test_first_token_may_be_reasoning() -> None:
    clock = FakeClock(10.0)
    progress = TurnProgress(clock=clock)
    at(progress, clock, 10.4, ReasoningDelta("hmm"))
    at(progress, clock, 12.0, TextDelta("ok"))
    assert progress.timings()["ttft_ms"] == 400


def test_reasoning_duration_ends_when_content_starts() -> None:
    clock = FakeClock(0.5)
    progress = TurnProgress(clock=clock)
    at(progress, clock, 1.0, ReasoningDelta("a"))
    at(progress, clock, 2.0, ReasoningDelta("b"))
    assert progress.is_thinking(0)
    clock.now = 3.5
    assert progress.thinking_seconds(0) == pytest.approx(2.5)  # still running: up to now
    at(progress, clock, 4.0, TextDelta("answer"))
    assert not progress.is_thinking(0)
    assert progress.clocks[0].reasoning_end == 4.0
    at(progress, clock, 9.0, TextDelta(" more"))
    clock.now = 50.0
    assert progress.thinking_seconds(0) == pytest.approx(3.0)
    assert progress.timings()["reasoning_ms"] == 3000


def test_reasoning_duration_ends_at_finish_without_content() -> None:
    clock = FakeClock(1.0)
    progress = TurnProgress(clock=clock)
    at(progress, clock, 2.0, ReasoningDelta("a"))
    at(progress, clock, 2.75, ChoiceFinished("length"))
    assert not progress.is_thinking(0)
    clock.now = 20.0
    assert progress.thinking_seconds(0) == pytest.approx(0.75)


def test_no_reasoning_means_no_reasoning_time() -> None:
    clock = FakeClock(1.0)
    progress = TurnProgress(clock=clock)
    at(progress, clock, 2.0, TextDelta("a"))
    assert progress.thinking_seconds(0) is None
    assert not progress.is_thinking(0)
    assert "reasoning_ms" not in progress.timings()


def test_tokens_per_second_from_usage() -> None:
    clock = FakeClock(1.0)
    progress = TurnProgress(clock=clock)
    at(progress, clock, 2.0, TextDelta("a"))
    at(progress, clock, 3.0, TextDelta("b"))
    at(progress, clock, 6.0, Usage(prompt_tokens=12, completion_tokens=100, total_tokens=112))
    timings = progress.timings()
    assert timings["tokens_per_s"] == 25.0  # 100 tokens over 4 s since the first token
    assert timings["tokens_estimated"] is False
    assert progress.usage_dict() == {
        "prompt_tokens": 12,
        "completion_tokens": 100,
        "reasoning_tokens": 0,
        "total_tokens": 112,
    }


def test_latest_usage_wins() -> None:
    progress = TurnProgress(clock=FakeClock())
    progress.apply(Usage(completion_tokens=1))
    progress.apply(Usage(prompt_tokens=5, completion_tokens=9, reasoning_tokens=4, total_tokens=14))
    assert progress.usage_dict() == {
        "prompt_tokens": 5,
        "completion_tokens": 9,
        "reasoning_tokens": 4,
        "total_tokens": 14,
    }


def test_tokens_per_second_estimated_from_chunks_without_usage() -> None:
    clock = FakeClock(1.0)
    progress = TurnProgress(clock=clock)
    at(progress, clock, 2.0, ReasoningDelta("x"))
    for time in (2.5, 3.0, 3.5, 4.0):
        at(progress, clock, time, TextDelta("y"))
    timings = progress.timings()
    assert timings["tokens_per_s"] == 2.5  # 5 chunks over 2 s
    assert timings["tokens_estimated"] is True
    assert progress.usage_dict() is None


def test_no_rate_before_any_time_has_passed() -> None:
    clock = FakeClock(1.0)
    progress = TurnProgress(clock=clock)
    at(progress, clock, 2.0, TextDelta("only"))
    timings = progress.timings()
    assert timings == {"duration_ms": 1000, "ttft_ms": 1000}


def test_timings_before_any_event() -> None:
    clock = FakeClock(5.0)
    progress = TurnProgress(clock=clock)
    clock.now = 5.2
    assert progress.timings() == {"duration_ms": 200}


def test_finish_reasons_per_choice() -> None:
    progress = TurnProgress(n=2, clock=FakeClock())
    progress.apply(TextDelta("a", choice=0))
    progress.apply(ChoiceFinished("length", choice=1))
    assert progress.choices[0].finish_reason is None
    progress.apply(ChoiceFinished("stop", choice=0))
    assert [c.finish_reason for c in progress.choices] == ["stop", "length"]


def test_n_choices_exist_from_the_start() -> None:
    progress = TurnProgress(n=3, clock=FakeClock())
    assert len(progress.choices) == 3
    assert len(progress.clocks) == 3
    assert all(c.content == "" for c in progress.choices)


def test_choices_stay_separate() -> None:
    clock = FakeClock(0.0)
    progress = TurnProgress(n=2, clock=clock)
    at(progress, clock, 1.0, TextDelta("A", choice=0))
    at(progress, clock, 2.0, ReasoningDelta("think", choice=1))
    at(progress, clock, 3.0, TextDelta("B", choice=1))
    at(progress, clock, 4.0, TextDelta("A2", choice=0))
    assert len(progress.choices) == 2
    assert [c.content for c in progress.choices] == ["AA2", "B"]
    assert [c.reasoning for c in progress.choices] == ["", "think"]
    assert [c.chunks for c in progress.clocks] == [2, 2]
    assert progress.thinking_seconds(1) == pytest.approx(1.0)
    assert progress.thinking_seconds(0) is None
    assert progress.first_token_at == 1.0


def test_choices_the_request_did_not_ask_for_are_ignored() -> None:
    progress = TurnProgress(n=2, clock=FakeClock())
    progress.apply(ChoiceFinished("stop", choice=2))
    progress.apply(TextDelta("x", choice=3_000_000))  # must not allocate millions of states
    progress.apply(TextDelta("y", choice=-1))
    assert len(progress.choices) == 2
    assert [c.content for c in progress.choices] == ["", ""]
    assert progress.first_token_at is None


def test_tool_calls_are_recorded() -> None:
    progress = TurnProgress(n=2, clock=FakeClock())
    call = ToolCall(id="call_1", name="get_time", arguments="{}")
    progress.apply(ToolCallsReady((call,), choice=1))
    progress.apply(ChoiceFinished("tool_calls", choice=1))
    assert progress.choices[1].tool_calls == [call]
    assert progress.choices[1].finish_reason == "tool_calls"


def test_retrying_note_names_reason_delay_and_the_next_attempt() -> None:
    progress = TurnProgress(clock=FakeClock())
    assert progress.retry_note == ""
    # The provider client numbers the attempt it is about to make: 2 after the first failed.
    progress.apply(Retrying(attempt=2, delay_s=1.5, reason="rate_limited"))
    assert progress.retry_note == "rate_limited: retrying in 1.5 s (attempt 2)"
    progress.apply(Retrying(attempt=3, delay_s=4.25, reason="overloaded"))
    assert progress.retry_note == "overloaded: retrying in 4.2 s (attempt 3)"
    assert progress.choices[0].content == ""


def test_retry_note_clears_once_the_stream_starts() -> None:
    from webapp.core.messages import StreamStarted

    progress = TurnProgress(clock=FakeClock())
    progress.apply(Retrying(attempt=2, delay_s=0.5, reason="rate_limited"))
    assert progress.retry_note
    progress.apply(StreamStarted(attempt=2))
    assert progress.retry_note == ""
