"""Parley as an MCP server: the official MCP SDK's client against a real Parley on loopback
(uvicorn, the production app stack) with the fake upstream, keyless and with accounts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from storage import repository as repo
from storage.api_keys import create_key
from storage.db import session_factory
from tests import tools_for_mcp
from tests.conftest import RunningApp, start_app
from tests.fake_openai import ErrorReply, FakeOpenAI, Reply
from webapp.app.auth import LOCAL_USER

MODELS = ["Qwen/Qwen3-8B", "deepseek-ai/DeepSeek-V3"]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        server.models = list(MODELS)
        yield server


@pytest.fixture(autouse=True)
def fresh(fake: FakeOpenAI) -> None:
    fake.requests.clear()
    fake.default = Reply(echo=True)
    tools_for_mcp.RAN.clear()


@pytest.fixture(scope="module")
def keyless(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """AUTH_MODE=none on loopback: the local user, no key needed."""
    running = start_app(
        fake, tmp_path_factory.mktemp("mcp") / "parley.db", TOOLS_MODULES="tests.tools_for_mcp"
    )
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def accounts(
    fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningApp, dict[str, str]]]:
    """AUTH_MODE=accounts with alice, bob and carol (1 request a minute) and a key each."""
    running = start_app(fake, tmp_path_factory.mktemp("mcp") / "parley.db", AUTH_MODE="accounts")
    keys = {}
    with session_factory(running.parley.engine)() as session:
        for name in ("alice", "bob", "carol"):
            user = repo.ensure_user(session=session, username=name)
            assert user.id is not None
            keys[name] = create_key(session=session, user_id=user.id, name="tests")[1]
            if name == "carol":
                user.rpm_limit = 1
                session.commit()
    try:
        yield running, keys
    finally:
        running.close()


@contextlib.asynccontextmanager
async def mcp_session(app: RunningApp, key: str | None = None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    async with (
        httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=120)) as http,
        streamable_http_client(app.url + "mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def text_of(result: CallToolResult) -> str:
    return "".join(part.text for part in result.content if isinstance(part, TextContent))


def messages_of(app: RunningApp, username: str, conversation_id: str) -> list[tuple[str, str]]:
    """The stored (role, content) of one of the user's conversations."""
    with session_factory(app.parley.engine)() as session:
        user = repo.ensure_user(session=session, username=username)
        assert user.id is not None
        rows = repo.load_messages(session=session, user_id=user.id, conversation_id=conversation_id)
        return [(m.role, m.content) for m in rows]


# ---- keyless (AUTH_MODE=none on loopback) ----------------------------------------------------
async def test_the_tools_are_the_curated_set_without_approval_tools(keyless: RunningApp) -> None:
    async with mcp_session(keyless) as session:
        listed = (await session.list_tools()).tools
    tools = {tool.name: tool for tool in listed}
    names = [tool.name for tool in listed]
    assert {"chat", "list_models", "calculator", "current_time", "search_conversations"} <= set(
        tools
    )
    assert "shout" in tools  # a TOOLS_MODULES tool that needs no approval is offered
    assert "wipe_disk" not in tools  # one that needs approval is not
    assert tools["list_models"].annotations is not None  # Parley's own, not the team's namesake
    assert names.count("list_models") == 1
    assert tools["calculator"].inputSchema["required"] == ["expression"]
    assert "message" in tools["chat"].inputSchema["properties"]


async def test_calculator_runs_and_a_bad_expression_is_a_tool_error(keyless: RunningApp) -> None:
    async with mcp_session(keyless) as session:
        good = await session.call_tool("calculator", {"expression": "(3 + 4)^2 * 2"})
        bad = await session.call_tool("calculator", {"expression": "2 +"})
        shouted = await session.call_tool("shout", {"text": "hi"})
    assert not good.isError and text_of(good) == "98"
    assert bad.isError and "calculator" in text_of(bad)
    assert text_of(shouted) == "HI" and tools_for_mcp.RAN == ["shout hi"]


