"""Rendering stored messages and live turns into Chatbot messages."""

from __future__ import annotations

from typing import Any

import pytest

from storage.models import Message
from webapp.core.messages import (
    ChoiceFinished,
    ReasoningDelta,
    Retrying,
    RoundStarted,
    TextDelta,
    ToolCall,
    ToolCallFinished,
    ToolCallsReady,
    ToolCallStarted,
    ToolResult,
    Usage,
)
from webapp.core.turn import TurnProgress
from webapp.ui.render import STATE_MARKS, WINDOW, View, render_live, render_path, stats_line


def text_of(item: dict[str, Any]) -> str:
    """The text of a Chatbot item, checking it is one text part (not a bare string)."""
    content = item["content"]
    assert isinstance(content, list) and len(content) == 1, content
    assert content[0]["type"] == "text"
    return str(content[0]["text"])


def texts(view: View) -> list[str]:
    return [text_of(m) for m in view.messages]


def user(text: str, **kwargs: Any) -> Message:
    return Message(role="user", content=text, **kwargs)


def assistant(text: str, **kwargs: Any) -> Message:
    return Message(role="assistant", content=text, **kwargs)


class FakeClock:
    def __init__(self, start: float = 10.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


# --- stats_line ---------------------------------------------------------------------------


def test_stats_line_full() -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 340, "reasoning_tokens": 200}
    timings = {"ttft_ms": 850, "tokens_per_s": 42.5, "tokens_estimated": False}
    assert stats_line(usage, timings, "Qwen/Qwen3-8B") == (
        "12 prompt · 340 completion · 200 reasoning tokens · first token 0.85 s · "
        "42.5 tok/s · Qwen/Qwen3-8B"
    )


def test_stats_line_without_reasoning_tokens() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 7, "reasoning_tokens": 0}
    assert stats_line(usage, None) == "5 prompt · 7 completion tokens"


def test_stats_line_estimated_rate_and_whole_numbers() -> None:
    timings = {"ttft_ms": 1234, "tokens_per_s": 30.0, "tokens_estimated": True}
    assert stats_line(None, timings) == "first token 1.23 s · ≈30 tok/s"


def test_stats_line_empty_and_model_only() -> None:
    assert stats_line(None, None) == ""
    assert stats_line({}, {}) == ""
    assert stats_line(None, {"duration_ms": 5}, "m") == "m"


# --- render_path --------------------------------------------------------------------------


def test_user_and_assistant_items_with_ids() -> None:
    question, answer = user("Hi"), assistant("Hello!")
    view = render_path([question, answer])
    assert view.messages == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
    ]
    assert view.message_ids == [question.id, answer.id]


def test_text_is_kept_exact() -> None:
    code = "    indented\n\n```py\n  x = 1\n```\n"
    view = render_path([user(code), assistant(code)])
    assert texts(view) == [code, code]


def test_thinking_block_when_reasoning_exists() -> None:
    answer = assistant("4", reasoning="2 + 2 = 4", timings={"reasoning_ms": 1260})
    view = render_path([user("2+2?"), answer])
    thinking, reply = view.messages[1], view.messages[2]
    assert thinking["role"] == "assistant"
    assert thinking["metadata"] == {"title": "Thinking", "status": "done", "duration": 1.3}
    assert text_of(thinking) == "2 + 2 = 4"
    assert text_of(reply) == "4"
    assert "metadata" not in reply
    assert view.message_ids[1:] == [answer.id, answer.id]


def test_no_thinking_block_without_reasoning() -> None:
    view = render_path([assistant("plain")])
    assert all(m.get("metadata", {}).get("title") != "Thinking" for m in view.messages)


def test_stats_item_under_a_complete_answer() -> None:
    answer = assistant(
        "ok",
        model="m1",
        usage={"prompt_tokens": 1, "completion_tokens": 2},
        timings={"ttft_ms": 500},
    )
    view = render_path([answer])
    stats = view.messages[-1]
    expected = "1 prompt · 2 completion tokens · first token 0.50 s · m1"
    assert text_of(stats) == f"<small>{expected}</small>"
    assert "metadata" not in stats


@pytest.mark.parametrize("state", ["stopped", "interrupted"])
def test_partial_states_are_marked(state: str) -> None:
    answer = assistant("partial text", state=state)
    view = render_path([answer])
    assert texts(view) == ["partial text", STATE_MARKS[state]]
    assert view.message_ids == [answer.id, answer.id]


def test_state_mark_texts() -> None:
    assert STATE_MARKS["stopped"].startswith("⏹ Stopped by you")
    assert STATE_MARKS["interrupted"].startswith("⚠ Interrupted")


