"""The tool loop end to end: fake upstream on loopback (real SSE), real tools, a real database
(a SQLite file, and a PostgreSQL server).

Each test scripts the model's tool calls, lets ChatService run the turn, and asserts the exact
messages sent back to the fake server and what was stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest

from storage import repository as repo
from tests.fake_openai import FakeOpenAI, Reply
from tests.services import stored_path
from webapp.app.chat import ChatService, TurnRefused, TurnUpdate
from webapp.app.chat_request import NewMessage, TurnSettings
from webapp.app.error_text import user_message
from webapp.core.engine import APPROVAL_UNAVAILABLE, DENIED
from webapp.tools.builtin import register_builtins
from webapp.tools.context import ToolContext
from webapp.tools.registry import ToolRegistry

VARIANTS = [
    "first_only",
    "repeated",
    "null_later",
    "empty_later",
    "whole",
    "interleaved",
    "no_index",
]


class Tools:
    """Test tools with hooks the tests can watch and release."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.both = asyncio.Barrier(2) if hasattr(asyncio, "Barrier") else None

    def registry(self) -> ToolRegistry:
        registry = ToolRegistry()
        register_builtins(registry)
        hooks = self

        async def slow(seconds: int = 1) -> str:
            """Wait until released (a slow tool).

            Args:
                seconds: ignored.
            """
            hooks.started.set()
            try:
                await hooks.release.wait()
            except asyncio.CancelledError:
                hooks.cancelled.set()
                raise
            return "slept"

        async def meet(name: str) -> str:
            """Return only once a second call of this tool is running too.

            Args:
                name: who is meeting.
            """
            assert hooks.both is not None
            await hooks.both.wait()
            return f"met {name}"

        def fail(reason: str) -> str:
            """Always fails.

            Args:
                reason: the error message.
            """
            raise RuntimeError(reason)

        def huge() -> str:
            """Return ten megabytes of text."""
            return "x" * 10_000_000

        def delete_everything(target: str) -> str:
            """Delete a thing (needs approval).

            Args:
                target: what to delete.
            """
            return f"deleted {target}"

        def whoami(context: ToolContext) -> str:
            """Say which conversation the call came from."""
            return str(context.conversation_id)

        for function in (slow, meet, fail, huge, whoami):
            registry.register(function)
        registry.register(delete_everything, needs_approval=True)
        return registry


@pytest.fixture
def hooks() -> Tools:
    return Tools()


@pytest.fixture
def service_env() -> dict[str, str]:
    return {"TOOL_TIMEOUT": "5", "TOOL_MAX_ROUNDS": "3", "TOOL_MAX_RESULT_CHARS": "1000"}


@pytest.fixture
def service_tools(hooks: Tools) -> ToolRegistry:
    return hooks.registry()


def turn(*tools: str, model: str = "Qwen/Qwen3-8B", **kwargs: Any) -> TurnSettings:
    return TurnSettings(provider="siliconflow", model=model, tools=tools, **kwargs)


def call(call_id: str, name: str, arguments: Any) -> dict[str, str]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "name": name, "arguments": text}


