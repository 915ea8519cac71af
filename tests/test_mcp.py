"""Parley as an MCP client, with real MCP servers written with the official SDK (FastMCP):

a stdio server (tests/mcp_servers/team.py, its own process) and a Streamable HTTP one
(tests/mcp_servers/http_server.py on a free loopback port). Tools are listed into the registry,
offered to the fake upstream as SERVER__TOOL, called through its scripted tool calls, and
their results go back in the next request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage import repository as repo
from tests.conftest import RunningApp, free_port, start_app
from tests.fake_openai import FakeOpenAI, Reply
from webapp.app.chat import ChatService
from webapp.app.chat_request import NewMessage, TurnSettings
from webapp.config import ConfigError, load_settings
from webapp.core.attachments import Limits
from webapp.core.messages import ToolCall
from webapp.tools.context import ToolContext
from webapp.tools.execute import ToolExecutor
from webapp.tools.mcp_client import McpManager
from webapp.tools.mcp_config import McpConfigError, McpServerConfig, load_mcp_servers
from webapp.tools.mcp_convert import tool_name
from webapp.tools.registry import NAME_PATTERN, Tool, ToolRegistry
from webapp.ui.render import render_path

SERVERS = Path(__file__).resolve().parent / "mcp_servers"
TEAM = [str(SERVERS / "team.py")]


def team(**options: Any) -> McpServerConfig:
    return McpServerConfig(
        name="team",
        transport="stdio",
        command=sys.executable,
        args=tuple(TEAM),
        env={"TEAM_GREETING": "hello"},
        **options,
    )


def call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, str]:
    return {"id": call_id, "name": name, "arguments": json.dumps(arguments)}


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


def until(condition: Any, what: str, timeout: float = 10.0) -> None:
    """A bounded wait for a condition another thread makes true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.02)


