"""Tools through the running app: the /chat API, start-up checks, and the README example."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client.exceptions import AppError

from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply
from webapp.config import ConfigError, load_settings
from webapp.core.engine import APPROVAL_UNAVAILABLE
from webapp.server import build_tools
from webapp.tools.registry import ToolRegistry

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "team_tools.py"


@pytest.fixture
def tools_app(fake_openai: FakeOpenAI, database_url: str) -> Iterator[RunningApp]:
    running = start_app(
        fake_openai,
        database_url,
        TOOLS_MODULES=str(EXAMPLE),
        DEFAULT_TOOLS="calculator,file_ticket",
    )
    try:
        yield running
    finally:
        running.close()


def tool_messages(body: dict) -> list[dict]:
    return [m for m in body["messages"] if m["role"] == "tool"]


def calc(call_id: str, expression: str) -> dict[str, str]:
    return {
        "id": call_id,
        "name": "calculator",
        "arguments": json.dumps({"expression": expression}),
    }


def test_api_runs_the_tools_it_names_and_the_answer_comes_back(tools_app: RunningApp) -> None:
    fake = tools_app.fake
    fake.enqueue(
        Reply(content="", tool_calls=[calc("c1", "2340*0.17")]), Reply(content="It is 397.8.")
    )
    answer, conversation_id = tools_app.client().predict(
        "17% of 2340?",
        "",
        "",
        '{"tools": ["calculator"], "tool_choice": "required"}',
        api_name="/chat",
    )
    assert answer == "It is 397.8." and conversation_id
    first, second = fake.requests[0]["json"], fake.requests[1]["json"]
    assert [t["function"]["name"] for t in first["tools"]] == ["calculator"]
    assert first["tool_choice"] == "required"
    assert tool_messages(second) == [{"role": "tool", "tool_call_id": "c1", "content": "397.8"}]


def test_api_uses_the_conversations_tools_when_none_are_named(tools_app: RunningApp) -> None:
    fake, client = tools_app.fake, tools_app.client()
    # A new conversation through the API starts with DEFAULT_TOOLS.
    _, conversation_id = client.predict("hi", "", "", "{}", api_name="/chat")
    assert [t["function"]["name"] for t in fake.requests[-1]["json"]["tools"]] == [
        "calculator",
        "file_ticket",
    ]
    client.predict("again", conversation_id, "", '{"tools": ["convert_units"]}', api_name="/chat")
    client.predict("and again", conversation_id, "", "{}", api_name="/chat")
    assert [t["function"]["name"] for t in fake.requests[-1]["json"]["tools"]] == ["convert_units"]
    client.predict("no tools", conversation_id, "", '{"tools": []}', api_name="/chat")
    assert "tools" not in fake.requests[-1]["json"]


def test_api_never_runs_a_tool_that_needs_approval(tools_app: RunningApp) -> None:
    fake = tools_app.fake
    ticket = {
        "id": "t1",
        "name": "file_ticket",
        "arguments": json.dumps({"ticket": {"title": "Printer on fire"}}),
    }
    fake.enqueue(Reply(content="", tool_calls=[ticket]), Reply(content="I could not file it."))
    answer, _ = tools_app.client().predict("File a ticket", "", "", "{}", api_name="/chat")
    assert answer == "I could not file it."
    assert tool_messages(fake.requests[1]["json"]) == [
        {"role": "tool", "tool_call_id": "t1", "content": APPROVAL_UNAVAILABLE}
    ]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ('{"tools": "calculator"}', "must be a list of tool names"),
        ('{"tools": ["rm_rf"]}', "unknown tools 'rm_rf'"),
        ('{"tools": ["calculator"], "tool_choice": "convert_units"}', "not one of the offered"),
        ('{"tool_choice": 3}', "tool_choice"),
    ],
)
def test_api_refuses_bad_tool_settings_before_sending(
    tools_app: RunningApp, parameters: str, message: str
) -> None:
    with pytest.raises(AppError, match=message):
        tools_app.client().predict("Hi", "", "", parameters, api_name="/chat")
    assert tools_app.fake.requests == []


def test_the_example_module_in_readme_is_the_file_and_it_loads() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert EXAMPLE.read_text(encoding="utf-8") in readme
    registry = ToolRegistry()
    assert registry.load(str(EXAMPLE)) == 2
    ticket = registry.get("file_ticket")
    assert ticket is not None and ticket.needs_approval
    schema = ticket.schema()["function"]["parameters"]
    assert schema["required"] == ["ticket"]
    assert schema["properties"]["ticket"]["properties"]["priority"]["enum"] == ["low", "high"]


async def test_bad_tool_settings_stop_start_up_with_the_fix(tmp_path: Path) -> None:
    broken = tmp_path / "broken_tools.py"
    broken.write_text(
        "from webapp.tools.registry import tool\n\n@tool\n"
        "def no_docs(x: int) -> int:\n    return x\n",
        encoding="utf-8",
    )
    async with httpx.AsyncClient() as http:
        with pytest.raises(ConfigError, match="TOOLS_MODULES.*no_docs.*docstring"):
            build_tools(load_settings({"TOOLS_MODULES": str(broken)}, None), http)
        with pytest.raises(ConfigError, match="TOOLS_MODULES.*nowhere"):
            build_tools(load_settings({"TOOLS_MODULES": "nowhere.tools"}, None), http)
        with pytest.raises(ConfigError, match="DEFAULT_TOOLS.*'telnet'"):
            build_tools(load_settings({"DEFAULT_TOOLS": "calculator,telnet"}, None), http)
        registry, defaults = build_tools(load_settings({"DEFAULT_TOOLS": "all"}, None), http)
        assert defaults == ("calculator", "current_time", "search_conversations")
        assert "http_get" not in registry  # off unless hosts are allowed
        registry, _ = build_tools(
            load_settings({"HTTP_GET_ALLOWED_HOSTS": "wiki.internal"}, None), http
        )
        assert "http_get" in registry
        with pytest.raises(
            ConfigError,
            match=r"HTTP_GET_ALLOWED_HOSTS: allowed host "
            r"'wiki\.internal:99999' has port '99999'; use a "
            r"port from 1 to 65535: fix it in \.env",
        ):
            build_tools(
                load_settings({"HTTP_GET_ALLOWED_HOSTS": "wiki.internal:99999"}, None), http
            )
