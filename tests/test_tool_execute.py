"""ToolExecutor: every outcome of a tool call becomes a ToolResult the model can read."""

import asyncio
import dataclasses
import datetime
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from webapp.core.messages import ToolCall, ToolResult
from webapp.tools.context import ToolContext
from webapp.tools.execute import ToolExecutor, to_text
from webapp.tools.registry import ToolRegistry

CONTEXT = ToolContext(conversation_id="conv-1")


class _EveryName(frozenset[str]):
    """Offers every tool: these tests are about running a call, not about which are offered."""

    def __contains__(self, name: object) -> bool:
        return True


OFFERED = _EveryName()
# Upper bound so a broken executor fails a test instead of hanging it; never reached when correct.
GUARD_S = 10.0


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    if expression == "boom":
        raise ValueError("cannot parse 'boom'")
    return f"= {expression}"


def current_time() -> str:
    """The current time."""
    return "12:00"


@pytest.fixture
def registry() -> ToolRegistry:
    tools = ToolRegistry()
    tools.register(calculator)
    tools.register(current_time)
    return tools


@pytest.fixture
def executor(registry: ToolRegistry) -> Iterator[ToolExecutor]:
    running = ToolExecutor(registry)
    yield running
    running.close()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that blocked sync tools wait on; set at teardown so their threads end."""
    event = threading.Event()
    yield event
    event.set()


def call(name: str, arguments: str = "{}", call_id: str = "call_1") -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=arguments)


async def test_success(executor: ToolExecutor) -> None:
    result = await executor.run(call("calculator", '{"expression": "1+1"}', "c9"), CONTEXT, OFFERED)
    assert result == ToolResult(
        call_id="c9",
        name="calculator",
        arguments='{"expression": "1+1"}',
        content="= 1+1",
        status="done",
        duration_ms=result.duration_ms,
        error=None,
    )
    assert 0 <= result.duration_ms < 5_000


@pytest.mark.parametrize("arguments", ["", "  ", "{}"])
async def test_empty_arguments_mean_no_arguments(executor: ToolExecutor, arguments: str) -> None:
    result = await executor.run(call("current_time", arguments), CONTEXT, OFFERED)
    assert (result.status, result.content, result.arguments) == ("done", "12:00", arguments)


async def test_unknown_tool(executor: ToolExecutor) -> None:
    result = await executor.run(call("foo", '{"x": 1}'), CONTEXT, OFFERED)
    assert result.status == "error"
    assert result.error == "unknown tool"
    assert result.content == (
        'Error: there is no tool named "foo". Available tools: calculator, current_time.'
    )
    assert (result.call_id, result.name, result.arguments) == ("call_1", "foo", '{"x": 1}')


async def test_a_registered_tool_not_offered_is_refused_and_not_run(
    registry: ToolRegistry,
) -> None:
    ran: list[str] = []

    def http_get(url: str) -> str:
        """Fetch a page."""
        ran.append(url)
        return "page"

    registry.register(http_get)
    executor = ToolExecutor(registry)
    try:
        result = await executor.run(
            call("http_get", '{"url": "http://x/?q=secret"}'), CONTEXT, ("calculator",)
        )
        nothing = await executor.run(call("calculator", '{"expression": "1"}'), CONTEXT, ())
    finally:
        executor.close()
    assert ran == []
    assert (result.status, result.error) == ("error", "unknown tool")
    assert result.content == (
        'Error: there is no tool named "http_get". Available tools: calculator.'
    )
    assert (nothing.status, nothing.error) == ("error", "unknown tool")
    assert nothing.content.endswith("Available tools: none.")


async def test_unknown_tool_with_empty_registry() -> None:
    executor = ToolExecutor(ToolRegistry())
    try:
        result = await executor.run(call("foo"), CONTEXT, OFFERED)
    finally:
        executor.close()
    assert result.content == 'Error: there is no tool named "foo". Available tools: none.'


@pytest.mark.parametrize(
    ("arguments", "detail"),
    [
        ('{"expression": ', "Expecting value at column 16"),
        ("{'expression': '1'}", "Expecting property name enclosed in double quotes at column 2"),
        ('{"a": 1}\n{"b": 2}', "Extra data at line 2, column 1"),
    ],
)
async def test_invalid_json(executor: ToolExecutor, arguments: str, detail: str) -> None:
    result = await executor.run(call("calculator", arguments), CONTEXT, OFFERED)
    assert (result.status, result.error) == ("error", "invalid JSON")
    assert result.content == (
        f"Error: the arguments are not valid JSON ({detail}). "
        "Send a JSON object matching the tool's schema."
    )
    assert result.arguments == arguments


@pytest.mark.parametrize(
    ("arguments", "kind"),
    [("[1, 2]", "an array"), ('"1+1"', "a string"), ("42", "a number"), ("true", "a boolean")]
    + [("null", "null")],
)
async def test_arguments_not_an_object(executor: ToolExecutor, arguments: str, kind: str) -> None:
    result = await executor.run(call("calculator", arguments), CONTEXT, OFFERED)
    assert (result.status, result.error) == ("error", "arguments not an object")
    assert result.content == (
        f"Error: the arguments must be a JSON object, not {kind}. "
        "Send a JSON object matching the tool's schema."
    )


async def test_schema_violation(executor: ToolExecutor) -> None:
    result = await executor.run(call("calculator", '{"expr": "1"}'), CONTEXT, OFFERED)
    assert (result.status, result.error) == ("error", "invalid arguments")
    assert result.content == (
        "Error: invalid arguments for calculator: expression: required, but missing; "
        "expr: unexpected argument (accepted arguments: expression). "
        "Fix these and call the tool again with arguments matching its schema."
    )


async def test_tool_exception(executor: ToolExecutor, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="webapp.tools.execute"):
        result = await executor.run(call("calculator", '{"expression": "boom"}'), CONTEXT, OFFERED)
    assert result.status == "error"
    assert result.content == "Error: calculator failed: ValueError: cannot parse 'boom'"
    assert result.error == "ValueError: cannot parse 'boom'"
    (record,) = [r for r in caplog.records if r.name == "webapp.tools.execute"]
    assert record.levelno == logging.WARNING
    assert record.exc_info is not None and record.exc_info[0] is ValueError


async def test_async_tool_exception_and_tool_own_timeout_error(registry: ToolRegistry) -> None:
    @registry.register
    async def flaky() -> str:
        """Flaky."""
        raise TimeoutError

    @registry.register
    def quits() -> str:
        """Quits."""
        raise SystemExit(3)

    executor = ToolExecutor(registry)
    try:
        flaky_result = await executor.run(call("flaky"), CONTEXT, OFFERED)
        quits_result = await executor.run(call("quits"), CONTEXT, OFFERED)
    finally:
        executor.close()
    # The tool's own TimeoutError is a failure of the tool, not our timeout.
    assert (flaky_result.status, flaky_result.content) == (
        "error",
        "Error: flaky failed: TimeoutError",
    )
    assert (quits_result.status, quits_result.content) == (
        "error",
        "Error: quits failed: SystemExit: 3",
    )


async def test_async_tool_timeout_cancels_it(registry: ToolRegistry) -> None:
    cancelled = asyncio.Event()

    @registry.register(timeout_s=0.2)
    async def hangs() -> str:
        """Never finishes."""
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "unreachable"

    executor = ToolExecutor(registry)
    try:
        result = await asyncio.wait_for(executor.run(call("hangs"), CONTEXT, OFFERED), GUARD_S)
    finally:
        executor.close()
    assert (result.status, result.error) == ("timeout", "timeout")
    assert result.content == "Error: hangs did not finish within 0.2 s and was abandoned."
    assert cancelled.is_set()
    assert result.duration_ms >= 200


async def test_executor_default_timeout(registry: ToolRegistry) -> None:
    @registry.register
    async def hangs() -> str:
        """Never finishes."""
        await asyncio.Event().wait()
        return "unreachable"

    executor = ToolExecutor(registry, timeout_s=0.25)
    try:
        result = await asyncio.wait_for(executor.run(call("hangs"), CONTEXT, OFFERED), GUARD_S)
    finally:
        executor.close()
    assert result.status == "timeout"
    assert result.content == "Error: hangs did not finish within 0.25 s and was abandoned."


async def test_blocking_sync_tool_timeout(registry: ToolRegistry, release: threading.Event) -> None:
    entered = threading.Event()
    finished = threading.Event()

    @registry.register(timeout_s=0.2)
    def blocks() -> str:
        """Blocks until released."""
        entered.set()
        release.wait(GUARD_S)
        finished.set()
        return "late"

    executor = ToolExecutor(registry)
    try:
        result = await executor.run(call("blocks"), CONTEXT, OFFERED)
        assert entered.is_set()
        assert not finished.is_set()  # abandoned, not killed: the thread still waits
        assert result.status == "timeout"
        assert result.content == "Error: blocks did not finish within 0.2 s and was abandoned."
        # The event loop stays free while the thread is stuck.
        other = await executor.run(call("current_time"), CONTEXT, OFFERED)
        assert other.content == "12:00"
    finally:
        release.set()
        executor.close()


async def test_sync_tool_runs_off_the_event_loop_thread(registry: ToolRegistry) -> None:
    seen: list[int] = []

    @registry.register
    def where() -> str:
        """Which thread."""
        seen.append(threading.get_ident())
        return threading.current_thread().name

    executor = ToolExecutor(registry)
    try:
        result = await executor.run(call("where"), CONTEXT, OFFERED)
    finally:
        executor.close()
    assert seen and seen[0] != threading.get_ident()
    assert result.content.startswith("parley-tool")  # our own pool, not the default executor


async def test_async_tool_runs_on_the_loop(registry: ToolRegistry) -> None:
    @registry.register
    async def where_async() -> int:
        """Which thread."""
        return threading.get_ident()

    executor = ToolExecutor(registry)
    try:
        result = await executor.run(call("where_async"), CONTEXT, OFFERED)
    finally:
        executor.close()
    assert result.content == str(threading.get_ident())


@pytest.mark.parametrize("is_async", [False, True])
async def test_context_injected(registry: ToolRegistry, is_async: bool) -> None:
    received: list[Any] = []

    def remember(topic: str, ctx: ToolContext) -> str:
        received.append((topic, ctx))
        return "ok"

    async def remember_async(topic: str, ctx: ToolContext) -> str:
        return remember(topic, ctx)

    function = remember_async if is_async else remember
    registry.register(function, name="remember", description="Remember a topic.")
    executor = ToolExecutor(registry)
    try:
        result = await executor.run(call("remember", '{"topic": "x"}'), CONTEXT, OFFERED)
    finally:
        executor.close()
    assert result.content == "ok"
    assert received == [("x", CONTEXT)]
    assert received[0][1] is CONTEXT


async def test_cancellation_propagates_and_cancels_async_tool(registry: ToolRegistry) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @registry.register
    async def slow() -> str:
        """Slow."""
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "unreachable"

    executor = ToolExecutor(registry)
    try:
        task = asyncio.create_task(executor.run(call("slow"), CONTEXT, OFFERED))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        executor.close()
    assert cancelled.is_set()


async def test_cancellation_while_sync_tool_blocks(
    registry: ToolRegistry, release: threading.Event
) -> None:
    entered = threading.Event()

    @registry.register
    def blocks() -> str:
        """Blocks."""
        entered.set()
        release.wait(GUARD_S)
        return "late"

    executor = ToolExecutor(registry)
    try:
        task = asyncio.create_task(executor.run(call("blocks"), CONTEXT, OFFERED))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        release.set()
        executor.close()


async def test_oversized_result_is_truncated(registry: ToolRegistry) -> None:
    @registry.register
    def huge() -> str:
        """Huge."""
        return "x" * 10_485_760

    executor = ToolExecutor(registry)
    try:
        result = await executor.run(call("huge"), CONTEXT, OFFERED)
    finally:
        executor.close()
    assert result.status == "done"
    assert result.content == "x" * 20_000 + (
        "\n\n[Truncated: the result was 10,485,760 characters; only the first 20,000 are included.]"
    )


async def test_result_at_the_limit_is_kept(registry: ToolRegistry) -> None:
    @registry.register
    def exact() -> str:
        """Exact."""
        return "y" * 50

    executor = ToolExecutor(registry, max_result_chars=50)
    try:
        result = await executor.run(call("exact"), CONTEXT, OFFERED)
    finally:
        executor.close()
    assert result.content == "y" * 50


class Reading(BaseModel):
    city: str
    degrees: float


@dataclasses.dataclass
class Point:
    x: int
    label: str


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        ("", "(no output)"),
        (None, "(no output)"),
        ({"a": [1, 2], "é": True}, '{"a": [1, 2], "é": true}'),
        ([1, "two"], '[1, "two"]'),
        (42, "42"),
        (1.5, "1.5"),
        (False, "false"),
        (Reading(city="Zürich", degrees=3.5), '{"city": "Zürich", "degrees": 3.5}'),
        (Point(1, "p"), '{"x": 1, "label": "p"}'),
        ([Reading(city="a", degrees=1)], '[{"city": "a", "degrees": 1.0}]'),
        ({"when": datetime.date(2024, 1, 2)}, '{"when": "2024-01-02"}'),
    ],
)
def test_result_conversion(value: Any, text: str) -> None:
    assert to_text(value) == text


async def test_unconvertible_result_is_an_error(registry: ToolRegistry) -> None:
    @registry.register
    def circular() -> list[Any]:
        """Circular."""
        loop: list[Any] = []
        loop.append(loop)
        return loop

    executor = ToolExecutor(registry)
    try:
        result = await executor.run(call("circular"), CONTEXT, OFFERED)
    finally:
        executor.close()
    assert result.status == "error"
    assert result.content == "Error: circular failed: ValueError: Circular reference detected"