async def until_async(condition: Any, what: str, timeout: float = 10.0) -> None:
    """A bounded wait, on the event loop, for a condition the MCP thread makes true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        await asyncio.sleep(0.02)


@contextlib.contextmanager
def manager(
    *servers: McpServerConfig,
    registry: ToolRegistry | None = None,
    start_timeout_s: float = 20,
    image_limits: Limits | None = None,
) -> Iterator[Any]:
    registry = registry if registry is not None else ToolRegistry()
    mcp = McpManager(servers, registry, start_timeout_s=start_timeout_s, image_limits=image_limits)
    mcp.start()
    try:
        yield mcp, registry
    finally:
        mcp.close()


def executor_for(registry: ToolRegistry, timeout_s: float = 20.0) -> ToolExecutor:
    return ToolExecutor(registry, timeout_s=timeout_s, max_result_chars=2000)


async def run_call(
    executor: ToolExecutor, name: str, arguments: Any, context: ToolContext | None = None
) -> Any:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return await executor.run(ToolCall("c1", name, text), context or ToolContext(), {name})


# ---- the file ---------------------------------------------------------------------------------


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_the_file_takes_stdio_and_http_servers_with_env_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "mcpServers": {
                "team": {"command": "python", "args": ["s.py"], "env": {"KEY": "${TEAM_KEY}"}},
                "tracker": {
                    "url": "https://tracker.example/mcp",
                    "headers": {"X-Api": "k-${TRACKER_KEY}", "Authorization": "{{user.TOKEN}}"},
                    "trusted_tools": ["search"],
                },
                "legacy": {"url": "https://old.example/sse"},
                "off": {"command": "x", "disabled": True},
            }
        },
    )
    team_server, tracker, legacy = load_mcp_servers(path, {"TEAM_KEY": "s1", "TRACKER_KEY": "s2"})
    assert (team_server.transport, team_server.env, team_server.args) == (
        "stdio",
        {"KEY": "s1"},
        ("s.py",),
    )
    assert tracker.transport == "http" and tracker.headers["X-Api"] == "k-s2"
    assert tracker.user_fields == ("TOKEN",)
    assert tracker.trusted("search") and not tracker.trusted("delete")
    assert legacy.transport == "sse"
    assert "s1" not in repr(team_server) and "s2" not in repr(tracker)  # secrets stay out of logs


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"command": "x", "env": {"K": "${NOPE}"}}, 'server "bad", field "env.K": ${NOPE} is not'),
        ({"command": "x", "args": "a b"}, 'server "bad", field "args": must be a list'),
        ({"url": "ftp://x"}, 'server "bad", field "url"'),
        ({"command": "x", "url": "http://x"}, 'server "bad", field "command"'),
        ({"command": "x", "trust": "yes"}, 'server "bad", field "trust"'),
        ({"command": "x", "comand": "y"}, 'server "bad", field "comand": unknown field'),
        ({"url": "http://x/mcp", "type": "websocket"}, 'server "bad", field "type"'),
    ],
)
def test_a_bad_entry_names_the_file_server_and_field(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    path = write(tmp_path, {"mcpServers": {"bad": entry}})
    with pytest.raises(McpConfigError, match=str(path)) as raised:
        load_mcp_servers(path, {})
    assert message in str(raised.value)


def test_a_bad_file_stops_start_up_with_the_message(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"MCP_SERVERS_FILE .*mcp.json: not valid JSON"):
        load_settings({"MCP_SERVERS_FILE": str(path)}, dotenv_path=None)
    ok = write(tmp_path, {"mcpServers": {"t": {"command": "x", "env": {"A": "${A}"}}}})
    settings = load_settings({"MCP_SERVERS_FILE": str(ok), "A": "from-env"}, dotenv_path=None)
    assert settings.mcp_servers[0].env == {"A": "from-env"}


@pytest.mark.parametrize(
    ("server", "tool", "expected"),
    [
        ("team", "add", "team__add"),
        ("my-team", "get.weather now", "my-team__get_weather_now"),
        ("t", "数据", "t____"),
    ],
)
def test_names_are_sanitised_to_the_providers_rule(server: str, tool: str, expected: str) -> None:
    assert tool_name(server, tool, set()) == expected


def test_long_or_clashing_names_still_fit_and_stay_apart() -> None:
    long_name = tool_name("server", "x" * 100, set())
    assert NAME_PATTERN.match(long_name) and len(long_name) == 64
    first = tool_name("a", "b.c", set())
    second = tool_name("a", "b_c", {first})
    assert first != second and NAME_PATTERN.match(second)


def test_a_group_of_tools_is_replaced_whole_and_never_takes_another_tools_name() -> None:
    registry = ToolRegistry()

    def mine() -> str:
        """A Python tool."""
        return "mine"

    registry.register(mine)
    made = [
        Tool("team__a", "A.", {"type": "object"}, mine),
        Tool("mine", "Clash.", {"type": "object"}, mine),
    ]
    registry.set_group("team", made)
    assert registry.names() == ["mine", "team__a"]
    assert registry.get("mine") is not None and registry.get("mine").group is None  # type: ignore[union-attr]
    registry.set_group("team", [Tool("team__b", "B.", {"type": "object"}, mine)])
    assert registry.names() == ["mine", "team__b"]


# ---- a stdio server ---------------------------------------------------------------------------


def test_stdio_tools_are_listed_with_their_description_schema_and_hints() -> None:
    with manager(team(trusted_tools=frozenset({"add"}))) as (mcp, registry):
        assert mcp.status() == [
            {"name": "team", "transport": "stdio", "state": "ready", "tools": 6}
        ]
        assert {"team__add", "team__lookup", "team__crash", "team__hang"} <= set(registry.names())
        add = registry.get("team__add")
        assert add is not None and add.group == "team"
        assert add.description == "Add two integers."
        assert add.parameters["properties"].keys() == {"a", "b"}
        assert add.parameters["required"] == ["a", "b"]
        assert not add.needs_approval  # trusted_tools
        lookup = registry.get("team__lookup")
        assert lookup is not None and lookup.read_only and lookup.needs_approval  # hint only


async def test_calls_run_with_validated_arguments_and_env_from_the_file() -> None:
    with manager(team()) as (_, registry):
        executor = executor_for(registry)
        done = await run_call(executor, "team__add", {"a": 2, "b": 40})
        assert (done.status, done.content) == ("done", "42")
        looked = await run_call(executor, "team__lookup", {"key": "k"})
        assert looked.content.startswith("k = hello")
        bad = await run_call(executor, "team__add", {"a": "two", "b": 1})
        assert bad.status == "error" and "invalid arguments for team__add" in bad.content
        assert "'two' is not of type 'integer'" in bad.content
        picture = await run_call(executor, "team__picture", {})
        assert picture.content.splitlines()[0] == "a dot"
        assert "[image 1: image/png" in picture.content
        assert "[resource link: notes <file:///notes.txt>]" in picture.content


async def test_a_server_that_dies_during_a_call_is_restarted_and_the_next_call_works() -> None:
    with manager(team()) as (mcp, registry):
        executor = executor_for(registry)
        before = (await run_call(executor, "team__lookup", {"key": "k"})).content
        crashed = await run_call(executor, "team__crash", {})
        assert crashed.status == "error" and "stopped during the call" in crashed.content
        after = await run_call(executor, "team__lookup", {"key": "k"})
        assert after.status == "done" and after.content != before  # another process (pid)
        assert mcp.status()[0]["state"] == "ready" and mcp.status()[0]["restarts"] == 1


async def test_a_hanging_call_times_out_into_an_error_result_and_the_server_goes_on() -> None:
    with manager(team(timeout_s=0.5)) as (_, registry):
        executor = executor_for(registry)
        hung = await run_call(executor, "team__hang", {})
        assert hung.status == "timeout" and "did not finish within 0.5 s" in hung.content
        assert (await run_call(executor, "team__add", {"a": 1, "b": 1})).content == "2"


async def test_stop_cancels_the_call_on_the_mcp_side_and_the_server_goes_on() -> None:
    with manager(team()) as (mcp, registry):
        executor = executor_for(registry)
        running = asyncio.create_task(run_call(executor, "team__hang", {}))
        await until_async(lambda: mcp.in_flight() == 1, "the call reaches the server")
        running.cancel()  # what Stop does to a running tool call
        with pytest.raises(asyncio.CancelledError):
            await running
        await until_async(lambda: mcp.in_flight() == 0, "the MCP side lets go of the call")
        assert (await run_call(executor, "team__add", {"a": 2, "b": 2})).content == "4"


async def test_a_changed_tool_list_is_picked_up() -> None:
    with manager(team()) as (_, registry):
        executor = executor_for(registry)
        assert "team__say_hi" not in registry
        assert (await run_call(executor, "team__learn", {"word": "hi"})).content == "learned hi"
        until(lambda: "team__say_hi" in registry, "the new tool is listed")
        assert (await run_call(executor, "team__say_hi", {})).content == "hi"


def test_a_server_that_cannot_start_is_reported_and_the_others_work() -> None:
    broken = McpServerConfig(name="broken", transport="stdio", command="/no/such/mcp-server")
    with manager(broken, team()) as (mcp, registry):
        rows = {row["name"]: row for row in mcp.status()}
        assert rows["team"]["state"] == "ready"
        assert rows["broken"]["state"] == "failed" and rows["broken"]["tools"] == 0
        assert "No such file or directory" in rows["broken"]["reason"]
        assert not [n for n in registry.names() if n.startswith("broken__")]


def test_a_server_that_never_answers_is_timed_out_and_reported() -> None:
    mute = McpServerConfig(
        name="mute",
        transport="stdio",
        command=sys.executable,
        args=("-c", "import sys; sys.stdin.read()"),  # reads the requests, never answers
    )
    with manager(mute, start_timeout_s=1) as (mcp, registry):
        until(lambda: mcp.status()[0]["state"] == "failed", "the start is given up")
        assert mcp.status()[0]["reason"] == "timed out while starting"
        assert len(registry) == 0


# ---- a Streamable HTTP server -----------------------------------------------------------------


@contextlib.contextmanager
def serving(*options: str) -> Iterator[int]:
    """tests/mcp_servers/http_server.py on a free port, once it accepts connections."""
    port = free_port()
    command = [sys.executable, str(SERVERS / "http_server.py"), str(port), *options]
    process = subprocess.Popen(command)
    try:

        def accepts() -> bool:
            assert process.poll() is None, "the MCP HTTP server exited"
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        until(accepts, "the MCP HTTP server listens", timeout=20)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """A Streamable HTTP MCP server's URL."""
    with serving() as port:
        yield f"http://127.0.0.1:{port}/mcp"


