"""Browser test for MCP tools: the Tools panel lists a stdio MCP server's tools and says why
another server is missing; an untrusted MCP tool waits for approval, and once approved its
result shows in the tool block and goes back to the model."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import (  # noqa: F401
    bot,
    browser_fixture,
    chat_requests,
    expand,
    open_app,
    page_fixture,
    playwright_fixture,
    send,
)
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply
from tests.test_browser_tools import (
    approval_panel,
    call,
    code_blocks,
    expect_status,
    open_tools_panel,
    tool_messages,
    wait_requests,
)
from tests.test_mcp import http_server  # noqa: F401

TEAM = str(Path(__file__).resolve().parent / "mcp_servers" / "team.py")


@pytest.fixture
def mcp_app(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[RunningApp]:
    servers = {
        "team": {"command": sys.executable, "args": [TEAM], "env": {"TEAM_GREETING": "hey"}},
        "ghost": {"command": "/no/such/mcp-server"},
    }
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
    running = start_app(fake_openai, tmp_path / "parley.db", MCP_SERVERS_FILE=str(path))
    try:
        yield running
    finally:
        running.close()


def test_an_mcp_tool_is_ticked_approved_and_its_result_shown(
    mcp_app: RunningApp, page: Page
) -> None:
    mcp_app.fake.enqueue(
        Reply(content="", tool_calls=[call("call_l", "team__lookup", {"key": "door"})]),
        Reply(content="Found it."),
    )
    open_app(page, mcp_app)
    open_tools_panel(page)
    status = page.locator("#mcp-status")
    expect(status).to_contain_text("team: team__add, team__lookup")
    expect(status).to_contain_text("ghost: not available — FileNotFoundError")
    # Untrusted: ✋ (asks first); the server's readOnlyHint is shown but does not skip asking.
    box = page.locator("#tools").get_by_label("team__lookup ✋ (read-only)", exact=True)
    box.check()
    send(page, "Where is the door?")

    expect(approval_panel(page)).to_be_visible()
    expect(page.locator("#approval-text")).to_contain_text("team__lookup")
    expect_status(page, "team__lookup", "awaiting your approval")
    assert len(wait_requests(mcp_app, 1)) == 1
    page.locator("#approve-tool").click()

    expect(bot(page, "Found it.")).to_be_visible()
    block = expect_status(page, "team__lookup", "done")
    expand(page, block)
    expect(code_blocks(block).nth(1)).to_contain_text("door = hey")
    _, second = wait_requests(mcp_app, 2)
    (message,) = tool_messages(second)
    assert message["tool_call_id"] == "call_l" and message["content"].startswith("door = hey")


def test_a_per_user_header_value_set_in_the_tools_panel_reaches_the_server(
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    page: Page,
    http_server: str,  # noqa: F811
) -> None:
    headers = {"Authorization": "Bearer {{user.TRACKER_TOKEN}}"}
    servers = {"tracker": {"url": http_server, "headers": headers, "trust": True}}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
    app = start_app(fake_openai, tmp_path / "parley.db", MCP_SERVERS_FILE=str(path))
    try:
        fake_openai.enqueue(
            Reply(content="", tool_calls=[call("call_w", "tracker__whoami", {})]),
            Reply(content="You are known."),
        )
        open_app(page, app)
        open_tools_panel(page)
        token = page.locator("#mcp-credential-TRACKER_TOKEN input")
        token.fill("my-own-token")
        token.press("Enter")
        expect(page.locator("#mcp-credential-status")).to_contain_text(
            "TRACKER_TOKEN set for this browser session only"
        )
        expect(token).to_have_value("")  # not kept in the page
        page.locator("#tools").get_by_label("tracker__whoami", exact=True).check()
        send(page, "Who am I?")
        expect(bot(page, "You are known.")).to_be_visible()
        _, second = wait_requests(app, 2)
        assert tool_messages(second) == [
            {
                "role": "tool",
                "tool_call_id": "call_w",
                "content": "authorization=Bearer my-own-token",
            }
        ]
    finally:
        app.close()


def test_a_tool_the_server_adds_later_is_listed_on_the_next_page_load(
    fake_openai: FakeOpenAI, tmp_path: Path, page: Page
) -> None:
    servers = {"team": {"command": sys.executable, "args": [TEAM], "trusted_tools": ["learn"]}}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
    app = start_app(fake_openai, tmp_path / "parley.db", MCP_SERVERS_FILE=str(path))
    try:
        fake_openai.enqueue(
            Reply(content="", tool_calls=[call("call_n", "team__learn", {"word": "hi"})]),
            Reply(content="Learned."),
        )
        open_app(page, app)
        open_tools_panel(page)
        new_box = page.locator("#tools").get_by_label("team__say_hi ✋", exact=True)
        expect(new_box).to_have_count(0)
        page.locator("#tools").get_by_label("team__learn", exact=True).check()
        send(page, "Learn a word")
        expect(bot(page, "Learned.")).to_be_visible()
        page.reload()
        expect(page.locator("#models-note")).to_contain_text("models from")
        open_tools_panel(page)
        expect(new_box).to_have_count(1)
        new_box.check()  # the server-side choices know it: a send with it ticked is accepted
        fake_openai.enqueue(Reply(content="Offered."))
        send(page, "Say it")
        expect(bot(page, "Offered.")).to_be_visible()
        assert "team__say_hi" in [
            t["function"]["name"] for t in chat_requests(app)[-1]["json"]["tools"]
        ]
    finally:
        app.close()
