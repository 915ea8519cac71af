"""One turn against a provider: build the body, stream, yield typed events.

Knows nothing of Gradio or the database. Tool execution will plug in here (the loop over
`ToolCallsReady`); for now a turn is a single streamed completion.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from webapp.messages import ChatMessage, StreamEvent


class StreamingClient(Protocol):
    """What the engine needs from a provider client."""

    def stream_chat(self, body: dict[str, Any], *, api_key: str = "") -> AsyncIterator[StreamEvent]:
        ...


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """Everything needed to run one turn."""

    model: str
    messages: list[ChatMessage]
    params: dict[str, Any] = field(default_factory=dict)  # validated, filtered request params
    api_key: str = field(default="", repr=False)  # the key to send; never in reprs or logs


def build_body(request: TurnRequest) -> dict[str, Any]:
    """The JSON body for POST /chat/completions."""
    return {"model": request.model, "messages": request.messages, **request.params}


async def run_turn(client: StreamingClient, request: TurnRequest) -> AsyncIterator[StreamEvent]:
    """Stream one completion, yielding provider events as they arrive."""
    async for event in client.stream_chat(build_body(request), api_key=request.api_key):
        yield event
