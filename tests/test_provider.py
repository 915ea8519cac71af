"""ProviderClient against the fake OpenAI server on loopback: streaming, errors, retries."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport

from tests.fake_openai import ErrorReply, FakeOpenAI, Reply
from webapp.app.error_text import user_message
from webapp.config import ProviderConfig, Secret
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
from webapp.provider.client import (
    AuthenticationError,
    BadRequest,
    ConnectionFailed,
    GatewayTimeout,
    NotFoundError,
    PermissionDenied,
    ProviderClient,
    ProviderError,
    RateLimited,
    RequestTimeout,
    RetryPolicy,
    ServerError,
    ServerOverloaded,
    StreamInterrupted,
    UpstreamStreamError,
    error_from_response,
    extract_detail,
)
from webapp.provider.errors import StreamTimeout, parse_retry_after

BODY = {"model": "Qwen/Qwen3-32B", "messages": [{"role": "user", "content": "Hi there"}]}


class Sleeps:
    """A fake sleep that records delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(params=["aiohttp", "httpcore"])
async def http(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """The transport Parley uses (aiohttp's, webapp/provider/http_client.py) and httpx's own: the
    provider's errors, retries and decoding must not depend on which one carries them."""
    transport = AiohttpTransport() if request.param == "aiohttp" else None
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0), transport=transport) as client:
        yield client


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_config(base_url: str, key: str = "sk-env", kind: str = "siliconflow") -> ProviderConfig:
    return ProviderConfig(
        name="siliconflow",
        label="SiliconFlow",
        base_url=base_url,
        key_env="SILICONFLOW_API_KEY",
        api_key=Secret(key),
        kind=kind,
        models_params=(("type", "text"), ("sub_type", "chat")) if kind == "siliconflow" else (),
    )


def make_client(
    fake: FakeOpenAI,
    http: httpx.AsyncClient,
    sleeps: Sleeps,
    *,
    max_retries: int = 3,
    read_timeout_s: float = 5.0,
    **config: Any,
) -> ProviderClient:
    policy = RetryPolicy(max_retries=max_retries, sleep=sleeps, random=lambda: 1.0)
    return ProviderClient(
        http, make_config(fake.base_url, **config), retry=policy, read_timeout_s=read_timeout_s
    )


async def collect(client: ProviderClient, **kwargs: Any) -> list[StreamEvent]:
    return [e async for e in client.stream_chat(dict(BODY), **kwargs)]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# -- streaming -----------------------------------------------------------------------------


async def test_reasoning_then_content(fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps):
    fake.enqueue(Reply(reasoning="Hmm, a greeting.", content="Hello! How can I help?"))
    events = await collect(make_client(fake, http, sleeps))
    assert events[0] == StreamStarted(1)
    deltas = [e for e in events if isinstance(e, TextDelta | ReasoningDelta)]
    reasoning = "".join(e.text for e in deltas if isinstance(e, ReasoningDelta))
    assert reasoning == "Hmm, a greeting."
    assert text_of(events) == "Hello! How can I help?"
    first_text = next(i for i, e in enumerate(deltas) if isinstance(e, TextDelta))
    assert all(isinstance(e, ReasoningDelta) for e in deltas[:first_text])
    assert all(isinstance(e, TextDelta) for e in deltas[first_text:])
    usages = [e for e in events if isinstance(e, Usage)]
    assert usages[-1] == Usage(11, 10, 4, 21)  # 4 reasoning chunks + 6 content chunks
    assert ChoiceFinished("stop") in events
    sent = fake.requests[0]
    assert sent["json"]["stream"] is True
    assert sent["json"]["stream_options"] == {"include_usage": True}
    assert sent["json"]["messages"] == BODY["messages"]
    assert sent["headers"]["authorization"] == "Bearer sk-env"