def wire(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    """A tool call as it must be sent back to the provider."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


async def uid(service: ChatService, name: str = "local") -> int:
    user = await service.db(lambda s: repo.ensure_user(session=s, username=name))
    assert user.id is not None
    return user.id


async def run(
    service: ChatService,
    user_id: int,
    text: str,
    settings: TurnSettings,
    conversation_id: str | None = None,
) -> TurnUpdate:
    last = None
    async for update in service.stream_turn(
        user_id=user_id, conversation_id=conversation_id, action=NewMessage(text), turn=settings
    ):
        last = update
    assert last is not None
    return last


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("style", ["siliconflow", "openai"])
async def test_parallel_calls_in_every_delta_variant_go_back_exactly(
    service: ChatService, fake: FakeOpenAI, variant: str, style: str
) -> None:
    calls = [
        call("call_a", "calculator", {"expression": "6*7"}),
        call("call_b", "calculator", {"expression": "2**10"}),
    ]
    fake.enqueue(
        Reply(content="", tool_calls=calls, tool_call_variant=variant, style=style, chunk_chars=3),
        Reply(content="42 and 1024."),
    )
    update = await run(service, await uid(service), "compute", turn("calculator"))
    assert update.state == "complete" and update.error == ""
    first, second = fake.requests[0]["json"], fake.requests[1]["json"]
    assert [t["function"]["name"] for t in first["tools"]] == ["calculator"]
    assert "tool_choice" not in first  # auto is the provider's default: not sent
    assert second["messages"][-3:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                wire("call_a", "calculator", {"expression": "6*7"}),
                wire("call_b", "calculator", {"expression": "2**10"}),
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "42"},
        {"role": "tool", "tool_call_id": "call_b", "content": "1024"},
    ]
    assert second["tools"] == first["tools"]
    assert update.progress.choices[0].content == "42 and 1024."


async def test_stream_off_runs_the_same_loop(service: ChatService, fake: FakeOpenAI) -> None:
    fake.enqueue(
        Reply(content="", tool_calls=[call("c1", "calculator", {"expression": "1+1"})]),
        Reply(content="Two."),
    )
    update = await run(
        service, await uid(service), "1+1?", turn("calculator", params={"stream": False})
    )
    assert update.progress.choices[0].content == "Two."
    assert [r["json"]["stream"] for r in fake.requests] == [False, False]
    assert tool_messages(fake.requests[1]["json"]) == [
        {"role": "tool", "tool_call_id": "c1", "content": "2"}
    ]


async def test_parallel_calls_run_concurrently(service: ChatService, fake: FakeOpenAI) -> None:
    # Each call of `meet` returns only when the other one is running too.
    fake.enqueue(
        Reply(
            content="",
            tool_calls=[call("m1", "meet", {"name": "a"}), call("m2", "meet", {"name": "b"})],
        ),
        Reply(content="ok"),
    )
    await run(service, await uid(service), "meet", turn("meet"))
    assert tool_messages(fake.requests[1]["json"]) == [
        {"role": "tool", "tool_call_id": "m1", "content": "met a"},
        {"role": "tool", "tool_call_id": "m2", "content": "met b"},
    ]


async def test_each_failure_becomes_a_tool_result_and_the_turn_goes_on(
    service: ChatService, fake: FakeOpenAI
) -> None:
    calls = [
        call("bad_json", "calculator", '{"expression": "1+'),
        call("unknown", "no_such_tool", {}),
        call("schema", "calculator", {"expr": "1"}),
        call("raises", "fail", {"reason": "disk on fire"}),
        call("big", "huge", {}),
    ]
    fake.enqueue(
        Reply(content="", tool_calls=calls, tool_call_variant="whole"), Reply(content="Handled.")
    )
    update = await run(service, await uid(service), "go", turn("calculator", "fail", "huge"))
    assert update.state == "complete"
    results = {m["tool_call_id"]: m["content"] for m in tool_messages(fake.requests[1]["json"])}
    assert list(results) == ["bad_json", "unknown", "schema", "raises", "big"]
    assert results["bad_json"].startswith("Error: the arguments are not valid JSON")
    assert results["unknown"].startswith('Error: there is no tool named "no_such_tool"')
    assert results["schema"].startswith("Error: invalid arguments for calculator")
    assert results["raises"] == "Error: fail failed: RuntimeError: disk on fire"
    assert len(results["big"]) < 1200, len(results["big"])
    assert results["big"].startswith("x" * 1000 + "\n\n[Truncated: the result was 10,000,000")
    statuses = {v.call.id: v.status for v in update.progress.rounds[0].tools}
    assert statuses == {
        "bad_json": "error",
        "unknown": "error",
        "schema": "error",
        "raises": "error",
        "big": "done",
    }


@pytest.mark.parametrize("service", [{"TOOL_TIMEOUT": "0.2"}], indirect=True)
async def test_a_slow_tool_times_out_as_a_result(
    service: ChatService, fake: FakeOpenAI, hooks: Tools
) -> None:
    fake.enqueue(Reply(content="", tool_calls=[call("s1", "slow", {})]), Reply(content="ok"))
    update = await run(service, await uid(service), "wait", turn("slow"))
    assert update.state == "complete"
    [result] = tool_messages(fake.requests[1]["json"])
    assert result["content"] == "Error: slow did not finish within 0.2 s and was abandoned."
    assert hooks.cancelled.is_set()  # the async tool was cancelled, not left running


async def test_more_rounds_than_the_limit_end_the_turn_clearly(
    service: ChatService, fake: FakeOpenAI
) -> None:
    for number in range(4):  # TOOL_MAX_ROUNDS=3: the 4th request's calls are not run
        fake.enqueue(
            Reply(
                content=f"round {number}",
                tool_calls=[call(f"r{number}", "calculator", {"expression": "1"})],
            )
        )
    user_id = await uid(service)
    update = await run(service, user_id, "loop", turn("calculator"))
    assert len(fake.requests) == 4
    assert update.state == "complete"
    assert "Stopped after 3 rounds of tool calls" in user_message(update.error)
    path = await stored_path(service, user_id, update.conversation_id)
    assert [m.role for m in path] == ["user"] + ["assistant", "tool"] * 4
    assert path[-1].tool_status == "not_run" and "TOOL_MAX_ROUNDS" in user_message(path[-2].error)
    assert "工具调用达到 3 轮" in user_message(path[-2].error, "zh")
    # A follow-up replays every call with its result, so the provider accepts the history.
    fake.enqueue(Reply(content="fine"))
    await run(service, user_id, "and now?", turn("calculator"), update.conversation_id)
    replay = fake.requests[-1]["json"]["messages"]
    assert [m["role"] for m in replay] == (["user"] + ["assistant", "tool"] * 4 + ["user"])
    assert replay[-2] == {
        "role": "tool",
        "tool_call_id": "r3",
        "content": "This call was not run (the turn ended first).",
    }


async def test_history_is_stored_and_replayed_after_a_restart(
    service: ChatService, fake: FakeOpenAI
) -> None:
    fake.enqueue(
        Reply(
            content="Let me compute.",
            reasoning="Use the calculator.",
            tool_calls=[call("c1", "calculator", {"expression": "3*3"})],
        ),
        Reply(content="Nine."),
    )
    user_id = await uid(service)
    update = await run(service, user_id, "3*3?", turn("calculator"))
    path = await stored_path(service, user_id, update.conversation_id)
    assert [(m.role, m.state) for m in path] == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("tool", "complete"),
        ("assistant", "complete"),
    ]
    asked, result, answer = path[1], path[2], path[3]
    assert asked.content == "Let me compute." and asked.reasoning == "Use the calculator."
    assert asked.tool_calls == [wire("c1", "calculator", {"expression": "3*3"})]
    assert asked.finish_reason == "tool_calls" and asked.usage is not None
    assert (result.tool_call_id, result.name, result.content, result.tool_status) == (
        "c1",
        "calculator",
        "9",
        "done",
    )
    assert isinstance(result.timings["duration_ms"], int)
    assert answer.content == "Nine." and answer.parameters["tools"] == ["calculator"]
    # A follow-up replays the stored tool turn exactly. It is rebuilt from the database (the
    # service keeps nothing between turns), which is what a restarted server sees too.
    fake.enqueue(Reply(content="Yes."))
    await run(service, user_id, "sure?", turn(), update.conversation_id)
    assert fake.requests[-1]["json"]["messages"] == [
        {"role": "user", "content": "3*3?"},
        {
            "role": "assistant",
            "content": "Let me compute.",
            "tool_calls": [wire("c1", "calculator", {"expression": "3*3"})],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "9"},
        {"role": "assistant", "content": "Nine."},
        {"role": "user", "content": "sure?"},
    ]
    assert "tools" not in fake.requests[-1]["json"]  # no tools offered this time


async def test_deepseek_v31_gets_thinking_off_and_reasoning_back(
    service: ChatService, fake: FakeOpenAI
) -> None:
    model = "deepseek-ai/DeepSeek-V3.1-Terminus"
    fake.enqueue(
        Reply(
            content="",
            reasoning="Need math.",
            tool_calls=[call("c1", "calculator", {"expression": "2+3"})],
        ),
        Reply(content="5"),
    )
    await run(
        service,
        await uid(service),
        "2+3",
        turn("calculator", model=model, params={"enable_thinking": True}),
    )
    first, second = fake.requests[0]["json"], fake.requests[1]["json"]
    assert first["enable_thinking"] is False and second["enable_thinking"] is False
    assert second["messages"][-2]["reasoning_content"] == "Need math."
    # Without tools, the user's choice stands.
    fake.enqueue(Reply(content="hi"))
    await run(
        service, await uid(service), "hi", turn(model=model, params={"enable_thinking": True})
    )
    assert fake.requests[-1]["json"]["enable_thinking"] is True


async def test_reasoning_is_not_passed_back_for_other_models(
    service: ChatService, fake: FakeOpenAI
) -> None:
    fake.enqueue(
        Reply(
            content="",
            reasoning="Need math.",
            tool_calls=[call("c1", "calculator", {"expression": "2+3"})],
        ),
        Reply(content="5"),
    )
    await run(service, await uid(service), "2+3", turn("calculator"))
    assert "reasoning_content" not in fake.requests[1]["json"]["messages"][-2]


async def test_tool_choice_is_sent_in_the_providers_shape(
    service: ChatService, fake: FakeOpenAI
) -> None:
    user_id = await uid(service)
    await run(service, user_id, "a", turn("calculator", "current_time", tool_choice="calculator"))
    assert fake.requests[-1]["json"]["tool_choice"] == {
        "type": "function",
        "function": {"name": "calculator"},
    }
    await run(service, user_id, "b", turn("calculator", tool_choice="required"))
    assert fake.requests[-1]["json"]["tool_choice"] == "required"
    with pytest.raises(TurnRefused, match="no tool is offered"):
        await run(service, user_id, "c", turn(tool_choice="required"))
    with pytest.raises(TurnRefused, match="not one of the offered tools"):
        await run(service, user_id, "d", turn("calculator", tool_choice="current_time"))
    with pytest.raises(TurnRefused, match="unknown tools 'nope'"):
        await run(service, user_id, "e", turn("nope"))
    assert len(fake.requests) == 2  # refusals send nothing


async def test_n_is_ignored_while_tools_are_offered(service: ChatService, fake: FakeOpenAI) -> None:
    update = await run(service, await uid(service), "hi", turn("calculator", params={"n": 3}))
    assert "n" not in fake.requests[-1]["json"]
    assert any("Choices (n) is ignored" in note for note in update.notes)


async def approve_in_turn(
    service: ChatService, user_id: int, decision: bool | None, interactive: bool = True
) -> TurnUpdate:
    """Run a turn whose model asks for delete_everything, answering the approval request."""
    last = None
    stream = service.stream_turn(
        user_id=user_id,
        conversation_id=None,
        action=NewMessage("clean up"),
        turn=turn("delete_everything", interactive=interactive),
    )
    async with contextlib.aclosing(stream):
        async for update in stream:
            last = update
            waiting = update.progress.awaiting_approval
            if waiting and decision is not None:
                assert [c.name for c in waiting] == ["delete_everything"]
                # Another user cannot decide on this call.
                assert service.approvals.resolve(user_id + 1, update.conversation_id, True) is None
                assert (
                    service.approvals.resolve(user_id, update.conversation_id, decision) is not None
                )
    assert last is not None
    return last


@pytest.mark.parametrize(("decision", "expected"), [(True, "deleted /tmp/x"), (False, DENIED)])
async def test_a_call_that_needs_approval_waits_for_the_user(
    service: ChatService, fake: FakeOpenAI, decision: bool, expected: str
) -> None:
    fake.enqueue(
        Reply(content="", tool_calls=[call("d1", "delete_everything", {"target": "/tmp/x"})]),
        Reply(content="Done."),
    )
    update = await approve_in_turn(service, await uid(service), decision)
    assert update.state == "complete"
    assert tool_messages(fake.requests[1]["json"]) == [
        {"role": "tool", "tool_call_id": "d1", "content": expected}
    ]
    assert update.progress.rounds[0].tools[0].status == ("done" if decision else "denied")


async def test_through_the_api_a_call_needing_approval_is_not_run(
    service: ChatService, fake: FakeOpenAI
) -> None:
    fake.enqueue(
        Reply(content="", tool_calls=[call("d1", "delete_everything", {"target": "/tmp/x"})]),
        Reply(content="Could not."),
    )
    await approve_in_turn(service, await uid(service), None, interactive=False)
    assert tool_messages(fake.requests[1]["json"]) == [
        {"role": "tool", "tool_call_id": "d1", "content": APPROVAL_UNAVAILABLE}
    ]


async def test_stop_during_a_tool_call_cancels_it_and_keeps_what_is_done(
    service: ChatService, fake: FakeOpenAI, hooks: Tools
) -> None:
    fake.enqueue(
        Reply(
            content="Working on it.",
            tool_calls=[call("s1", "slow", {}), call("c1", "calculator", {"expression": "5*5"})],
        ),
        Reply(content="never requested"),
    )
    user_id = await uid(service)
    stream = service.stream_turn(
        user_id=user_id,
        conversation_id=None,
        action=NewMessage("go"),
        turn=turn("slow", "calculator"),
    )
    conversation_id = ""

    async def consume() -> None:
        nonlocal conversation_id
        async for update in stream:
            conversation_id = update.conversation_id
            if (
                hooks.started.is_set()
                and update.progress.tool("c1") is not None
                and (update.progress.tool("c1").result is not None)
            ):  # type: ignore[union-attr]
                return

    await consume()
    await stream.aclose()  # the viewer leaves: the run goes on ...
    assert service.live_turn(user_id, conversation_id) is not None
    assert await service.stop(user_id, conversation_id) == 1  # ... until Stop
    assert hooks.cancelled.is_set()
    assert len(fake.requests) == 1  # no further request upstream
    path = await stored_path(service, user_id, conversation_id)
    assert [m.role for m in path] == ["user", "assistant", "tool", "tool"]
    assert path[1].state == "stopped" and path[1].content == "Working on it."
    statuses = [(m.tool_call_id, m.tool_status, m.content) for m in path[2:]]
    assert statuses[0][:2] == ("s1", "cancelled") and statuses[1] == ("c1", "done", "25")


async def test_search_tool_sees_only_the_callers_conversations(
    service: ChatService, fake: FakeOpenAI
) -> None:
    alice, bob = await uid(service, "alice"), await uid(service, "bob")
    fake.enqueue(Reply(content="noted"))
    await run(service, alice, "my secret pineapple recipe", turn())
    search = call("q1", "search_conversations", {"query": "pineapple"})
    fake.enqueue(Reply(content="", tool_calls=[search]), Reply(content="none"))
    await run(service, bob, "find pineapple", turn("search_conversations"))
    [bob_result] = tool_messages(fake.requests[-1]["json"])
    # Bob's own new conversation matches ("find pineapple"); Alice's never appears.
    assert "secret" not in bob_result["content"]
    fake.enqueue(Reply(content="", tool_calls=[search]), Reply(content="found"))
    await run(service, alice, "search again", turn("search_conversations"))
    [alice_result] = tool_messages(fake.requests[-1]["json"])
    assert "my secret pineapple recipe" in alice_result["content"]


async def test_the_context_names_the_callers_conversation(
    service: ChatService, fake: FakeOpenAI
) -> None:
    fake.enqueue(Reply(content="", tool_calls=[call("w1", "whoami", {})]), Reply(content="ok"))
    update = await run(service, await uid(service), "who", turn("whoami"))
    [result] = tool_messages(fake.requests[1]["json"])
    assert result["content"] == update.conversation_id


async def test_tool_calls_when_no_tools_were_offered_are_stored_as_not_run(
    service: ChatService, fake: FakeOpenAI
) -> None:
    """A misbehaving server may send tool calls anyway: nothing runs, the history stays valid."""
    fake.enqueue(Reply(content="Hmm.", tool_calls=[call("x1", "calculator", {"expression": "1"})]))
    user_id = await uid(service)
    update = await run(service, user_id, "hi", turn())
    assert len(fake.requests) == 1 and "tools" not in fake.requests[0]["json"]
    path = await stored_path(service, user_id, update.conversation_id)
    assert [(m.role, m.tool_status) for m in path] == [
        ("user", None),
        ("assistant", None),
        ("tool", "not_run"),
    ]
    fake.enqueue(Reply(content="ok"))
    await run(service, user_id, "next", turn(), update.conversation_id)
    assert [m["role"] for m in fake.requests[-1]["json"]["messages"]] == [
        "user",
        "assistant",
        "tool",
        "user",
    ]


# A short approval wait, so that asking for approval (a bug) fails the test instead of hanging it.
@pytest.mark.parametrize("service", [{"TOOL_APPROVAL_TIMEOUT": "0.5"}], indirect=True)
async def test_a_tool_the_turn_did_not_offer_is_refused_and_never_runs(
    service: ChatService, fake: FakeOpenAI, hooks: Tools
) -> None:
    """A prompt-injected model names registered tools the user did not pick: none of them runs,
    none asks for approval, and the model is told they do not exist."""
    hooks.release.set()  # if `slow` ran anyway, it would return at once and fail the asserts
    user_id = await uid(service)
    fake.enqueue(Reply(content="noted"))
    await run(service, user_id, "my secret pineapple recipe", turn())
    calls = [
        call("s1", "search_conversations", {"query": "pineapple"}),
        call("s2", "slow", {}),
        call("s3", "delete_everything", {"target": "/"}),
        call("s4", "calculator", {"expression": "6*7"}),
    ]
    fake.enqueue(
        Reply(content="", tool_calls=calls, tool_call_variant="whole"), Reply(content="ok")
    )
    update = await run(service, user_id, "sum it up", turn("calculator"))
    assert update.state == "complete"
    results = {m["tool_call_id"]: m["content"] for m in tool_messages(fake.requests[-1]["json"])}
    refused = 'Error: there is no tool named "{}". Available tools: calculator.'
    assert results == {
        "s1": refused.format("search_conversations"),
        "s2": refused.format("slow"),
        "s3": refused.format("delete_everything"),
        "s4": "42",
    }
    assert not hooks.started.is_set()
    assert service.approvals.pending(user_id, update.conversation_id) == []
    statuses = {
        v.call.id: (v.status, v.result.error if v.result else None)
        for v in update.progress.rounds[0].tools
    }
    assert statuses["s1"] == statuses["s2"] == statuses["s3"] == ("error", "unknown tool")


async def test_with_tool_choice_none_every_call_is_refused(
    service: ChatService, fake: FakeOpenAI
) -> None:
    fake.enqueue(
        Reply(content="", tool_calls=[call("c1", "calculator", {"expression": "1"})]),
        Reply(content="ok"),
    )
    await run(service, await uid(service), "hi", turn("calculator", tool_choice="none"))
    assert fake.requests[0]["json"]["tool_choice"] == "none"
    assert tool_messages(fake.requests[1]["json"]) == [
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": 'Error: there is no tool named "calculator". Available tools: none.',
        }
    ]


@pytest.mark.parametrize("choice", ["required", "calculator"])
async def test_a_forced_tool_choice_applies_to_the_first_request_only(
    service: ChatService, fake: FakeOpenAI, choice: str
) -> None:
    """A server that obeys a forced choice would call tools forever if it were re-sent."""
    fake.enqueue(
        Reply(content="", tool_calls=[call("c1", "calculator", {"expression": "6*7"})]),
        Reply(content="", tool_calls=[call("c2", "calculator", {"expression": "1"})]),
        Reply(content="42."),
    )
    update = await run(service, await uid(service), "6*7?", turn("calculator", tool_choice=choice))
    assert update.state == "complete" and update.progress.choices[0].content == "42."
    sent = [r["json"]["tool_choice"] for r in fake.requests]
    forced = (
        choice if choice == "required" else {"type": "function", "function": {"name": "calculator"}}
    )
    assert sent == [forced, "auto", "auto"]


async def test_huge_or_multi_line_ids_and_names_from_the_provider_are_cut_not_fatal(
    service: ChatService, fake: FakeOpenAI
) -> None:
    """Storage refuses ids over its limits; what a server sends must still be saved."""
    long_id, long_name = "id\n" + "x" * 10_000, "calc\r\n" + "y" * 5_000
    fake.enqueue(
        Reply(
            content="",
            tool_calls=[call(long_id, long_name, {})],
            tool_call_variant="whole",
            finish_reason="stop\n" + "z" * 500,
        ),
        Reply(content="ok"),
    )
    user_id = await uid(service)
    update = await run(service, user_id, "go", turn("calculator"))
    assert update.state == "complete"
    path = await stored_path(service, user_id, update.conversation_id)
    asked, result = path[1], path[2]
    [stored_call] = asked.tool_calls or []
    assert stored_call["id"] == result.tool_call_id == ("idx" + "x" * 10_000)[:256]
    assert stored_call["function"]["name"] == result.name == ("calcy" + "y" * 5000)[:128]
    assert asked.finish_reason == ("stop" + "z" * 500)[:64]
    sent = fake.requests[1]["json"]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == sent[-1]["tool_call_id"] == stored_call["id"]
