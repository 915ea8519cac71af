"""The UI in Chinese and English, through Chromium: chosen from the browser language, switchable,
remembered, and followed by the text the server writes (Thinking block, figures, notes)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import (  # noqa: F401
    TIMEOUT_MS,
    browser_fixture,
    chat_requests,
    page_fixture,
    playwright_fixture,
    send,
)
from tests.conftest import RunningApp
from tests.fake_openai import ErrorReply, Reply


@pytest.fixture
def app(sqlite_app: RunningApp) -> RunningApp:
    """Parley on SQLite only (overrides conftest's app, which also runs PostgreSQL)."""
    return sqlite_app


@pytest.fixture
def chinese_page(browser: Browser) -> Iterator[Page]:
    """A browser whose language is Chinese (navigator.language and Accept-Language)."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def thinking_title(page: Page, title: str) -> None:
    expect(page.locator("#chatbot .thought-group .title", has_text=title)).to_have_count(1)


def test_a_chinese_browser_gets_the_chinese_ui_and_chinese_figures(
    app: RunningApp, chinese_page: Page
) -> None:
    page = chinese_page
    app.fake.enqueue(Reply(reasoning="先想一想。", content="你好！很高兴见到你。"))
    page.goto(app.url)
    expect(page.locator("#new-chat")).to_have_text("+ 新对话")
    expect(page.get_by_role("tab", name="聊天")).to_be_visible()
    expect(page.get_by_role("tab", name="对比")).to_be_visible()
    expect(page.locator("#message textarea")).to_have_attribute(
        "placeholder", "输入消息（Enter 发送，Shift+Enter 换行；可粘贴、拖入或添加图片）"
    )
    expect(page.locator("#models-note")).to_contain_text("个模型")  # written by the server
    expect(page.locator("#language input[value='zh']")).to_be_checked()
    expect(page.locator("#settings")).to_contain_text("系统提示词")

    send(page, "你好")
    thinking_title(page, "思考")
    expect(page.locator("#chatbot")).to_contain_text("首 token")  # the figures line
    expect(page.locator("#chatbot")).not_to_contain_text("first token")
    sent = chat_requests(app)[-1]["json"]["messages"]
    assert sent[-1] == {"role": "user", "content": "你好"}

    # A provider's error is stored as data and worded in Chinese, live and after a reload;
    # the provider's own words stay as they came.
    app.fake.enqueue(ErrorReply(401, '"Invalid token"'))
    send(page, "再说一遍")
    refused = "SiliconFlow 拒绝了 API 密钥（401）：请检查 .env 中的 SILICONFLOW_API_KEY"
    expect(page.locator("#chatbot")).to_contain_text(refused)
    expect(page.locator("#chatbot")).not_to_contain_text("rejected the API key")
    page.locator("#new-chat").click()  # then open it again: drawn from the stored rows
    expect(page.locator("#chatbot")).not_to_contain_text(refused)
    page.locator("#conversations label", has_text="你好").click()
    expect(page.locator("#chatbot")).to_contain_text("你好！很高兴见到你。")
    expect(page.locator("#chatbot")).to_contain_text(refused)
    # Reloaded, the conversation in the address opens once the language is known: in Chinese.
    expect(page).to_have_url(re.compile(r"[?&]c=[0-9a-f]{32}"))
    page.reload()
    expect(page.locator("#chatbot")).to_contain_text(refused)
    expect(page.locator("#chatbot")).to_contain_text("首 token")
    expect(page.locator("#chatbot")).not_to_contain_text("first token")


def test_switching_language_relabels_the_page_and_is_remembered(
    app: RunningApp, page: Page
) -> None:
    page.goto(app.url)  # an English browser
    expect(page.locator("#new-chat")).to_have_text("+ New chat")
    expect(page.locator("#language input[value='en']")).to_be_checked()

    page.locator("#language label", has_text="中文").click()
    expect(page.locator("#new-chat")).to_have_text("+ 新对话")
    expect(page.get_by_role("tab", name="对比")).to_be_visible()
    expect(page.locator("#advanced")).to_contain_text("高级参数")

    app.fake.enqueue(Reply(reasoning="Thinking it over.", content="Hello there."))
    send(page, "Hello")
    thinking_title(page, "思考")  # server-made text follows the switch at once

    page.reload()  # the choice is kept in this browser
    expect(page.locator("#new-chat")).to_have_text("+ 新对话")
    expect(page.locator("#language input[value='zh']")).to_be_checked()

    page.locator("#language label", has_text="English").click()
    expect(page.locator("#new-chat")).to_have_text("+ New chat")
    expect(page.get_by_role("tab", name="Compare")).to_be_visible()
    page.reload()
    expect(page.locator("#new-chat")).to_have_text("+ New chat")