def test_error_state_shows_the_error() -> None:
    answer = assistant("", state="error", error="Rate limited by SiliconFlow.")
    view = render_path([user("hi"), answer])
    assert texts(view) == ["hi", "⚠ Rate limited by SiliconFlow."]
    assert view.message_ids == [view.message_ids[0], answer.id]


def test_error_after_partial_content_keeps_the_content() -> None:
    view = render_path([assistant("half an ans", state="error", error="Connection lost.")])
    assert texts(view) == ["half an ans", "⚠ Connection lost."]


def test_note_on_a_complete_answer() -> None:
    answer = assistant("cut", state="complete", error="The answer hit the max_tokens limit.")
    assert texts(render_path([answer])) == ["cut", "ⓘ The answer hit the max_tokens limit."]


def test_streaming_row_without_text_shows_an_ellipsis_and_no_stats() -> None:
    answer = assistant("", state="streaming", usage={"prompt_tokens": 1}, model="m")
    assert texts(render_path([answer])) == ["…"]


def test_tool_and_system_rows_are_not_shown() -> None:
    rows = [
        Message(role="system", content="s"),
        user("u"),
        Message(role="tool", content="t", tool_call_id="c"),
    ]
    view = render_path(rows)
    assert texts(view) == ["u"]
    assert view.message_ids == [rows[1].id]


def test_message_ids_align_with_messages() -> None:
    path = [
        user("q1"),
        assistant("a1", reasoning="r1", usage={"prompt_tokens": 1, "completion_tokens": 1}),
        user("q2"),
        assistant("a2", state="stopped"),
        user("q3"),
        assistant("", state="error", error="boom"),
    ]
    view = render_path(path)
    assert len(view.messages) == len(view.message_ids) == 9
    assert view.message_ids == [
        path[0].id,
        path[1].id,
        path[1].id,
        path[1].id,
        path[2].id,
        path[3].id,
        path[3].id,
        path[4].id,
        path[5].id,
    ]


def test_choice_group_shows_every_sibling_with_its_id() -> None:
    kept = assistant("A", choice_index=0, batch_id="b")
    other = assistant("B", choice_index=1, batch_id="b")
    question = user("q")
    view = render_path([question, kept], {kept.id: [kept, other]})
    assert texts(view) == [
        "q",
        "**Choice 1 of 2 (✓ kept)**",
        "A",
        "**Choice 2 of 2 (not kept)**",
        "B",
    ]
    assert view.message_ids == [question.id, kept.id, kept.id, other.id, other.id]


def test_window_hides_older_messages_with_a_note() -> None:
    total = WINDOW + 5
    path = [user(f"m{i}") for i in range(total)]
    view = render_path(path)
    assert text_of(view.messages[0]) == "… 5 earlier messages not shown."
    assert view.message_ids[0] is None
    assert len(view.messages) == len(view.message_ids) == WINDOW + 1
    assert text_of(view.messages[1]) == "m5"
    assert text_of(view.messages[-1]) == f"m{total - 1}"
    assert view.message_ids[1:] == [m.id for m in path[5:]]


def test_no_window_note_at_exactly_window_messages() -> None:
    view = render_path([user(f"m{i}") for i in range(WINDOW)])
    assert len(view.messages) == WINDOW
    assert text_of(view.messages[0]) == "m0"


# --- render_live --------------------------------------------------------------------------


def prior_view() -> tuple[View, Message]:
    question = user("question")
    return render_path([question]), question


def test_live_pending_thinking_while_reasoning_streams() -> None:
    clock = FakeClock(10.0)
    progress = TurnProgress(clock=clock)
    prior, question = prior_view()
    clock.now = 11.0
    progress.apply(ReasoningDelta("Considering"))
    clock.now = 13.0
    view = render_live(prior, progress, ["a1"], state="streaming", error="", model="m")
    assert texts(view) == ["question", "Considering"]
    assert view.messages[1]["metadata"] == {
        "title": "Thinking",
        "status": "pending",
        "duration": 2.0,
    }
    assert view.message_ids == [question.id, "a1"]
    assert prior.messages == [{"role": "user", "content": [{"type": "text", "text": "question"}]}]


def test_live_thinking_done_once_content_starts() -> None:
    clock = FakeClock(0.0)
    progress = TurnProgress(clock=clock)
    clock.now = 1.0
    progress.apply(ReasoningDelta("r"))
    clock.now = 2.5
    progress.apply(TextDelta("The answer"))
    prior, _ = prior_view()
    view = render_live(prior, progress, ["a1"], state="streaming", error="", model="m")
    assert view.messages[1]["metadata"] == {"title": "Thinking", "status": "done", "duration": 1.5}
    assert texts(view)[1:] == ["r", "The answer"]


