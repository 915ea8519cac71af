"""Failing browser tests from a QA review of demo mode (Chromium against the fake upstream).

Each test is one bug a person preparing a stakeholder demo runs into; each fails on the code as
reviewed and should pass once the bug is fixed. SQLite only (`sqlite_app`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, FilePayload, Page, expect

from tests.browser import (  # noqa: F401
    TIMEOUT_MS,
    browser_fixture,
    chat_requests,
    choose_model,
    open_app,
    page_fixture,
    pick_compare_model,
    playwright_fixture,
    send,
)
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply

VISION = "Qwen/Qwen2.5-VL-72B-Instruct"
MODELS = ["Qwen/Qwen3-32B", "deepseek-ai/DeepSeek-V3", VISION]


@pytest.fixture
def app(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[RunningApp]:
    """Parley on SQLite whose fake upstream lists a vision model and two text models."""
    fake_openai.models = list(MODELS)
    running = start_app(fake_openai, tmp_path / "parley.db", MAX_RETRIES="0")
    try:
        yield running
    finally:
        running.close()


def png(color: tuple[int, int, int] = (220, 40, 40)) -> FilePayload:
    out = io.BytesIO()
    Image.new("RGB", (48, 32), color).save(out, "PNG")
    return {"name": "red.png", "mimeType": "image/png", "buffer": out.getvalue()}


def answer_done(page: Page, count: int) -> None:
    """`count` finished answers (each has its figures line) and Send is back."""
    expect(page.locator("#chatbot").get_by_text("first token")).to_have_count(count)
    expect(page.locator("#message button.stop-button")).to_have_count(0)


def send_image_message(page: Page, text: str) -> None:
    page.locator("#message input[type=file]").set_input_files([png()])
    expect(page.locator("#message img")).to_have_count(1)
    send(page, text)


# ---- chat -------------------------------------------------------------------------------------


def test_editing_the_text_of_a_message_with_an_image_resends_it(
    app: RunningApp, page: Page
) -> None:
    """Gradio sends one edit event per item of the bubble (the image item first, unchanged);
    Parley refuses the image item ("That item cannot be edited") and the real edit is dropped,
    leaving "Error" over the chat and the message box."""
    open_app(page, app)
    choose_model(page, VISION)
    send_image_message(page, "what colour?")
    answer_done(page, 1)

    page.locator('#chatbot button[aria-label="Edit"]').first.click()
    boxes = page.locator("#chatbot textarea")
    expect(boxes.first).to_have_value("what colour?")  # the text, then the pictures' item
    boxes.first.fill("what colour is it, exactly?")
    page.locator('#chatbot button[aria-label="Submit"]').click()

    expect(page.locator("#chatbot")).to_contain_text("Echo: what colour is it, exactly?")
    expect(page.locator(".toast-message-text")).to_have_count(0)
    sent = chat_requests(app)[-1]["json"]["messages"][-1]["content"]
    assert [part["type"] for part in sent] == ["text", "image_url"]  # the image went again


def test_the_version_switcher_cannot_hide_an_answer_that_is_streaming(
    app: RunningApp, page: Page
) -> None:
    """The ◀ of the previous answer stays on screen while the next answer streams; clicking it
    moves the conversation back to the old branch and the new question and answer vanish."""
    open_app(page, app)
    send(page, "one")
    answer_done(page, 1)
    page.locator('#chatbot button[aria-label="Retry"]').click()
    expect(page.locator("#version-label")).to_contain_text("Answer version 2 of 2")
    expect(page.locator("#message button.stop-button")).to_have_count(0)

    app.fake.enqueue(Reply(content="slow answer " * 40, delay=0.04))
    send(page, "two")
    expect(page.locator("#message button.stop-button")).to_be_visible()
    prev = page.locator("#prev-version")
    if prev.is_visible():  # the fix may equally hide it while streaming
        prev.click()
    expect(page.locator("#message button.stop-button")).to_have_count(0, timeout=20_000)
    expect(page.locator("#chatbot")).to_contain_text("two")
    expect(page.locator("#chatbot")).to_contain_text("slow answer")


# ---- language ---------------------------------------------------------------------------------


def test_switching_language_translates_the_open_conversation_and_the_models_note(
    app: RunningApp, page: Page
) -> None:
    """After 中文 in the sidebar the open chat keeps "Thinking", the English figures and
    "Answer version 2 of 2", and the models note stays "3 models from SiliconFlow."."""
    app.fake.default = Reply(echo=True, reasoning="hmm")
    open_app(page, app)
    send(page, "hello")
    answer_done(page, 1)
    page.locator('#chatbot button[aria-label="Retry"]').click()
    expect(page.locator("#version-label")).to_contain_text("Answer version 2 of 2")

    page.locator("#language label", has_text="中文").click()
    expect(page.locator("#new-chat")).to_have_text("+ 新对话")
    expect(page.locator("#models-note")).to_contain_text("个模型")
    expect(page.locator("#version-label")).to_contain_text("回答版本 2 / 2")
    expect(page.locator("#chatbot")).to_contain_text("首 token")
    expect(page.locator("#chatbot .thought-group .title", has_text="思考")).to_have_count(1)


def test_switching_language_keeps_the_continue_with_choices_of_an_open_comparison(
    app: RunningApp, page: Page
) -> None:
    """The translation update resets the "Continue with" radio to its build-time choices
    (only "All columns"), so one can no longer continue with one model."""
    open_app(page, app)
    page.get_by_role("tab", name="Compare").click()
    pick_compare_model(page, 0, "Qwen/Qwen3-32B")
    pick_compare_model(page, 1, "deepseek-ai/DeepSeek-V3")
    page.locator("#compare-prompt textarea").fill("Why is the sky blue?")
    page.locator("#compare-send").click()
    expect(page.locator("#compare-best-1")).to_be_visible(timeout=20_000)
    radio = page.locator("#compare-continue label")
    expect(radio).to_have_count(3)

    page.locator("#language label", has_text="中文").click()
    expect(page.locator("#compare-continue")).to_contain_text("所有列")
    expect(radio).to_have_count(3)
    expect(page.locator("#compare-continue")).to_contain_text("deepseek-ai/DeepSeek-V3")


# ---- compare ----------------------------------------------------------------------------------


def test_enter_sends_the_compare_prompt_as_its_placeholder_says(
    app: RunningApp, page: Page
) -> None:
    """The prompt is a 2-line Textbox: Gradio sends it on Shift+Enter and Enter adds a line,
    the opposite of "Enter sends, Shift+Enter adds a line"."""
    open_app(page, app)
    page.get_by_role("tab", name="Compare").click()
    pick_compare_model(page, 0, "Qwen/Qwen3-32B")
    pick_compare_model(page, 1, "deepseek-ai/DeepSeek-V3")
    prompt = page.locator("#compare-prompt textarea")
    expect(prompt).to_have_attribute("placeholder", re.compile("Enter sends"))
    prompt.fill("Why is the sky blue?")
    prompt.press("Enter")
    expect(page.locator("#compare-header-0")).to_contain_text("Qwen/Qwen3-32B")
    expect(prompt).to_have_value("")


def test_compare_works_out_of_the_box_without_picking_models(app: RunningApp, page: Page) -> None:
    """Every column starts on the same default model, so the first Compare press is refused
    with "Pick a different model for each column."."""
    open_app(page, app)
    page.get_by_role("tab", name="Compare").click()
    first = page.locator("#compare-model-0 input")
    expect(first).not_to_have_value("")
    assert first.input_value() != page.locator("#compare-model-1 input").input_value()


# ---- presets ----------------------------------------------------------------------------------


def test_picking_a_preset_applies_it_once(app: RunningApp, page: Page) -> None:
    """Gradio 6.31's Dropdown fires `.input` twice per pick: the preset is applied twice and
    two "Preset … applied." toasts stack up."""
    open_app(page, app)
    page.locator("#presets").get_by_text("Presets", exact=True).click()
    page.locator("#preset input").click()
    page.get_by_role("option", name="Shipped: Precise answers").click()
    expect(page.locator("#system-prompt textarea")).not_to_have_value("")
    # Gradio stacks toasts of one kind in one box: one .toast-message-text per message.
    applied = page.locator(".toast-message-text", has_text="applied")
    expect(applied.first).to_be_visible()
    expect(page.locator(".toast-count")).to_have_count(0)  # "(2)" when applied twice
    expect(applied).to_have_count(1)


# ---- Chinese messages -------------------------------------------------------------------------


@pytest.fixture
def chinese_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def test_a_refused_attachment_is_explained_in_chinese(app: RunningApp, chinese_page: Page) -> None:
    """The reason after "附件被拒绝:" and the text-only model's refusal stay English."""
    page = chinese_page
    open_app(page, app, note="个模型")
    choose_model(page, "Qwen/Qwen3-32B")  # text-only
    send_image_message(page, "这是什么？")
    toast = page.locator(".toast-body")
    expect(toast).to_have_count(1)
    expect(toast).not_to_contain_text("does not accept images")
    expect(toast).not_to_contain_text("Pick a vision model")


# ---- share page -------------------------------------------------------------------------------


def test_the_share_page_shows_attached_images_at_thumbnail_size(
    app: RunningApp, page: Page
) -> None:
    """The thumbnail rule in style.css targets #chatbot only: on the share page (#share-chat)
    a 48×32 picture is blown up to the width of the bubble."""
    open_app(page, app)
    choose_model(page, VISION)
    send_image_message(page, "look")
    answer_done(page, 1)
    page.locator("#share-export").get_by_text("Share and export").click()
    page.locator("#share").click()
    expect(page.locator("#share-note")).to_contain_text("/share/?token=")
    url = re.search(r"http\S+token=[\w-]+", page.locator("#share-note").inner_text())
    assert url is not None
    page.goto(url.group(0))
    image = page.locator("#share-chat img[alt='red.png']")
    expect(image).to_be_visible()
    assert image.bounding_box()["width"] <= 64  # type: ignore[index]