async def test_an_approval_tool_cannot_be_called_either(keyless: RunningApp) -> None:
    async with mcp_session(keyless) as session:
        result = await session.call_tool("wipe_disk", {"device": "/dev/sda"})
    assert result.isError and 'no tool named "wipe_disk"' in text_of(result)
    assert tools_for_mcp.RAN == []


async def test_list_models_gives_the_configured_models(keyless: RunningApp) -> None:
    async with mcp_session(keyless) as session:
        result = await session.call_tool("list_models", {})
    assert not result.isError and result.structuredContent is not None
    ids = [m["id"] for m in result.structuredContent["models"]]
    assert [i for i in ids if i.startswith("siliconflow/")] == [f"siliconflow/{m}" for m in MODELS]
    assert any(i.startswith("jiekou/") for i in ids)  # every configured provider
    assert "siliconflow/Qwen/Qwen3-8B" in text_of(result)
    assert tools_for_mcp.RAN == []  # not the registry's tool of the same name


async def test_chat_is_saved_in_the_callers_history_and_continues(
    keyless: RunningApp, fake: FakeOpenAI
) -> None:
    fake.enqueue(Reply(content="Paris."))
    async with mcp_session(keyless) as session:
        first = await session.call_tool(
            "chat",
            {
                "message": "Capital of France?",
                "model": "siliconflow/Qwen/Qwen3-8B",
                "parameters": {"temperature": 0.2},
            },
        )
        assert not first.isError and first.structuredContent is not None
        conversation_id = first.structuredContent["conversation_id"]
        second = await session.call_tool(
            "chat", {"message": "And of Italy?", "conversation_id": conversation_id}
        )
    assert text_of(first) == "Paris." and first.structuredContent["state"] == "complete"
    assert first.structuredContent["model"] == "siliconflow/Qwen/Qwen3-8B"
    assert fake.requests[0]["json"]["model"] == "Qwen/Qwen3-8B"
    assert fake.requests[0]["json"]["temperature"] == 0.2
    # The continuation sends the stored history, with the conversation's model.
    assert fake.requests[1]["json"]["messages"] == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    ]
    assert second.structuredContent is not None
    assert second.structuredContent["conversation_id"] == conversation_id
    assert messages_of(keyless, LOCAL_USER, conversation_id) == [
        ("user", "Capital of France?"),
        ("assistant", "Paris."),
        ("user", "And of Italy?"),
        ("assistant", "Echo: And of Italy?"),
    ]


async def test_chat_runs_parley_tools_but_never_one_needing_approval(
    keyless: RunningApp, fake: FakeOpenAI
) -> None:
    fake.enqueue(
        Reply(
            content="",
            tool_calls=[
                {"id": "c1", "name": "calculator", "arguments": '{"expression": "6*7"}'},
                {"id": "c2", "name": "wipe_disk", "arguments": '{"device": "/dev/sda"}'},
            ],
        ),
        Reply(content="It is 42; the disk was left alone."),
    )
    async with mcp_session(keyless) as session:
        result = await session.call_tool(
            "chat",
            {"message": "6*7, then wipe", "parameters": {"tools": ["calculator", "wipe_disk"]}},
        )
    assert not result.isError, text_of(result)
    assert text_of(result) == "It is 42; the disk was left alone."
    assert tools_for_mcp.RAN == []  # no one could approve the call: it did not run
    results = {
        m["tool_call_id"]: m["content"]
        for m in fake.requests[1]["json"]["messages"]
        if m["role"] == "tool"
    }
    assert results["c1"] == "42" and "approval" in results["c2"]