def test_live_before_any_token_shows_an_ellipsis() -> None:
    prior, _ = prior_view()
    progress = TurnProgress(clock=FakeClock())
    view = render_live(prior, progress, ["a1"], state="streaming", error="", model="m")
    assert texts(view) == ["question", "…"]
    assert view.message_ids[-1] == "a1"


def test_live_retry_note_replaces_the_placeholder() -> None:
    prior, _ = prior_view()
    progress = TurnProgress(clock=FakeClock())
    progress.apply(Retrying(attempt=2, delay_s=2.0, reason="rate_limited"))
    view = render_live(prior, progress, ["a1"], state="streaming", error="", model="m")
    assert texts(view)[1:] == ["⏳ rate_limited: retrying in 2.0 s (attempt 2)"]
    progress.apply(TextDelta("hi"))
    view = render_live(prior, progress, ["a1"], state="streaming", error="", model="m")
    assert texts(view)[1:] == ["hi"]


def test_live_every_choice_when_n_is_more_than_one() -> None:
    clock = FakeClock(0.0)
    progress = TurnProgress(n=2, clock=clock)
    clock.now = 1.0
    progress.apply(TextDelta("first", choice=0))
    progress.apply(TextDelta("second", choice=1))
    prior, question = prior_view()
    view = render_live(prior, progress, ["a1", "a2"], state="streaming", error="", model="m")
    assert texts(view) == [
        "question",
        "**Choice 1 of 2 (✓ kept)**",
        "first",
        "**Choice 2 of 2**",
        "second",
    ]
    assert text_of(view.messages[1]) == "**Choice 1 of 2 (✓ kept)**"
    assert text_of(view.messages[3]) == "**Choice 2 of 2**"
    assert view.message_ids == [question.id, "a1", "a1", "a2", "a2"]


def test_live_done_adds_stats_with_usage_on_the_first_choice_only() -> None:
    clock = FakeClock(0.0)
    progress = TurnProgress(n=2, clock=clock)
    clock.now = 0.5
    progress.apply(TextDelta("x", choice=0))
    progress.apply(TextDelta("y", choice=1))
    clock.now = 2.5
    progress.apply(Usage(prompt_tokens=3, completion_tokens=40, total_tokens=43))
    progress.apply(ChoiceFinished("stop", choice=0))
    progress.apply(ChoiceFinished("stop", choice=1))
    prior, _ = prior_view()
    view = render_live(prior, progress, ["a1", "a2"], state="complete", error="", model="m")
    all_texts = texts(view)
    assert (
        "<small>3 prompt · 40 completion tokens · first token 0.50 s · 20 tok/s · m</small>"
        in all_texts
    )
    assert "<small>first token 0.50 s · 20 tok/s · m</small>" in all_texts
    assert len(view.messages) == len(view.message_ids) == 7


def test_live_stopped_and_error_marks() -> None:
    progress = TurnProgress(clock=FakeClock())
    progress.apply(TextDelta("part"))
    prior, _ = prior_view()
    stopped = render_live(prior, progress, ["a1"], state="stopped", error="", model="")
    assert texts(stopped)[1:3] == ["part", STATE_MARKS["stopped"]]
    failed = render_live(prior, progress, ["a1"], state="error", error="Server said no.", model="")
    assert texts(failed)[1:3] == ["part", "⚠ Server said no."]


def test_failed_answer_without_error_text_still_says_it_failed() -> None:
    view = render_path([user("hi"), assistant("", state="error")])
    assert texts(view) == ["hi", "⚠ This answer failed; use Retry to try again."]


def test_feedback_values_are_one_per_answer_bubble() -> None:
    from webapp.ui.render import feedback_values

    liked = assistant("first", reasoning="hmm", usage={"prompt_tokens": 1})
    plain = assistant("second")
    view = render_path([user("q1"), liked, user("q2"), plain])
    assert feedback_values(view, {liked.id: 1, plain.id: None}) == ["Like", None]
    assert feedback_values(view, {liked.id: -1}) == ["Dislike", None]


# --- tool calls -----------------------------------------------------------------------------

CALL = {
    "id": "c1",
    "type": "function",
    "function": {"name": "calculator", "arguments": '{"expression":"6*7"}'},
}


