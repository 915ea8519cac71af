"""Stored messages → provider messages; conversation titles; the request body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from webapp.core.engine import TurnRequest, build_body
from webapp.core.history import auto_title, to_provider_messages


@dataclass
class Stored:
    """A stand-in with the fields of storage.models.Message that history reads."""

    role: str
    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    state: str = "complete"
    attachments: list[dict[str, Any]] | None = None


def user(text: str) -> Stored:
    return Stored("user", text)


def assistant(text: str, **kwargs: Any) -> Stored:
    return Stored("assistant", text, **kwargs)


CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'},
}


def test_system_prompt_comes_first() -> None:
    messages = to_provider_messages("Be brief.", [user("Hi"), assistant("Hello!")])
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_blank_system_prompt_is_left_out(prompt: str) -> None:
    assert to_provider_messages(prompt, [user("Hi")]) == [{"role": "user", "content": "Hi"}]


def test_text_is_sent_exactly() -> None:
    text = "  indented\n\n```py\nx = 1\n```\n"
    assert to_provider_messages("", [user(text)]) == [{"role": "user", "content": text}]


def test_reasoning_is_not_sent_back() -> None:
    path = [user("2+2?"), assistant("4", reasoning="Two plus two is four."), user("and 3+3?")]
    for passback in (False, True):
        messages = to_provider_messages("", path, reasoning_passback=passback)
        assert messages[1] == {"role": "assistant", "content": "4"}
        assert all("reasoning_content" not in m for m in messages)


@pytest.mark.parametrize("state", ["error", "interrupted", "stopped", "streaming"])
def test_answers_with_no_content_are_skipped(state: str) -> None:
    path = [user("Hi"), assistant("", state=state, reasoning="thinking..."), user("Hi again")]
    assert to_provider_messages("", path) == [
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Hi again"},
    ]


@pytest.mark.parametrize("state", ["stopped", "interrupted", "error"])
def test_partial_answers_are_sent_as_shown(state: str) -> None:
    path = [user("Count"), assistant("1, 2, 3", state=state), user("go on")]
    assert to_provider_messages("", path)[1] == {"role": "assistant", "content": "1, 2, 3"}


def test_tool_calls_and_tool_results_in_openai_shape() -> None:
    path = [
        user("What time is it?"),
        assistant("", tool_calls=[CALL], reasoning="I should call the tool."),
        Stored("tool", '{"time": "12:00"}', tool_call_id="call_1", name="get_time"),
        assistant("It is noon."),
    ]
    assert to_provider_messages("", path) == [
        {"role": "user", "content": "What time is it?"},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"time": "12:00"}'},
        {"role": "assistant", "content": "It is noon."},
    ]


def test_assistant_text_beside_tool_calls_is_kept() -> None:
    result = Stored("tool", "12:00", tool_call_id="call_1")
    messages = to_provider_messages("", [assistant("Let me check.", tool_calls=[CALL]), result])
    assert messages[0] == {"role": "assistant", "content": "Let me check.", "tool_calls": [CALL]}


def test_calls_without_every_result_are_not_replayed() -> None:
    """A provider refuses tool_calls whose results are missing: keep the text, drop the calls."""
    second = {**CALL, "id": "call_2"}
    path = [
        user("q"),
        assistant("Checking.", tool_calls=[CALL, second]),
        Stored("tool", "12:00", tool_call_id="call_1"),
        assistant("Done."),
    ]
    assert to_provider_messages("", path) == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "Checking."},
        {"role": "assistant", "content": "Done."},
    ]
    assert to_provider_messages("", [user("q"), assistant("", tool_calls=[CALL])]) == [
        {"role": "user", "content": "q"}
    ]


def test_results_of_parallel_calls_follow_their_assistant_message_in_order() -> None:
    second = {**CALL, "id": "call_2"}
    path = [
        user("q"),
        assistant("", tool_calls=[CALL, second]),
        Stored("tool", "a", tool_call_id="call_1"),
        Stored("tool", "b", tool_call_id="call_2"),
        assistant("Both."),
    ]
    assert [m.get("tool_call_id") for m in to_provider_messages("", path)] == [
        None,
        None,
        "call_1",
        "call_2",
        None,
    ]


def test_reasoning_passed_back_only_on_tool_call_turns() -> None:
    path = [
        user("time?"),
        assistant("", tool_calls=[CALL], reasoning="Need the clock."),
        Stored("tool", "12:00", tool_call_id="call_1"),
        assistant("Noon.", reasoning="Got it."),
    ]
    messages = to_provider_messages("", path, reasoning_passback=True)
    assert messages[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [CALL],
        "reasoning_content": "Need the clock.",
    }
    assert messages[3] == {"role": "assistant", "content": "Noon."}
    without = to_provider_messages("", path, reasoning_passback=False)
    assert without[1] == {"role": "assistant", "content": "", "tool_calls": [CALL]}


def test_no_empty_reasoning_content_is_passed_back() -> None:
    result = Stored("tool", "12:00", tool_call_id="call_1")
    messages = to_provider_messages(
        "", [assistant("", tool_calls=[CALL]), result], reasoning_passback=True
    )
    assert messages[0] == {"role": "assistant", "content": "", "tool_calls": [CALL]}


def test_orphan_tool_results_are_not_sent() -> None:
    assert to_provider_messages("", [Stored("tool", "x")]) == []
    assert to_provider_messages("", [Stored("tool", "x", tool_call_id="call_9")]) == []


def test_stored_system_rows_are_not_sent() -> None:
    assert to_provider_messages("S", [Stored("system", "old"), user("u")]) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "u"},
    ]


def test_a_long_history_is_not_truncated() -> None:
    path = [user(f"m{i}") if i % 2 == 0 else assistant(f"a{i}") for i in range(50)]
    messages = to_provider_messages("sys", path)
    assert len(messages) == 51
    assert messages[-1] == {"role": "assistant", "content": "a49"}


# --- auto_title ---------------------------------------------------------------------------


def test_auto_title_short_text_is_kept_whole() -> None:
    assert auto_title("  What is   the\ncapital of France? ") == "What is the capital of France?"


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_auto_title_empty(text: str) -> None:
    assert auto_title(text) == "New chat"


def test_auto_title_exactly_at_the_limit() -> None:
    text = "x" * 60
    assert auto_title(text) == text


def test_auto_title_cuts_at_a_word() -> None:
    text = "Please explain how the garbage collector in CPython handles reference cycles in detail"
    title = auto_title(text)
    assert title == "Please explain how the garbage collector in CPython handles…"
    assert len(title) <= 61


def test_auto_title_cuts_a_long_word_hard() -> None:
    assert auto_title("a " + "y" * 100) == "a " + "y" * 58 + "…"
    assert auto_title("z" * 80, limit=10) == "z" * 10 + "…"


# --- build_body ---------------------------------------------------------------------------


def test_build_body() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    request = TurnRequest(
        model="Qwen/Qwen3-8B",
        messages=messages,
        params={"temperature": 0.2, "stop": ["END"]},
        api_key="sk-x",
    )
    assert build_body(request) == {
        "model": "Qwen/Qwen3-8B",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.2,
        "stop": ["END"],
    }


def test_build_body_without_params_and_key_not_in_body() -> None:
    body = build_body(TurnRequest(model="m", messages=[], api_key="sk-secret"))
    assert body == {"model": "m", "messages": []}
