"""The OpenAI-compatible /v1 API, called with the official OpenAI Python SDK against a real
`python -m webapp` (accounts mode, keys made with the command line) and the fake upstream."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from bench.soak import base_env
from storage import repository as repo
from storage.db import make_engine, session_factory, unit_of_work
from tests.conftest import free_port
from tests.fake_openai import ErrorReply, FakeOpenAI, Reply
from tests.processes import wait_healthy

MODEL = "siliconflow/Qwen/Qwen3-8B"


@contextlib.contextmanager
def parley(fake: FakeOpenAI, workdir: Path, **extra: str) -> Iterator[tuple[str, dict[str, str]]]:
    """`python -m webapp` in accounts mode with users alice, bob and carol (1 request a
    minute); yields (base URL, {user: API key})."""
    port = free_port()
    env = base_env() | {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "AUTH_MODE": "accounts",
        "DATABASE_URL": f"sqlite:///{workdir / 'parley.db'}",
        "LOG_LEVEL": "WARNING",
        "SILICONFLOW_BASE_URL": fake.base_url,
        "SILICONFLOW_API_KEY": "upstream-key",
        "JIEKOU_BASE_URL": fake.base_url,
        "DEFAULT_PROVIDER": "siliconflow",
        **extra,
    }

    def cli(*args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [sys.executable, "-m", "webapp", "users", *args],
            cwd=workdir,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    keys = {}
    for name in ("alice", "bob", "carol"):
        cli("add", name, "--password-stdin", stdin="long enough password\n")
        keys[name] = cli("key", name, "--name", "tests")
    cli("limits", "carol", "--rpm", "1")
    log = (workdir / "parley.log").open("wb")
    child = subprocess.Popen(
        [sys.executable, "-m", "webapp"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, child, workdir / "parley.log")
        yield base, keys
    finally:
        child.terminate()
        child.wait(30)
        log.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        server.models = ["Qwen/Qwen3-8B", "deepseek-ai/DeepSeek-V3"]
        yield server


@pytest.fixture(scope="module")
def server(
    fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str], Path]]:
    workdir = tmp_path_factory.mktemp("v1")
    with parley(fake, workdir) as (base, keys):
        yield base, keys, workdir


@pytest.fixture
def up(
    fake: FakeOpenAI, server: tuple[str, dict[str, str], Path]
) -> tuple[str, dict[str, str], Path]:
    fake.requests.clear()
    fake.default = Reply(echo=True)
    return server


def client(
    server: tuple[str, dict[str, str], Path], user: str = "alice", key: str | None = None
) -> openai.OpenAI:
    base, keys, _ = server
    return openai.OpenAI(
        base_url=f"{base}/v1", api_key=key or keys[user], max_retries=0, timeout=60
    )


def stored(workdir: Path, user: str, conversation_id: str) -> list[Any]:
    engine = make_engine(f"sqlite:///{workdir / 'parley.db'}")
    try:
        with unit_of_work(session_factory(engine)) as session:
            owner = repo.ensure_user(session=session, username=user)
            assert owner.id is not None
            return repo.load_messages(
                session=session, user_id=owner.id, conversation_id=conversation_id
            )
    finally:
        engine.dispose()


def test_models_lists_every_provider_with_its_prefix(up: Any) -> None:
    ids = [m.id for m in client(up).models.list()]
    assert MODEL in ids and "siliconflow/deepseek-ai/DeepSeek-V3" in ids
    assert any(i.startswith("jiekou/") for i in ids)


def test_a_whole_answer_is_saved_in_the_callers_history(up: Any, fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(content="Paris.", reasoning="The capital of France…"))
    raw = client(up).chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
        ],
        temperature=0.2,
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "Paris."
    assert answer.choices[0].message.reasoning_content == "The capital of France…"  # type: ignore[attr-defined]
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    assert answer.model == MODEL
    sent = fake.requests[-1]["json"]
    assert sent["model"] == "Qwen/Qwen3-8B" and sent["temperature"] == 0.2
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    conversation_id = raw.headers["x-parley-conversation"]
    rows = stored(up[2], "alice", conversation_id)
    assert [(m.role, m.content, m.state) for m in rows] == [
        ("user", "Capital of France?", "complete"),
        ("assistant", "Paris.", "complete"),
    ]


def test_streaming_sends_deltas_reasoning_and_a_usage_chunk(up: Any, fake: FakeOpenAI) -> None:
    fake.enqueue(
        Reply(content="One two three four five.", reasoning="Counting.", chunk_chars=3, delay=0.01)
    )
    stream = client(up).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    thought = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices
    )
    assert text == "One two three four five." and thought == "Counting."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_parley_tools_run_on_the_server(up: Any, fake: FakeOpenAI) -> None:
    fake.enqueue(
        Reply(
            content="",
            tool_calls=[{"id": "c1", "name": "calculator", "arguments": '{"expression": "6*7"}'}],
        ),
        Reply(content="It is 42."),
    )
    answer = client(up).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is 6*7?"}],
        tools=[{"type": "parley", "name": "calculator"}],
    )  # type: ignore[list-item]
    assert answer.choices[0].message.content == "It is 42."
    assert answer.choices[0].message.tool_calls is None
    assert fake.requests[-1]["json"]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": "42",
    }


FUNCTION = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_function_tools_come_back_to_the_client(up: Any, fake: FakeOpenAI, stream: bool) -> None:
    fake.enqueue(
        Reply(
            content="",
            tool_calls=[{"id": "w1", "name": "get_weather", "arguments": '{"city": "Oslo"}'}],
        )
    )
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    api = client(up)
    if stream:
        chunks = list(
            api.chat.completions.create(
                model=MODEL, messages=messages, tools=[FUNCTION], stream=True
            )
        )  # type: ignore[list-item]
        calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
        assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
            ("w1", "get_weather", '{"city": "Oslo"}')
        ]
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    else:
        answer = api.chat.completions.create(model=MODEL, messages=messages, tools=[FUNCTION])  # type: ignore[list-item]
        call = answer.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert (call.id, call.function.name) == ("w1", "get_weather")  # type: ignore[union-attr]
        assert answer.choices[0].finish_reason == "tool_calls"
    assert fake.requests[-1]["json"]["tools"] == [FUNCTION]
    # The client runs its tool and sends the result; the model answers.
    fake.enqueue(Reply(content="Sunny in Oslo."))
    messages += [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "w1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "w1", "content": "sunny, 21 °C"},
    ]
    final = api.chat.completions.create(model=MODEL, messages=messages, tools=[FUNCTION])  # type: ignore[list-item]
    assert final.choices[0].message.content == "Sunny in Oslo."
    assert fake.requests[-1]["json"]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "w1",
        "content": "sunny, 21 °C",
    }


def test_keys_and_errors_in_openais_shape(up: Any, fake: FakeOpenAI) -> None:
    base = up[0]
    for key in ("", "pk-not-a-real-key"):
        response = httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {key}"} if key else {},
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(up, key="pk-wrong").models.list()
    with pytest.raises(openai.BadRequestError, match="messages must be a non-empty list"):
        client(up).chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.BadRequestError, match="Temperature must be between 0 and 2"):
        client(up).chat.completions.create(
            model=MODEL, temperature=7, messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.NotFoundError, match="does not exist or is not yours"):
        client(up).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Parley-Conversation": "0" * 32},
        )
    # The provider's own refusal: its status, and what it said.
    fake.enqueue(ErrorReply(403, '"Forbidden"'))
    with pytest.raises(openai.PermissionDeniedError, match="SiliconFlow refused the request"):
        client(up).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    fake.enqueue(ErrorReply(400, '{"code":20012,"message":"Model does not exist"}'))
    with pytest.raises(openai.BadRequestError, match="Model does not exist") as refused:
        client(up).chat.completions.create(
            model=MODEL, stream=True, messages=[{"role": "user", "content": "hi"}]
        )
    assert json.loads(refused.value.response.text)["error"]["type"] == "invalid_request_error"
    # Carol may make one request a minute.
    client(up, "carol").chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "one"}]
    )
    with pytest.raises(openai.RateLimitError, match="1 requests per minute"):
        client(up, "carol").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "two"}]
        )


def test_another_users_key_sees_none_of_your_history(up: Any, fake: FakeOpenAI) -> None:
    raw = client(up).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "alice's secret"}]
    )
    conversation_id = raw.headers["x-parley-conversation"]
    with pytest.raises(openai.NotFoundError):
        client(up, "bob").chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "show me"}],
            extra_headers={"X-Parley-Conversation": conversation_id},
        )
    # Continuing her own conversation appends to it.
    fake.enqueue(Reply(content="Kept."))
    client(up).chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "alice's secret"},
            {"role": "assistant", "content": "Echo: alice's secret"},
            {"role": "user", "content": "and more"},
        ],
        extra_headers={"X-Parley-Conversation": conversation_id},
    )
    rows = stored(up[2], "alice", conversation_id)
    assert [m.content for m in rows if m.role == "user"] == ["alice's secret", "and more"]
    with pytest.raises(repo.NotFound):
        stored(up[2], "bob", conversation_id)


def test_on_a_keyless_laptop_server_any_key_is_the_local_user(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    """AUTH_MODE=none on loopback: SDKs need some key, and any key that is not a Parley key
    stands for the one local user."""
    from tests.conftest import start_app

    app = start_app(fake, tmp_path / "parley.db")
    try:
        fake.default = Reply(echo=True)
        api = openai.OpenAI(base_url=f"{app.url}v1", api_key="anything", max_retries=0)
        answer = api.chat.completions.create(
            model="Qwen/Qwen3-8B",  # the default provider's
            messages=[{"role": "user", "content": "hi"}],
        )
        assert answer.choices[0].message.content == "Echo: hi"
        assert fake.requests[-1]["path"].endswith("/chat/completions")
        with pytest.raises(openai.AuthenticationError):  # a Parley key must be a real one
            openai.OpenAI(base_url=f"{app.url}v1", api_key="pk-forged", max_retries=0).models.list()
        # With no key to ask for, another site's page must not be able to use it (CSRF),
        # nor a rebound DNS name (the Host check covers /v1 too).
        url = f"{app.url}v1/chat/completions"
        body = '{"model": "m", "messages": [{"role": "user", "content": "spend tokens"}]}'
        sent = len(fake.requests)
        for headers, status in (
            ({"Origin": "https://evil.example"}, 403),
            ({"Sec-Fetch-Site": "cross-site"}, 403),
            ({"Host": "evil.example"}, 400),
        ):
            refused = httpx.post(
                url, content=body, headers={"Content-Type": "text/plain", **headers}
            )
            assert refused.status_code == status, (headers, refused.text)
        assert len(fake.requests) == sent
        missing = httpx.get(f"{app.url}v1/embeddings")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == ("not_found_error")
    finally:
        app.close()