async def test_a_legacy_sse_server_works_too(tmp_path: Path) -> None:
    with serving("sse") as port:
        url = f"http://127.0.0.1:{port}/sse"
        (config,) = load_mcp_servers(write(tmp_path, {"mcpServers": {"old": {"url": url}}}), {})
        assert config.transport == "sse"
        with manager(config) as (mcp, registry):
            assert mcp.status()[0]["state"] == "ready"
            result = await run_call(executor_for(registry), "old__shout", {"text": "sse"})
            assert result.content == "SSE"


async def test_http_tools_run_with_headers_from_the_environment(
    http_server: str, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        {
            "mcpServers": {
                "tracker": {"url": http_server, "headers": {"Authorization": "Bearer ${TK}"}}
            }
        },
    )
    (config,) = load_mcp_servers(path, {"TK": "sekrit"})
    with manager(config) as (mcp, registry):
        assert mcp.status()[0] == {
            "name": "tracker",
            "transport": "http",
            "state": "ready",
            "tools": 2,
        }
        executor = executor_for(registry)
        assert (await run_call(executor, "tracker__shout", {"text": "hi"})).content == "HI"
        whoami = await run_call(executor, "tracker__whoami", {})
        assert whoami.content == "authorization=Bearer sekrit"


async def test_per_user_headers_use_each_users_value_and_ask_for_a_missing_one(
    http_server: str, tmp_path: Path
) -> None:
    headers = {"Authorization": "Bearer {{user.TRACKER_TOKEN}}"}
    path = write(tmp_path, {"mcpServers": {"tracker": {"url": http_server, "headers": headers}}})
    (config,) = load_mcp_servers(path, {})
    assert config.user_fields == ("TRACKER_TOKEN",)
    with manager(config) as (mcp, registry):
        assert mcp.status()[0]["state"] == "ready"  # listed without the user's header
        executor = executor_for(registry)

        def as_user(token: str) -> ToolContext:
            return ToolContext(credentials={"TRACKER_TOKEN": token})

        ann = await run_call(executor, "tracker__whoami", {}, as_user("ann-token"))
        bob = await run_call(executor, "tracker__whoami", {}, as_user("bob-token"))
        again = await run_call(executor, "tracker__whoami", {}, as_user("ann-token"))
        assert ann.content == again.content == "authorization=Bearer ann-token"
        assert bob.content == "authorization=Bearer bob-token"
        unset = await run_call(executor, "tracker__whoami", {})
        assert unset.status == "error" and "needs your TRACKER_TOKEN" in unset.content