async def test_chat_reports_the_answer_as_it_streams(keyless: RunningApp, fake: FakeOpenAI) -> None:
    """With a progressToken, each notification carries the answer's new text."""
    answer = " ".join(f"word{i}" for i in range(40))
    fake.enqueue(Reply(content=answer, chunk_chars=10, delay=0.05))
    pieces: list[tuple[float, str]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        pieces.append((done, message or ""))

    async with mcp_session(keyless) as session:
        result = await session.call_tool("chat", {"message": "count"}, progress_callback=progress)
    assert text_of(result) == answer
    assert pieces, "no progress notification"
    assert answer.startswith("".join(text for _, text in pieces))
    assert [done for done, _ in pieces] == sorted({done for done, _ in pieces})


async def test_chat_failures_are_tool_errors(keyless: RunningApp, fake: FakeOpenAI) -> None:
    fake.enqueue(ErrorReply(404, '{"error": {"message": "Model does not exist: no-such-model"}}'))
    async with mcp_session(keyless) as session:
        provider = await session.call_tool(
            "chat", {"message": "hi", "model": "siliconflow/no-such-model"}
        )
        params = await session.call_tool(
            "chat", {"message": "hi", "parameters": {"temperature": "hot"}}
        )
        unknown = await session.call_tool("chat", {"message": "hi", "conversation_id": "0" * 32})
        malformed = await session.call_tool("chat", {"message": "hi", "conversation_id": "x"})
        missing = await session.call_tool("chat", {})
    assert provider.isError and "no-such-model" in text_of(provider)
    assert params.isError and "temperature" in text_of(params).lower()
    assert unknown.isError and "not yours" in text_of(unknown)
    assert malformed.isError and "malformed" in text_of(malformed)
    assert missing.isError and "message" in text_of(missing)
    assert len(fake.requests) == 1  # only the first reached the provider


async def test_no_event_stream_is_held_open(keyless: RunningApp) -> None:
    """Stateless: a GET (a standalone event stream) is answered 405 at once, not kept open."""
    async with httpx.AsyncClient() as http:
        response = await http.get(keyless.url + "mcp", headers=MCP_HEADERS)
    assert response.status_code == 405 and response.headers["allow"] == "POST"


async def test_the_handshake_names_parley(keyless: RunningApp) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(keyless.url + "mcp/", json=INITIALIZE, headers=MCP_HEADERS)
    assert response.status_code == 200
    assert '"serverInfo":{"name":"parley"' in response.text
    assert "list_models" in response.text  # the instructions for the model


async def test_the_host_allow_list_applies(keyless: RunningApp) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            keyless.url + "mcp",
            json=INITIALIZE,
            headers={**MCP_HEADERS, "Host": "evil.example"},
        )
    assert response.status_code == 400


