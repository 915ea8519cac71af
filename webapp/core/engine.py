"""One turn against a provider: stream the answer, run the tools it asks for, ask again.

Knows nothing of Gradio or the database. The loop follows choice 0 (with tools on, the
service sends n=1); tool calls of one answer run concurrently, and their events arrive as
they happen. Results go back as `role: "tool"` messages, up to `max_rounds` rounds; images
a tool returned follow them as a user message when the model takes images.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from webapp.core.attachments import tool_images_message
from webapp.core.messages import (
    ChatMessage,
    ReasoningDelta,
    RequestSized,
    RoundStarted,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallFinished,
    ToolCallsReady,
    ToolCallStarted,
    ToolResult,
    ToolRoundLimit,
    TurnEvent,
)
from webapp.core.token_estimate import prompt_tokens

DENIED = "The user denied this call, so it was not run. Do not retry it; ask the user if needed."
APPROVAL_UNAVAILABLE = (
    "This tool needs a person's approval, which is not available here (the request came "
    "through the API), so it was not run."
)
APPROVAL_TIMEOUT = "Nobody approved this call in time, so it was not run."


class StreamingClient(Protocol):
    """What the engine needs from a provider client."""

    def stream_chat(
        self, body: dict[str, Any], *, api_key: str = ""
    ) -> AsyncIterator[StreamEvent]: ...


# Asks the user to approve a call: True approve, False deny, None no answer in time.
Approver = Callable[[ToolCall], Awaitable[bool | None]]


@dataclass(frozen=True, slots=True)
class ToolSetup:
    """The tools offered in a turn and how to run them (bound to the user by the caller)."""

    schemas: list[dict[str, Any]]  # the request's `tools`
    run: Callable[[ToolCall], Awaitable[ToolResult]]  # never raises except CancelledError
    offered: frozenset[str]  # the tools a call may name; any other call is refused, not run
    needs_approval: Callable[[str], bool]
    tool_choice: str | dict[str, Any] | None = None
    max_rounds: int = 8
    approve: Approver | None = None  # None: nobody can approve (API); such calls are refused
    reasoning_passback: bool = False  # send reasoning back with tool calls (DeepSeek, Kimi)
    images: bool = False  # the model takes images: tools' images follow their tool messages


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """Everything needed to run one turn."""

    model: str
    messages: list[ChatMessage]
    params: dict[str, Any] = field(default_factory=dict)  # validated, filtered request params
    api_key: str = field(default="", repr=False)  # the key to send; never in reprs or logs


def build_body(
    request: TurnRequest,
    messages: list[ChatMessage] | None = None,
    tools: ToolSetup | None = None,
    *,
    round_number: int = 0,
) -> dict[str, Any]:
    """The JSON body for POST /chat/completions (round 0 asks first; later rounds follow tools).

    A forced tool_choice ("required" or one named tool) applies to the first request only:
    re-sent after the results, a server that obeys it could never answer, only call again.
    """
    body: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages if messages is None else messages,
        **request.params,
    }
    if tools is not None and tools.schemas:
        body["tools"] = tools.schemas
        choice = tools.tool_choice
        if round_number and choice is not None and choice != "none":
            choice = "auto"
        if choice is not None:
            body["tool_choice"] = choice
    return body


def tool_call_message(
    content: str, reasoning: str, calls: tuple[ToolCall, ...], *, reasoning_passback: bool
) -> ChatMessage:
    """The assistant message that carried tool calls, as it is sent back to the provider."""
    message: ChatMessage = {
        "role": "assistant",
        "content": content,  # "" rather than None: some servers reject a null content
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ],
    }
    if reasoning_passback and reasoning:
        message["reasoning_content"] = reasoning
    return message


def tool_message(result: ToolResult) -> ChatMessage:
    return {"role": "tool", "tool_call_id": result.call_id, "content": result.content}


async def run_turn(
    client: StreamingClient, request: TurnRequest, tools: ToolSetup | None = None
) -> AsyncGenerator[TurnEvent, None]:
    """Stream the answer; while it asks for tools, run them and ask again."""
    messages = list(request.messages)
    round_number = 0
    while True:
        if round_number:
            yield RoundStarted(round_number)
        content, reasoning = "", ""
        calls: tuple[ToolCall, ...] = ()
        body = build_body(request, messages, tools, round_number=round_number)
        yield RequestSized(prompt_tokens(body["messages"], body.get("tools")))
        stream = client.stream_chat(body, api_key=request.api_key)
        async with _closing(stream):
            async for event in stream:
                yield event
                if getattr(event, "choice", 0) != 0:
                    continue
                if isinstance(event, TextDelta):
                    content += event.text
                elif isinstance(event, ReasoningDelta):
                    reasoning += event.text
                elif isinstance(event, ToolCallsReady):
                    calls = event.calls
        if not calls or tools is None:
            return
        if round_number >= tools.max_rounds:
            yield ToolRoundLimit(round_number)
            return
        results: dict[str, ToolResult] = {}
        async with contextlib.aclosing(run_calls(calls, tools)) as tool_events:
            async for tool_event in tool_events:
                if isinstance(tool_event, ToolCallFinished):
                    results[tool_event.result.call_id] = tool_event.result
                yield tool_event
        messages.append(
            tool_call_message(
                content, reasoning, calls, reasoning_passback=tools.reasoning_passback
            )
        )
        messages.extend(tool_message(results[call.id]) for call in calls)
        if tools.images:
            shown = tool_images_message((results[c.id].name, results[c.id].images) for c in calls)
            if shown is not None:
                messages.append(shown)  # tool messages carry text only
        round_number += 1


@contextlib.asynccontextmanager
async def _closing(stream: AsyncIterator[StreamEvent]) -> AsyncIterator[None]:
    """Close the provider stream (and so its HTTP response) when the turn ends early."""
    try:
        yield
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def run_calls(
    calls: tuple[ToolCall, ...], tools: ToolSetup
) -> AsyncGenerator[ToolCallStarted | ToolCallFinished, None]:
    """Run the calls of one answer concurrently, yielding their events as they happen.

    Closing this generator (Stop) cancels every call still running or awaiting approval.
    """
    queue: asyncio.Queue[ToolCallStarted | ToolCallFinished] = asyncio.Queue()

    async def one(call: ToolCall) -> None:
        try:
            if call.name not in tools.offered:
                queue.put_nowait(ToolCallFinished(_not_offered(call, tools)))
                return
            if tools.needs_approval(call.name):
                queue.put_nowait(ToolCallStarted(call, "awaiting_approval"))
                refusal = await _approval(call, tools)
                if refusal is not None:
                    queue.put_nowait(ToolCallFinished(refusal))
                    return
            queue.put_nowait(ToolCallStarted(call, "running"))
            result = await tools.run(call)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the runner should not raise; never leave the loop waiting
            result = ToolResult(
                call.id,
                call.name,
                call.arguments,
                f"Error: {call.name} failed: {type(exc).__name__}: {exc}",
                "error",
                error=type(exc).__name__,
            )
        queue.put_nowait(ToolCallFinished(result))

    tasks = [asyncio.create_task(one(call)) for call in calls]
    try:
        finished = 0
        while finished < len(calls):
            event = await queue.get()
            finished += isinstance(event, ToolCallFinished)
            yield event
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


def _not_offered(call: ToolCall, tools: ToolSetup) -> ToolResult:
    """The result for a call to a tool this turn did not offer: refused, never run or asked."""
    available = ", ".join(sorted(tools.offered)) or "none"
    return ToolResult(
        call.id,
        call.name,
        call.arguments,
        f'Error: there is no tool named "{call.name}". Available tools: {available}.',
        "error",
        error="unknown tool",
    )


async def _approval(call: ToolCall, tools: ToolSetup) -> ToolResult | None:
    """None when the call may run; otherwise the result that explains why it did not."""
    if tools.approve is None:
        text, status = APPROVAL_UNAVAILABLE, "approval unavailable"
    else:
        decision = await tools.approve(call)
        if decision:
            return None
        text, status = (DENIED, "denied") if decision is False else (APPROVAL_TIMEOUT, "no answer")
    return ToolResult(call.id, call.name, call.arguments, text, "denied", error=status)