# ---- through the chat service: approval -------------------------------------------------------


@pytest.fixture
def service_tools() -> Iterator[ToolRegistry]:
    with manager(team(trusted_tools=frozenset({"add"}))) as (_, registry):
        yield registry


async def turn_with(service: ChatService, name: str, decision: bool | None) -> list[str]:
    """Run a turn offering `name`; approve or deny each call asked about; return those names."""
    user = await service.db(lambda s: repo.ensure_user(session=s, username="local"))
    assert user.id is not None
    asked: list[str] = []
    stream = service.stream_turn(
        user_id=user.id,
        conversation_id=None,
        action=NewMessage("go"),
        turn=TurnSettings(provider="siliconflow", model="Qwen/Qwen3-8B", tools=(name,)),
    )
    async with contextlib.aclosing(stream):
        async for update in stream:
            waiting = update.progress.awaiting_approval
            if waiting and decision is not None:
                asked.extend(c.name for c in waiting)
                service.approvals.resolve(user.id, update.conversation_id, decision)
    return asked


async def test_a_trusted_mcp_tool_runs_without_asking(
    service: ChatService, fake: FakeOpenAI
) -> None:
    fake.enqueue(
        Reply(content="", tool_calls=[call("a1", "team__add", {"a": 20, "b": 22})]),
        Reply(content="42."),
    )
    assert await turn_with(service, "team__add", False) == []  # denies anything it is asked
    assert [t["function"]["name"] for t in fake.requests[0]["json"]["tools"]] == ["team__add"]
    assert tool_messages(fake.requests[1]["json"]) == [
        {"role": "tool", "tool_call_id": "a1", "content": "42"}
    ]


