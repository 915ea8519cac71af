"""SSE decoding and chunk handling, fed hand-written bytes through httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from webapp.config import ProviderConfig, Secret
from webapp.core.messages import (
    ChoiceFinished,
    ReasoningDelta,
    StreamEvent,
    StreamStarted,
    TextDelta,
    ToolCall,
    ToolCallsReady,
    Usage,
)
from webapp.provider.client import (
    MalformedResponse,
    ProviderClient,
    StreamInterrupted,
    UpstreamStreamError,
)
from webapp.provider.sse import SSEDecoder, SSEMessage, ThinkSplitter, ToolCallAssembler

CONFIG = ProviderConfig(
    name="siliconflow",
    label="SiliconFlow",
    base_url="https://api.example.test/v1",
    key_env="SILICONFLOW_API_KEY",
    api_key=Secret("sk-test"),
    kind="siliconflow",
)


def sse(*chunks: Any, done: bool = True, eol: str = "\n") -> bytes:
    """Hand-written SSE: each chunk a dict (JSON-encoded) or a raw line string."""
    out = []
    for chunk in chunks:
        line = chunk if isinstance(chunk, str) else "data: " + json.dumps(chunk)
        out.append(line + eol + eol)
    if done:
        out.append("data: [DONE]" + eol + eol)
    return "".join(out).encode()


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    """A chunk with one choice delta."""
    return {"choices": [{"index": index, "delta": fields, "finish_reason": finish}]}


async def _pieces(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def run(
    body: bytes | list[bytes],
    *,
    status: int = 200,
    content_type: str = "text/event-stream",
    seen: list[httpx.Request] | None = None,
    request_body: dict[str, Any] | None = None,
) -> list[StreamEvent]:
    """Stream one chat completion from a MockTransport answering with `body`."""

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        content = _pieces(body) if isinstance(body, list) else body
        return httpx.Response(status, headers={"content-type": content_type}, content=content)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = ProviderClient(http, CONFIG)
        return [e async for e in client.stream_chat(request_body or {"model": "m"})]


async def run_until_error(body: bytes, exc: type[Exception]) -> tuple[list[StreamEvent], Any]:
    """Collect events until the stream raises `exc`."""
    events: list[StreamEvent] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = ProviderClient(http, CONFIG)
        with pytest.raises(exc) as info:
            async for event in client.stream_chat({"model": "m"}):
                events.append(event)
    return events, info.value


def text_of(events: list[StreamEvent], choice: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.choice == choice)


def reasoning_of(events: list[StreamEvent], choice: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, ReasoningDelta) and e.choice == choice)


# -- the pure decoder ----------------------------------------------------------------------


def feed_all(lines: list[str]) -> list[SSEMessage]:
    decoder = SSEDecoder()
    out = [m for line in lines for m in decoder.feed(line)]
    return out + decoder.flush()


def test_decoder_fields_comments_and_blank_lines() -> None:
    lines = [": ping", "", "event: message", "id: 7", "retry: 10", 'data:{"a":1}', "", "", ""]
    assert feed_all(lines) == [SSEMessage('{"a":1}', "message", "7")]


def test_decoder_joins_multiline_data_with_newline() -> None:
    assert feed_all(['data: {"a":', "data: 1}", ""]) == [SSEMessage('{"a":\n1}')]
    assert json.loads(feed_all(['data: {"a":', "data: 1}", ""])[0].data) == {"a": 1}


def test_decoder_splits_events_without_blank_line_between() -> None:
    messages = feed_all(['data: {"a":1}', 'data: {"b":2}', "data: [DONE]"])
    assert [m.data for m in messages] == ['{"a":1}', '{"b":2}', "[DONE]"]


def test_decoder_strips_bom_crlf_and_only_one_space() -> None:
    messages = feed_all(["\ufeffdata:  two spaces\r", ""])
    assert messages == [SSEMessage(" two spaces")]


def test_decoder_keeps_stray_lines_for_diagnosis() -> None:
    decoder = SSEDecoder()
    assert decoder.feed('{"error": {"message": "boom"}}') == []
    assert decoder.stray == ['{"error": {"message": "boom"}}']


# -- framing through httpx -----------------------------------------------------------------


async def test_crlf_comments_keepalives_and_data_without_space() -> None:
    body = (
        b": ping\r\n\r\n"
        b"\r\n"
        b'data:{"choices":[{"index":0,"delta":{"content":"Hel"}}]}\r\n\r\n'
        b": keep-alive\r\n"
        b"event: message\r\nid: 2\r\n"
        b'data: {"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}\r\n\r\n'
        b"data: [DONE]\r\n\r\n"
    )
    events = await run(body)
    assert events == [
        StreamStarted(1),
        TextDelta("Hel"),
        TextDelta("lo"),
        ChoiceFinished("stop"),
    ]


async def test_lines_split_across_network_reads() -> None:
    body = sse(delta(content="Hello"), delta(finish="stop"))
    parts = [body[i : i + 3] for i in range(0, len(body), 3)]
    events = await run(parts)
    assert text_of(events) == "Hello"
    assert events[-1] == ChoiceFinished("stop")


async def test_siliconflow_shape_running_usage_and_reasoning_tokens() -> None:
    def usage(completion: int, reasoning: int) -> dict[str, Any]:
        return {
            "prompt_tokens": 9,
            "completion_tokens": completion,
            "total_tokens": 9 + completion,
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }

    chunks = [
        delta(finish="", content="", reasoning_content=None, role="assistant")
        | {"usage": usage(0, 0)},
        delta(finish="", content=None, reasoning_content="Think", role="assistant")
        | {"usage": usage(1, 1)},
        delta(finish="", content="Ans", reasoning_content=None, role="assistant")
        | {"usage": usage(2, 1)},
        delta(finish="", content="wer", reasoning_content=None, role="assistant")
        | {"usage": usage(2, 1)},  # an unchanged usage is not repeated
        delta(finish="stop", content="", reasoning_content=None) | {"usage": usage(3, 1)},
    ]
    events = await run(sse(*chunks))
    assert events == [
        StreamStarted(1),
        Usage(9, 0, 0, 9),
        ReasoningDelta("Think"),
        Usage(9, 1, 1, 10),
        TextDelta("Ans"),
        Usage(9, 2, 1, 11),
        TextDelta("wer"),
        ChoiceFinished("stop"),
        Usage(9, 3, 1, 12),
    ]


async def test_openai_usage_only_chunk_with_empty_choices() -> None:
    chunks = [
        delta(role="assistant", content="") | {"usage": None},
        delta(content="Hi") | {"usage": None},
        delta(finish="length") | {"usage": None},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
    ]
    events = await run(sse(*chunks))
    assert events == [
        StreamStarted(1),
        TextDelta("Hi"),
        ChoiceFinished("length"),
        Usage(5, 2, 0, 7),
    ]


async def test_eos_counts_as_finish_and_falsy_finish_does_not() -> None:
    events = await run(sse(delta(content="a", finish=""), delta(content="b"), delta(finish="eos")))
    assert [e for e in events if isinstance(e, ChoiceFinished)] == [ChoiceFinished("stop")]
    assert text_of(events) == "ab"


async def test_malformed_json_line_is_skipped() -> None:
    body = sse(delta(content="A"), "data: {not json", "data: ", delta(content="B", finish="stop"))
    events = await run(body)
    assert text_of(events) == "AB"
    assert events[-1] == ChoiceFinished("stop")


async def test_all_garbage_raises_malformed_response() -> None:
    body = sse("data: {oops", "data: <html>", done=False)
    _, error = await run_until_error(body, MalformedResponse)
    assert error.provider == "SiliconFlow"
    assert "2 malformed" in error.detail


async def test_error_object_in_a_200_event_stream_body() -> None:
    body = b'{"error": {"message": "Insufficient balance", "code": 30001}}'
    _, error = await run_until_error(body, UpstreamStreamError)
    assert error.detail == "Insufficient balance"
    assert error.key_env == "SILICONFLOW_API_KEY"


async def test_mid_stream_error_object_raises_after_partial_text() -> None:
    body = sse(
        delta(content="Par"),
        {"error": {"message": "Model crashed mid-answer", "type": "internal_error"}},
        done=False,
    )
    events, error = await run_until_error(body, UpstreamStreamError)
    assert text_of(events) == "Par"
    assert error.detail == "Model crashed mid-answer"
    assert error.provider == "SiliconFlow"
    assert error.retryable is False


async def test_code_message_object_mid_stream_is_an_error() -> None:
    body = sse(delta(content="x"), {"code": 50505, "message": "Model service overloaded"})
    _, error = await run_until_error(body, UpstreamStreamError)
    assert error.detail == "Model service overloaded"


async def test_clean_eof_without_done_or_finish_is_interrupted() -> None:
    events, error = await run_until_error(sse(delta(content="half"), done=False), StreamInterrupted)
    assert text_of(events) == "half"
    assert "[DONE]" in error.detail


async def test_finish_without_done_is_complete() -> None:
    events = await run(sse(delta(content="ok", finish="stop"), done=False))
    assert events[-1] == ChoiceFinished("stop")


async def test_whole_json_completion_when_server_ignores_stream() -> None:
    payload = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Full", "reasoning_content": "r"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    events = await run(json.dumps(payload).encode(), content_type="application/json")
    assert events == [
        StreamStarted(1),
        ReasoningDelta("r"),
        TextDelta("Full"),
        ChoiceFinished("stop"),
        Usage(1, 2, 0, 3),
    ]


async def test_request_streams_with_usage_by_default_and_caller_body_untouched() -> None:
    seen: list[httpx.Request] = []
    body = {"model": "m", "messages": []}
    await run(sse(delta(finish="stop")), seen=seen, request_body=body)
    sent = json.loads(seen[0].content)
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert seen[0].headers["accept"] == "text/event-stream"
    assert body == {"model": "m", "messages": []}
    assert seen[0].url == "https://api.example.test/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-test"


async def test_existing_stream_options_are_kept() -> None:
    seen: list[httpx.Request] = []
    body = {"model": "m", "stream_options": {"include_usage": False}}
    await run(sse(delta(finish="stop")), seen=seen, request_body=body)
    assert json.loads(seen[0].content)["stream_options"] == {"include_usage": False}


# -- inline <think> tags -------------------------------------------------------------------


async def test_think_tags_split_across_chunks() -> None:
    pieces = ["  <thi", "nk>", "Let me ", "see.</th", "ink>\n\n", "The ans", "wer."]
    chunks = [delta(content=p) for p in pieces] + [delta(finish="stop")]
    events = await run(sse(*chunks))
    assert reasoning_of(events) == "Let me see."
    assert text_of(events) == "The answer."
    kinds = [type(e) for e in events if isinstance(e, TextDelta | ReasoningDelta)]
    assert kinds.index(TextDelta) > max(i for i, k in enumerate(kinds) if k is ReasoningDelta)


async def test_think_tag_later_in_answer_is_left_alone() -> None:
    chunks = [delta(content="Use <think>"), delta(content=" tags</think> like this"), delta()]
    events = await run(sse(*chunks))
    assert text_of(events) == "Use <think> tags</think> like this"
    assert reasoning_of(events) == ""


def test_think_splitter_edge_cases() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("<") == []
    assert splitter.feed("b>bold") == [(False, "<b>bold")]

    unclosed = ThinkSplitter()
    assert unclosed.feed("<think>still thinking</") == [(True, "still thinking")]
    assert unclosed.flush() == [(True, "</")]

    partial = ThinkSplitter()
    assert partial.feed("<thi") == []
    assert partial.flush() == [(False, "<thi")]


async def test_think_tags_are_per_choice() -> None:
    chunks = [
        delta(0, content="<think>a</think>A"),
        delta(1, content="B <think>b</think>"),
        delta(0, finish="stop"),
        delta(1, finish="stop"),
    ]
    events = await run(sse(*chunks))
    assert (reasoning_of(events, 0), text_of(events, 0)) == ("a", "A")
    assert (reasoning_of(events, 1), text_of(events, 1)) == ("", "B <think>b</think>")


# -- tool calls ----------------------------------------------------------------------------


def tc(index: int | None, id: Any = None, name: Any = None, args: Any = None) -> dict[str, Any]:
    piece: dict[str, Any] = {} if index is None else {"index": index}
    function: dict[str, Any] = {}
    if id is not None:
        piece["id"] = id
        piece["type"] = "function"
    if name is not None:
        function["name"] = name
    if args is not None:
        function["arguments"] = args
    piece["function"] = function
    return piece


WEATHER = ToolCall("call_a", "get_weather", '{"city": "Paris"}')
TIME = ToolCall("call_b", "get_time", '{"tz": "UTC"}')

TOOL_VARIANTS: dict[str, list[list[dict[str, Any]]]] = {
    "first_only": [
        [tc(0, "call_a", "get_weather", "")],
        [tc(0, args='{"city"')],
        [tc(0, args=': "Paris"}')],
    ],
    "null_later": [
        [tc(0, "call_a", "get_weather", '{"ci')],
        [{"index": 0, "id": None, "type": None, "function": {"name": None, "arguments": 'ty"'}}],
        [{"index": 0, "id": None, "function": {"name": None, "arguments": ': "Paris"}'}}],
    ],
    "empty_later": [
        [tc(0, "call_a", "get_weather", "")],
        [tc(0, "", "", '{"city": ')],
        [tc(0, "", "", '"Paris"}')],
    ],
    "repeated": [
        [tc(0, "call_a", "get_weather", '{"city": ')],
        [tc(0, "call_a", "get_weather", '"Paris"}')],
    ],
    "whole": [[tc(0, "call_a", "get_weather", '{"city": "Paris"}')]],
}


@pytest.mark.parametrize("variant", sorted(TOOL_VARIANTS))
async def test_tool_call_variants(variant: str) -> None:
    chunks = [delta(tool_calls=pieces, content=None) for pieces in TOOL_VARIANTS[variant]]
    events = await run(sse(*chunks, delta(finish="tool_calls")))
    assert events[-2:] == [ToolCallsReady((WEATHER,)), ChoiceFinished("tool_calls")]


async def test_interleaved_parallel_tool_calls() -> None:
    chunks = [
        delta(tool_calls=[tc(0, "call_a", "get_weather", "")]),
        delta(tool_calls=[tc(1, "call_b", "get_time", '{"tz"')]),
        delta(tool_calls=[tc(0, args='{"city": ')]),
        delta(tool_calls=[tc(1, args=': "UTC"}')]),
        delta(tool_calls=[tc(0, args='"Paris"}')]),
        delta(finish="tool_calls"),
    ]
    events = await run(sse(*chunks))
    assert ToolCallsReady((WEATHER, TIME)) in events


async def test_missing_index_and_missing_id() -> None:
    chunks = [
        delta(tool_calls=[tc(None, None, "get_weather", '{"city": "Paris"}')]),
        delta(finish="tool_calls"),
    ]
    events = await run(sse(*chunks))
    assert ToolCallsReady((ToolCall("call_0", "get_weather", '{"city": "Paris"}'),)) in events


def test_same_index_different_ids_are_separate_calls() -> None:
    assembler = ToolCallAssembler()
    assembler.feed([tc(None, "call_a", "get_weather", '{"city": "Paris"}')])
    assembler.feed([tc(None, "call_b", "get_time", '{"tz": "UTC"}')])
    assert assembler.take() == (WEATHER, TIME)


async def test_tool_calls_without_finish_are_emitted_at_end_of_stream() -> None:
    events = await run(
        sse(
            delta(tool_calls=[tc(0, "call_a", "get_weather", '{"city": ')]),
            delta(tool_calls=[tc(0, args='"Paris"}')]),
        )
    )
    assert events[-1] == ToolCallsReady((WEATHER,))
    assert not any(isinstance(e, ChoiceFinished) for e in events)


async def test_two_choices_interleaved() -> None:
    chunks = [
        delta(0, role="assistant", content=""),
        delta(1, role="assistant", content=""),
        delta(0, content="Red"),
        delta(1, content="Blue"),
        delta(0, content=" sky"),
        delta(1, content=" sea"),
        {
            "choices": [
                {"index": 1, "delta": {}, "finish_reason": "stop"},
                {"index": 0, "delta": {}, "finish_reason": "length"},
            ]
        },
    ]
    events = await run(sse(*chunks))
    assert text_of(events, 0) == "Red sky"
    assert text_of(events, 1) == "Blue sea"
    assert [e for e in events if isinstance(e, ChoiceFinished)] == [
        ChoiceFinished("stop", 1),
        ChoiceFinished("length", 0),
    ]


async def test_stream_false_asks_for_one_json_completion_and_yields_the_same_events() -> None:
    seen: list[httpx.Request] = []
    completion = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {
                                "name": "calculator",
                                "arguments": '{"expression": "2+2"}',
                            },
                        },
                        {
                            "id": "call_b",
                            "type": "function",
                            "function": {"name": "current_time", "arguments": "{}"},
                        },
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }
    body = {"model": "m", "stream": False, "stream_options": {"include_usage": True}}
    events = await run(
        json.dumps(completion).encode(),
        content_type="application/json",
        seen=seen,
        request_body=body,
    )
    sent = json.loads(seen[0].content)
    assert sent["stream"] is False and "stream_options" not in sent
    assert seen[0].headers["accept"] == "application/json"
    ready = [e for e in events if isinstance(e, ToolCallsReady)]
    assert ready == [
        ToolCallsReady(
            (
                ToolCall("call_a", "calculator", '{"expression": "2+2"}'),
                ToolCall("call_b", "current_time", "{}"),
            )
        )
    ]
    assert ChoiceFinished("tool_calls") in events