def test_stored_tool_round_shows_a_block_per_call_and_figures_only_under_the_final_answer() -> None:
    asked = assistant(
        "Let me compute.", tool_calls=[CALL], usage={"prompt_tokens": 1}, state="complete"
    )
    result = Message(
        role="tool",
        content="42",
        tool_call_id="c1",
        name="calculator",
        tool_status="done",
        timings={"duration_ms": 1234},
    )
    final = assistant("It is 42.", usage={"prompt_tokens": 9, "completion_tokens": 3})
    view = render_path([user("6*7?"), asked, result, final])
    shown = texts(view)
    assert shown[:2] == ["6*7?", "Let me compute."]
    block = view.messages[2]
    assert block["metadata"] == {"title": "🛠 calculator · done", "status": "done", "duration": 1.23}
    assert text_of(block) == (
        '**Arguments**\n\n```json\n{\n  "expression": "6*7"\n}\n```\n\n**Result**\n\n```\n42\n```'
    )
    assert shown[3] == "It is 42."
    assert sum("prompt" in t for t in shown) == 1 and "9 prompt" in shown[-1]
    assert view.message_ids[2] == asked.id and view.message_ids[-1] == final.id


@pytest.mark.parametrize(
    ("status", "title", "pending"),
    [
        ("error", "⚠ calculator · error", False),
        ("timeout", "⚠ calculator · timed out", False),
        ("denied", "🛠 calculator · denied", False),
        ("cancelled", "🛠 calculator · cancelled", False),
        ("not_run", "🛠 calculator · not run", False),
    ],
)
def test_stored_tool_statuses(status: str, title: str, pending: bool) -> None:
    result = Message(role="tool", content="why", tool_call_id="c1", tool_status=status)
    view = render_path([user("q"), assistant("", tool_calls=[CALL]), result])
    assert view.messages[1]["metadata"]["title"] == title
    assert view.messages[1]["metadata"]["status"] == "done"


def test_a_result_with_backticks_cannot_break_out_of_its_code_block() -> None:
    nasty = "```\n</details><script>alert(1)</script>\n````"
    result = Message(role="tool", content=nasty, tool_call_id="c1", tool_status="done")
    view = render_path([user("q"), assistant("", tool_calls=[CALL]), result])
    text = text_of(view.messages[1])
    assert "`````\n" + nasty + "\n`````" in text


def test_live_round_shows_running_then_awaiting_approval() -> None:
    clock = FakeClock()
    progress = TurnProgress(clock=clock)
    progress.apply(TextDelta("Checking."))
    progress.apply(ToolCallsReady((ToolCall("c1", "calculator", '{"expression":"1"}'),)))
    progress.apply(ToolCallStarted(ToolCall("c1", "calculator", '{"expression":"1"}')))
    progress.apply(ToolCallStarted(ToolCall("c2", "rm", "{}"), "awaiting_approval"))
    view = render_live(View([], []), progress, ["a1"], state="streaming", error="", model="m")
    titles = [m.get("metadata", {}).get("title") for m in view.messages]
    assert titles == [None, "🛠 calculator · running…", "🛠 rm · awaiting your approval"]
    assert [m["metadata"]["status"] for m in view.messages[1:]] == ["pending", "pending"]
    assert "Approve or deny" in text_of(view.messages[2])
    assert [c.id for c in progress.awaiting_approval] == ["c2"]


def test_live_earlier_rounds_stay_visible_when_the_next_starts() -> None:
    progress = TurnProgress(clock=FakeClock())
    call = ToolCall("c1", "calculator", '{"expression":"1"}')
    progress.apply(TextDelta("First."))
    progress.apply(ToolCallStarted(call))
    progress.apply(
        ToolCallFinished(ToolResult("c1", "calculator", call.arguments, "1", duration_ms=5))
    )
    progress.apply(RoundStarted(1))
    progress.apply(TextDelta("Second."))
    view = render_live(View([], []), progress, ["a2"], state="complete", error="", model="m")
    shown = texts(view)
    assert shown[0] == "First." and "**Result**" in shown[1] and shown[2] == "Second."
    assert view.messages[1]["metadata"]["title"] == "🛠 calculator · done"


def test_rounds_reusing_a_call_id_each_show_their_own_result() -> None:
    """Servers without call ids get call_0 in every round: pair results per answer."""
    call = {**CALL, "id": "call_0"}
    first = assistant("", tool_calls=[call])
    second = assistant("", tool_calls=[call])
    rows = [
        user("q"),
        first,
        Message(role="tool", content="RESULT-ONE", tool_call_id="call_0", tool_status="done"),
        second,
        Message(role="tool", content="RESULT-TWO", tool_call_id="call_0", tool_status="done"),
        assistant("done"),
    ]
    shown = texts(render_path(rows))
    assert "RESULT-ONE" in shown[1] and "RESULT-TWO" in shown[2]