async def test_an_untrusted_mcp_tool_waits_for_approval(
    service: ChatService, fake: FakeOpenAI
) -> None:
    fake.enqueue(
        Reply(content="", tool_calls=[call("l1", "team__lookup", {"key": "door"})]),
        Reply(content="Found it."),
    )
    assert await turn_with(service, "team__lookup", True) == ["team__lookup"]
    (message,) = tool_messages(fake.requests[1]["json"])
    assert message["content"].startswith("door = hello")


# ---- images in results -----------------------------------------------------------------------


async def test_a_results_images_are_kept_within_the_limits_and_the_rest_are_notes() -> None:
    with manager(team(), image_limits=Limits(max_bytes=50_000, max_count=4)) as (_, registry):
        executor = executor_for(registry)
        one = await run_call(executor, "team__picture", {})
        (image,) = one.images
        assert (image["kind"], image["mime"], image["width"], image["height"]) == (
            "image",
            "image/png",
            2,
            2,
        )
        assert base64.b64decode(image["data"]).startswith(b"\x89PNG")
        assert image["preview"].startswith("data:image/jpeg;base64,")  # the thumbnail
        assert "[image 1: image/png" in one.content and "not shown" not in one.content
        five = await run_call(executor, "team__picture", {"count": 5})
        assert len(five.images) == 4 and five.content.count("shown to the user") == 4
        assert "not shown: at most 4 images of a result are shown" in five.content
        tiff = await run_call(executor, "team__picture", {"kind": "tiff"})
        assert tiff.images == () and "[image: image/tiff" in tiff.content
        assert "not shown: only PNG, JPEG, GIF and WebP images are shown" in tiff.content
        big = await run_call(executor, "team__picture", {"side": 200})
        assert big.images == () and "[image: image/png" in big.content
        assert "not shown: larger than" in big.content


VISION_MODEL, TEXT_MODEL = "Qwen/Qwen2.5-VL-72B-Instruct", "Qwen/Qwen3-8B"


async def picture_turn(
    service: ChatService, model: str, conversation_id: str | None = None
) -> tuple[int, str]:
    """A turn offering team__picture, its calls approved; returns (user id, conversation id)."""
    user = await service.db(lambda s: repo.ensure_user(session=s, username="local"))
    assert user.id is not None
    stream = service.stream_turn(
        user_id=user.id,
        conversation_id=conversation_id,
        action=NewMessage("draw"),
        turn=TurnSettings(provider="siliconflow", model=model, tools=("team__picture",)),
    )
    async with contextlib.aclosing(stream):
        async for update in stream:
            conversation_id = update.conversation_id
            if update.progress.awaiting_approval:
                service.approvals.resolve(user.id, update.conversation_id, True)
    assert conversation_id is not None
    return user.id, conversation_id


def roles(body: dict[str, Any]) -> list[str]:
    return [m["role"] for m in body["messages"] if m["role"] != "system"]


async def test_a_tools_images_are_stored_shown_and_sent_to_a_vision_model(
    service: ChatService, fake: FakeOpenAI
) -> None:
    fake.enqueue(
        Reply(content="", tool_calls=[call("p1", "team__picture", {"count": 2})]),
        Reply(content="Two dots."),
        Reply(content="Still two."),
    )
    user_id, conversation_id = await picture_turn(service, VISION_MODEL)
    body = fake.requests[1]["json"]
    assert roles(body) == ["user", "assistant", "tool", "user"]
    tool, shown = body["messages"][-2:]
    assert "[image 1: image/png" in tool["content"] and "[image 2: image/png" in tool["content"]
    assert shown["content"][0] == {
        "type": "text",
        "text": "The images returned by tool team__picture:",
    }
    urls = [part["image_url"]["url"] for part in shown["content"][1:]]
    assert len(urls) == 2 and all(u.startswith("data:image/png;base64,") for u in urls)

    thread = await service.db(
        lambda s: repo.load_thread(session=s, user_id=user_id, conversation_id=conversation_id)
    )
    (row,) = [m for m in thread.path if m.role == "tool"]
    kept = row.attachments or []
    assert urls == [f"data:{a['mime']};base64,{a['data']}" for a in kept]
    blocks = [
        str(item) for item in render_path(thread.path).messages if "team__picture" in str(item)
    ]
    assert len(blocks) == 1 and kept[0]["preview"] != kept[1]["preview"]
    assert all(f"![image-{n}.png]({a['preview']})" in blocks[0] for n, a in enumerate(kept, 1))

    await picture_turn(service, VISION_MODEL, conversation_id)  # the stored path, sent again
    again = fake.requests[2]["json"]
    assert roles(again) == ["user", "assistant", "tool", "user", "assistant", "user"]
    assert again["messages"][-4:-2] == [tool, shown]