async def test_default_reply_echoes_last_user_message(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    events = await collect(make_client(fake, http, sleeps))
    assert text_of(events) == "Echo: Hi there"


@pytest.mark.parametrize("style", ["openai", "think_tags", "no_usage"])
async def test_other_wire_styles(
    style: str, fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    fake.enqueue(Reply(style=style, reasoning="why", content="Because.", crlf=True, pings=True))
    events = await collect(make_client(fake, http, sleeps))
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "why"
    assert text_of(events) == "Because."
    usages = [e for e in events if isinstance(e, Usage)]
    assert usages == ([] if style == "no_usage" else usages[-1:])
    if style == "openai":
        assert usages == [Usage(11, 3, 1, 14)]  # 1 reasoning chunk + 2 content chunks


async def test_malformed_lines_are_survived(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    fake.enqueue(Reply(content="Still fine.", malformed_lines=3))
    events = await collect(make_client(fake, http, sleeps))
    assert text_of(events) == "Still fine."


@pytest.mark.parametrize(
    "variant",
    ["first_only", "repeated", "null_later", "empty_later", "whole", "interleaved", "no_index"],
)
async def test_tool_call_variants_over_http(
    variant: str, fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    calls = [
        {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"id": "call_2", "name": "get_time", "arguments": '{"tz": "Europe/Paris"}'},
    ]
    fake.enqueue(Reply(content="", tool_calls=calls, tool_call_variant=variant, chunk_chars=3))
    events = await collect(make_client(fake, http, sleeps))
    expected = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in calls)
    assert [e for e in events if isinstance(e, ToolCallsReady)] == [ToolCallsReady(expected)]
    assert ChoiceFinished("tool_calls") in events


async def test_two_choices_over_http(fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps):
    fake.enqueue(Reply(choices=["First answer", "Second one"], style="openai"))
    events = await collect(make_client(fake, http, sleeps))
    by_choice = {0: "", 1: ""}
    for e in events:
        if isinstance(e, TextDelta):
            by_choice[e.choice] += e.text
    assert by_choice == {0: "First answer", 1: "Second one"}
    assert {e.choice for e in events if isinstance(e, ChoiceFinished)} == {0, 1}


async def test_mid_stream_error_object(fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps):
    fake.enqueue(Reply(content="Partial answer", error_after=3, error_message="GPU fell over"))
    events: list[StreamEvent] = []
    with pytest.raises(UpstreamStreamError) as info:
        async for event in make_client(fake, http, sleeps).stream_chat(dict(BODY)):
            events.append(event)
    assert text_of(events) == "Partial "  # role chunk + 2 content chunks of 4 chars
    assert info.value.detail == "GPU fell over"
    assert info.value.provider == "SiliconFlow"
    assert len(fake.requests) == 1


# -- errors before the stream --------------------------------------------------------------

ERROR_CASES = [
    (
        400,
        '{"code":20012,"message":"Model does not exist. Please check it carefully.","data":null}',
        BadRequest,
        "Model does not exist. Please check it carefully.",
    ),
    (401, '"Invalid token"', AuthenticationError, "Invalid token"),
    (403, '"Forbidden"', PermissionDenied, "Forbidden"),
    (404, "404 page not found", NotFoundError, "404 page not found"),
    (
        429,
        '{"message":"Request was rejected due to rate limiting. TPM limit reached.","data":null}',
        RateLimited,
        "Request was rejected due to rate limiting. TPM limit reached.",
    ),
    (
        503,
        '{"code":50505,"message":"Model service overloaded. Please try again later."}',
        ServerOverloaded,
        "Model service overloaded. Please try again later.",
    ),
    (504, '"Gateway Timeout"', GatewayTimeout, "Gateway Timeout"),
    (
        422,
        '{"error":{"message":"top_k out of range","type":"invalid_request_error"}}',
        BadRequest,
        "top_k out of range",
    ),
]


@pytest.mark.parametrize(("status", "body", "cls", "detail"), ERROR_CASES)
async def test_status_errors(
    status: int,
    body: str,
    cls: type[ProviderError],
    detail: str,
    fake: FakeOpenAI,
    http: httpx.AsyncClient,
    sleeps: Sleeps,
):
    fake.enqueue(ErrorReply(status, body))
    with pytest.raises(ProviderError) as info:
        await collect(make_client(fake, http, sleeps, max_retries=0))
    error = info.value
    assert type(error) is cls
    assert (error.status, error.detail) == (status, detail)
    assert (error.provider, error.key_env) == ("SiliconFlow", "SILICONFLOW_API_KEY")
    assert error.retryable is (status in (429, 503, 504))
    assert error.attempts == 1
    assert len(fake.requests) == 1
    assert sleeps.delays == []


async def test_non_retryable_error_is_not_retried(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    fake.enqueue(ErrorReply(401, '"Invalid token"'), Reply(content="never"))
    with pytest.raises(AuthenticationError):
        await collect(make_client(fake, http, sleeps))
    assert len(fake.requests) == 1
    assert sleeps.delays == []


async def test_429_then_success_honours_retry_after(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    fake.enqueue(
        ErrorReply(429, '{"message":"TPM limit reached"}', {"Retry-After": "2"}),
        Reply(content="Made it"),
    )
    events = await collect(make_client(fake, http, sleeps))
    assert events[0] == Retrying(attempt=2, delay_s=2.0, reason="rate_limited")
    assert events[1] == StreamStarted(attempt=2)
    assert text_of(events) == "Made it"
    assert sleeps.delays == [2.0]
    assert len(fake.requests) == 2


async def test_retry_after_is_capped(fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps):
    fake.enqueue(ErrorReply(503, '"busy"', {"Retry-After": "3600"}), Reply(content="ok"))
    events = await collect(make_client(fake, http, sleeps))
    assert sleeps.delays == [30.0]
    assert text_of(events) == "ok"


async def test_503_exhausts_retries_with_backoff(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    overloaded = ErrorReply(503, '{"code":50505,"message":"Model service overloaded"}')
    fake.enqueue(*[overloaded] * 4, Reply(content="too late"))
    retries: list[Retrying] = []
    with pytest.raises(ServerOverloaded) as info:
        async for event in make_client(fake, http, sleeps).stream_chat(dict(BODY)):
            assert isinstance(event, Retrying)
            retries.append(event)
    assert sleeps.delays == [0.5, 1.0, 2.0]  # random() pinned to 1.0: the full ceiling
    assert [r.attempt for r in retries] == [2, 3, 4]
    assert info.value.attempts == 4
    assert info.value.detail == "Model service overloaded"
    assert len(fake.requests) == 4


SCHEMA_500 = (
    '{"code":50000,"message":"response_format.json_schema is invalid: '
    'additionalProperties must be a boolean"}'
)


async def test_a_500_is_a_server_error_retried_once(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    failing = ErrorReply(500, '{"message":"Internal error, request id 7f3a"}')
    fake.enqueue(failing, failing, Reply(content="never requested"))
    with pytest.raises(ServerError) as info:
        await collect(make_client(fake, http, sleeps))
    assert len(fake.requests) == 2 and info.value.attempts == 2
    assert sleeps.delays == [0.5]
    shown = user_message(info.value)
    assert shown.startswith(
        "SiliconFlow answered with a server error (500): "
        "“Internal error, request id 7f3a”. A retry got the same answer."
    )
    assert "overload" not in shown


async def test_a_500_that_names_a_request_problem_is_not_retried(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    fake.enqueue(ErrorReply(500, SCHEMA_500), Reply(content="never requested"))
    with pytest.raises(ServerError) as info:
        await collect(make_client(fake, http, sleeps))
    assert len(fake.requests) == 1 and sleeps.delays == []
    assert user_message(info.value).startswith(
        "SiliconFlow answered with a server error (500): “response_format.json_schema is "
        "invalid: additionalProperties must be a boolean”. If the request uses unusual"
    )


async def test_a_500_once_then_an_answer(fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps):
    fake.enqueue(ErrorReply(500, '"oops"'), Reply(content="ok"))
    assert text_of(await collect(make_client(fake, http, sleeps))) == "ok"
    assert len(fake.requests) == 2


async def test_a_stall_after_the_headers_before_any_data_is_retried_once(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    """Nothing was shown, so the request is sent again (once): the user gets the answer."""
    fake.enqueue(Reply(content="lost", stall_after=0), Reply(content="second try"))
    events = await collect(make_client(fake, http, sleeps, read_timeout_s=0.3))
    assert text_of(events) == "second try"
    assert [e.attempt for e in events if isinstance(e, StreamStarted | Retrying)] == [1, 2, 2]
    assert len(fake.requests) == 2


async def test_a_stall_before_any_data_twice_is_reported(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    fake.enqueue(*[Reply(content="lost", stall_after=0)] * 3)
    with pytest.raises(StreamTimeout) as info:
        await collect(make_client(fake, http, sleeps, read_timeout_s=0.3))
    assert len(fake.requests) == 2 and info.value.attempts == 2
    assert "sent no answer for 0.3 s (the READ_TIMEOUT limit), on a second try too" in (
        user_message(info.value)
    )


async def test_a_stall_after_the_first_chunk_is_not_retried(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    """The role chunk arrived: the provider is generating, so a retry could bill twice."""
    fake.enqueue(Reply(content="lost", stall_after=1), Reply(content="never requested"))
    with pytest.raises(StreamTimeout):
        await collect(make_client(fake, http, sleeps, read_timeout_s=0.3))
    assert len(fake.requests) == 1


async def test_no_retry_after_stream_started(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    fake.enqueue(Reply(content="Cut off here", drop_after=3), Reply(content="not requested"))
    events: list[StreamEvent] = []
    with pytest.raises(StreamInterrupted) as info:
        async for event in make_client(fake, http, sleeps).stream_chat(dict(BODY)):
            events.append(event)
    assert text_of(events) == "Cut off "
    assert info.value.provider == "SiliconFlow"
    assert info.value.retryable is False
    assert len(fake.requests) == 1
    assert sleeps.delays == []


async def test_timeout_before_headers_is_request_timeout(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    fake.enqueue(ErrorReply(500, '"slow"', delay=1.0))
    client = make_client(fake, http, sleeps, max_retries=0, read_timeout_s=0.2)
    with pytest.raises(RequestTimeout) as info:
        await collect(client)
    assert info.value.retryable is True


async def test_connection_refused_retries_then_fails(http: httpx.AsyncClient, sleeps: Sleeps):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policy = RetryPolicy(max_retries=2, sleep=sleeps, random=lambda: 1.0)
    client = ProviderClient(http, make_config(f"http://127.0.0.1:{port}/v1"), retry=policy)
    events: list[StreamEvent] = []
    with pytest.raises(ConnectionFailed) as info:
        async for event in client.stream_chat(dict(BODY)):
            events.append(event)
    assert [type(e) for e in events] == [Retrying, Retrying]
    assert sleeps.delays == [0.5, 1.0]
    assert info.value.attempts == 3


# -- stopping and stalls -------------------------------------------------------------------


async def test_cancelling_the_consumer_closes_the_connection(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    fake.enqueue(Reply(content="Some text then silence", stall_after=3))
    first_text = asyncio.Event()

    async def consume() -> None:
        async for event in make_client(fake, http, sleeps).stream_chat(dict(BODY)):
            if isinstance(event, TextDelta):
                first_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_text.wait(), 5)
    assert fake.active_streams == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(fake.wait_for_disconnect, 5.0)
    assert fake.disconnects == 1


async def test_breaking_out_of_the_stream_closes_the_connection(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    fake.enqueue(Reply(content="x" * 400, chunk_chars=1, delay=0.01))
    stream = make_client(fake, http, sleeps).stream_chat(dict(BODY))
    async with aclosing(stream) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                break
    assert await asyncio.to_thread(fake.wait_for_disconnect, 5.0)


async def test_read_timeout_on_stalled_stream(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    fake.enqueue(Reply(content="Hello there", stall_after=2))
    client = make_client(fake, http, sleeps, read_timeout_s=0.3)
    events: list[StreamEvent] = []
    with pytest.raises(StreamInterrupted) as info:
        async for event in client.stream_chat(dict(BODY)):
            events.append(event)
    assert text_of(events) == "Hell"
    assert "ReadTimeout" in info.value.detail
    assert await asyncio.to_thread(fake.wait_for_disconnect, 5.0)
    assert len(fake.requests) == 1


# -- keys and models -----------------------------------------------------------------------


async def test_pasted_key_overrides_env_key(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    await collect(make_client(fake, http, sleeps), api_key="sk-pasted")
    assert fake.requests[0]["headers"]["authorization"] == "Bearer sk-pasted"


async def test_no_authorization_header_without_key(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    client = make_client(fake, http, sleeps, key="")
    await collect(client)
    await client.list_models()
    assert ["authorization" in r["headers"] for r in fake.requests] == [False, False]


async def test_list_models_siliconflow(fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps):
    fake.models = ["Qwen/Qwen3-8B", "deepseek-ai/DeepSeek-V3", "Qwen/Qwen3-8B", "Pro/x"]
    models = await make_client(fake, http, sleeps).list_models(api_key="sk-pasted")
    assert models == ["Pro/x", "Qwen/Qwen3-8B", "deepseek-ai/DeepSeek-V3"]
    request = fake.requests[0]
    assert (request["method"], request["path"]) == ("GET", "/v1/models")
    assert request["query"] == {"type": "text", "sub_type": "chat"}
    assert request["headers"]["authorization"] == "Bearer sk-pasted"


async def test_list_models_openai_kind_sends_no_query(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    await make_client(fake, http, sleeps, kind="openai").list_models()
    assert fake.requests[0]["query"] == {}


async def test_list_models_failure_raises(
    fake: FakeOpenAI, http: httpx.AsyncClient, sleeps: Sleeps
):
    fake.models_error = ErrorReply(401, '"Invalid token"')
    with pytest.raises(AuthenticationError) as info:
        await make_client(fake, http, sleeps).list_models()
    assert (info.value.detail, info.value.key_env) == ("Invalid token", "SILICONFLOW_API_KEY")
    assert len(fake.requests) == 1


async def test_list_models_accepts_a_bare_list() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"id": "b"}, "a", {"id": "b"}, {"name": "no id"}])

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = ProviderClient(http, make_config("http://x.test/v1", kind="openai"))
        assert await client.list_models() == ["a", "b"]


# -- the error tree, pure ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ('{"message": "m1"}', "m1"),
        ('{"error": {"message": "m2", "type": "x"}}', "m2"),
        ('{"code": 20015, "message": "m3"}', "m3"),
        ('"Invalid token"', "Invalid token"),
        ("plain text\n", "plain text"),
        ('{"error": "m4"}', "m4"),
        ('{"detail": [{"loc": "x"}]}', '[{"loc": "x"}]'),
        ("", ""),
        ("x" * 900, "x" * 500),
    ],
)
def test_extract_detail(body: str, detail: str) -> None:
    assert extract_detail(body) == detail


def test_error_from_response_maps_unknown_and_502() -> None:
    teapot = error_from_response("P", 418, "short and stout", {}, key_env="P_KEY")
    assert type(teapot) is ProviderError
    assert (teapot.retryable, teapot.key_env, teapot.kind) == (False, "P_KEY", "provider_error")
    bad_gateway = error_from_response("P", 502, "<html>bad gateway</html>", {})
    assert type(bad_gateway) is ServerOverloaded
    assert bad_gateway.retryable is True
    assert "P server_overloaded 502" in str(bad_gateway)


def test_retry_after_parsing() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "1500", "Retry-After": "7"}) == 1.5
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None
    when = datetime.now(UTC) + timedelta(seconds=20)
    seconds = parse_retry_after({"Retry-After": format_datetime(when, usegmt=True)})
    assert seconds is not None and 15 < seconds <= 20


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(random=lambda: 0.5)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.delay(1, retry_after_s=3.0) == 3.0
    assert RetryPolicy(jitter=False).delay(3) == 2.0
