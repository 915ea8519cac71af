"""The fake OpenAI server itself: routing, queues, non-streaming replies."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fake_openai import ErrorReply, FakeOpenAI, Reply


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def test_non_streaming_completion(fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(content="Plain", reasoning="r", prompt_tokens=3))
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    response = httpx.post(f"{fake.base_url}/chat/completions", json=body)
    assert response.status_code == 200
    payload = response.json()
    assert payload["choices"][0]["message"]["content"] == "Plain"
    assert payload["choices"][0]["message"]["reasoning_content"] == "r"
    assert payload["usage"]["prompt_tokens"] == 3


def test_per_model_queue_wins_over_global(fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(content="global"))
    fake.enqueue(ErrorReply(418, '"teapot"'), model="special")

    def ask(model: str) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "q"}]}
        return httpx.post(f"{fake.base_url}/chat/completions", json=body)

    assert ask("special").status_code == 418
    assert ask("special").json()["choices"][0]["message"]["content"] == "global"
    assert ask("other").json()["choices"][0]["message"]["content"] == "Echo: q"
    assert fake.wait_for_requests(3, timeout=1.0)
    assert [r["json"]["model"] for r in fake.requests] == ["special", "special", "other"]


def test_unknown_path_is_404_and_multimodal_echo(fake: FakeOpenAI) -> None:
    assert httpx.get(fake.base_url.replace("/v1", "/nope")).text == "404 page not found"
    content = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "u"}}]
    body = {"model": "m", "messages": [{"role": "user", "content": content}]}
    response = httpx.post(f"{fake.base_url}/chat/completions", json=body)
    assert response.json()["choices"][0]["message"]["content"] == "Echo: look"


def test_raw_sse_bytes_crlf_and_pings(fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(content="ab", chunk_chars=1, crlf=True, pings=True, style="no_usage"))
    body = {"model": "m", "stream": True, "messages": []}
    with httpx.stream("POST", f"{fake.base_url}/chat/completions", json=body) as response:
        raw = response.read().decode()
    assert response.headers["content-type"].startswith("text/event-stream")
    assert ": ping\r\n\r\n" in raw
    assert raw.endswith("data: [DONE]\r\n\r\n")
    assert '"content": "a"' in raw and '"content": "b"' in raw