def test_gradios_own_mcp_server_stays_off(
    fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GRADIO_MCP_SERVER=true would make every Gradio endpoint a tool with no sign-in."""
    monkeypatch.setenv("GRADIO_MCP_SERVER", "true")
    running = start_app(fake, tmp_path / "parley.db")
    try:
        for path in ("gradio_api/mcp/", "gradio_api/mcp/sse", "gradio_api/mcp/schema"):
            response = httpx.post(running.url + path, json=INITIALIZE, headers=MCP_HEADERS)
            assert response.status_code in (404, 405), (path, response.status_code)
            assert "serverInfo" not in response.text
        assert httpx.post(running.url + "mcp", json=INITIALIZE, headers=MCP_HEADERS).is_success
    finally:
        running.close()


# ---- accounts: Bearer keys and isolation ------------------------------------------------------
@pytest.mark.parametrize("key", [None, "pk-not-a-real-key"], ids=["no key", "bad key"])
async def test_without_a_valid_key_nothing_is_served(
    accounts: tuple[RunningApp, dict[str, str]], key: str | None
) -> None:
    app, _ = accounts
    headers = {**MCP_HEADERS, **({"Authorization": f"Bearer {key}"} if key else {})}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    async with httpx.AsyncClient() as http:
        for body in (INITIALIZE, listing):
            response = await http.post(app.url + "mcp", json=body, headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["error"]["code"] == "invalid_api_key"
            assert "tools" not in response.text


async def test_the_sdk_client_is_refused_without_a_key(
    accounts: tuple[RunningApp, dict[str, str]],
) -> None:
    app, _ = accounts
    with pytest.raises(BaseExceptionGroup) as raised:
        async with mcp_session(app) as session:
            await session.list_tools()
    assert raised.group_contains(httpx.HTTPStatusError, match="401 Unauthorized")


async def test_keyless_refuses_other_sites_pages_and_takes_a_parley_key(
    keyless: RunningApp,
) -> None:
    """No key to ask for: a page on another site must not drive the local user's MCP tools."""
    async with httpx.AsyncClient() as http:
        response = await http.post(
            keyless.url + "mcp",
            json=INITIALIZE,
            headers={**MCP_HEADERS, "Origin": "http://evil.example"},
        )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "cross_site"
    async with mcp_session(keyless, "sk-any-provider-style-key") as session:
        assert (await session.call_tool("calculator", {"expression": "1+1"})).isError is False


async def test_each_key_sees_only_its_owners_conversations(
    accounts: tuple[RunningApp, dict[str, str]], fake: FakeOpenAI
) -> None:
    app, keys = accounts
    async with mcp_session(app, keys["alice"]) as alice:
        said = await alice.call_tool("chat", {"message": "the zanzibar launch plan"})
        assert said.structuredContent is not None
        conversation_id = said.structuredContent["conversation_id"]
        found = await alice.call_tool("search_conversations", {"query": "zanzibar"})
    assert conversation_id in text_of(found)
    async with mcp_session(app, keys["bob"]) as bob:
        hidden = await bob.call_tool("search_conversations", {"query": "zanzibar"})
        taken = await bob.call_tool(
            "chat", {"message": "tell me more", "conversation_id": conversation_id}
        )
    assert not hidden.isError and "No conversations match" in text_of(hidden)
    assert conversation_id not in text_of(hidden)
    assert taken.isError and "not yours" in text_of(taken)
    assert messages_of(app, "alice", conversation_id) == [
        ("user", "the zanzibar launch plan"),
        ("assistant", "Echo: the zanzibar launch plan"),
    ]
    assert len(fake.requests) == 1


async def test_concurrent_callers_each_act_as_themselves(
    accounts: tuple[RunningApp, dict[str, str]], fake: FakeOpenAI
) -> None:
    """Two users' calls in flight at once: each chat is saved for, and each search sees, its
    own caller only (the caller travels with each request, not in anything shared)."""
    app, keys = accounts
    fake.default = Reply(echo=True, chunk_chars=2, delay=0.01)
    words = {"alice": "narwhal", "bob": "quokka"}
    async with mcp_session(app, keys["alice"]) as alice, mcp_session(app, keys["bob"]) as bob:
        sessions = {"alice": alice, "bob": bob}
        chats = await asyncio.gather(
            *(
                sessions[name].call_tool("chat", {"message": f"about {words[name]}"})
                for name in words
            )
        )
        searches = await asyncio.gather(
            *(
                sessions[name].call_tool("search_conversations", {"query": word})
                for _ in range(10)
                for name in words
                for word in words.values()
            )
        )
    ids = {}
    for name, said in zip(words, chats, strict=True):
        assert said.structuredContent is not None, text_of(said)
        ids[name] = said.structuredContent["conversation_id"]
        assert messages_of(app, name, ids[name])[0] == ("user", f"about {words[name]}")
    asked = [(name, owner) for _ in range(10) for name in words for owner in words]
    for (name, owner), found in zip(asked, searches, strict=True):
        if name == owner:
            assert ids[name] in text_of(found)
        else:
            assert "No conversations match" in text_of(found), (name, owner, text_of(found))


async def test_a_usage_limit_is_a_tool_error(
    accounts: tuple[RunningApp, dict[str, str]], fake: FakeOpenAI
) -> None:
    app, keys = accounts
    async with mcp_session(app, keys["carol"]) as carol:
        first = await carol.call_tool("chat", {"message": "one"})
        second = await carol.call_tool("chat", {"message": "two"})
    assert not first.isError
    assert second.isError and "Usage limit reached" in text_of(second)
    assert len(fake.requests) == 1


def test_the_mcp_path_only(accounts: tuple[RunningApp, dict[str, str]]) -> None:
    app, keys = accounts
    response = httpx.get(app.url + "mcpx", headers={"Authorization": f"Bearer {keys['bob']}"})
    assert response.status_code == 404