async def test_a_model_without_image_input_gets_only_the_note(
    service: ChatService, fake: FakeOpenAI
) -> None:
    fake.enqueue(
        Reply(content="", tool_calls=[call("p1", "team__picture", {})]),
        Reply(content="A dot."),
        Reply(content="Still one."),
    )
    user_id, conversation_id = await picture_turn(service, TEXT_MODEL)
    await picture_turn(service, TEXT_MODEL, conversation_id)
    first, again = fake.requests[1]["json"], fake.requests[2]["json"]
    assert roles(first) == ["user", "assistant", "tool"]
    assert roles(again) == ["user", "assistant", "tool", "assistant", "user"]
    for body in (first, again):
        assert "image_url" not in json.dumps(body)
        (tool,) = tool_messages(body)
        assert "[image 1: image/png" in tool["content"]
    thread = await service.db(
        lambda s: repo.load_thread(session=s, user_id=user_id, conversation_id=conversation_id)
    )
    (row,) = [m for m in thread.path if m.role == "tool"]
    assert [a["mime"] for a in row.attachments or []] == ["image/png"]  # still shown to the user


# ---- the running app --------------------------------------------------------------------------


@pytest.fixture
def mcp_app(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[RunningApp]:
    path = write(
        tmp_path,
        {
            "mcpServers": {
                "team": {
                    "command": sys.executable,
                    "args": TEAM,
                    "env": {"TEAM_GREETING": "${GREETING}"},
                    "trust": True,
                },
                "ghost": {"command": "/no/such/mcp-server"},
            }
        },
    )
    running = start_app(
        fake_openai, tmp_path / "parley.db", MCP_SERVERS_FILE=str(path), GREETING="hey"
    )
    try:
        yield running
    finally:
        running.close()


def test_the_app_offers_mcp_tools_and_sends_their_results_back(mcp_app: RunningApp) -> None:
    fake = mcp_app.fake
    fake.enqueue(
        Reply(content="", tool_calls=[call("l1", "team__lookup", {"key": "k"})]),
        Reply(content="Done."),
    )
    answer, _ = mcp_app.client().predict(
        "look it up", "", "", '{"tools": ["team__lookup"]}', api_name="/chat"
    )
    assert answer == "Done."
    assert [t["function"]["name"] for t in fake.requests[0]["json"]["tools"]] == ["team__lookup"]
    (message,) = tool_messages(fake.requests[1]["json"])
    assert message["tool_call_id"] == "l1" and message["content"].startswith("k = hey")


def test_healthz_reports_each_server_without_secrets(mcp_app: RunningApp) -> None:
    response = httpx.get(mcp_app.url + "healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"
    rows = {row["name"]: row for row in response.json()["mcp"]}
    assert rows["team"] == {"name": "team", "transport": "stdio", "state": "ready", "tools": 6}
    assert rows["ghost"]["state"] == "failed" and "No such file" in rows["ghost"]["reason"]
    assert "hey" not in response.text


def test_the_readme_example_is_the_file_and_its_stdio_server_works() -> None:
    root = SERVERS.parent.parent
    example = root / "examples" / "mcp.json"
    assert example.read_text(encoding="utf-8").strip() in (root / "README.md").read_text("utf-8")
    clock, tracker = load_mcp_servers(example, {"CLOCK_LABEL": "c", "TRACKER_TEAM_KEY": "t"})
    assert tracker.user_fields == ("TRACKER_TOKEN",) and tracker.headers["X-Team-Key"] == "t"
    runnable = dataclasses.replace(clock, command=sys.executable, cwd=str(root))
    with manager(runnable) as (mcp, registry):
        assert mcp.status()[0]["state"] == "ready"
        assert registry.names() == ["clock__utc_now", "clock__days_between"]
        utc_now = registry.get("clock__utc_now")
        assert utc_now is not None and not utc_now.needs_approval and utc_now.read_only
