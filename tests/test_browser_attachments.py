"""Browser tests for image and video attachments: upload, paste and drop images into the message
box, attach links, and see what the fake upstream receives and what the chat shows.

Fixtures (`browser`, `page`, `fake_openai`) and helpers come from tests/conftest.py and
tests/browser.py. These run on SQLite only: the service tests in test_attachments.py cover
storing attachments on PostgreSQL too.
"""

from __future__ import annotations

import base64
import io
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import FilePayload, Locator, Page, expect

from tests.browser import (  # noqa: F401
    ARTIFACTS,
    bot,
    browser_fixture,
    chat_requests,
    choose_model,
    message_box,
    open_app,
    page_fixture,
    playwright_fixture,
    wait_until,
)
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI

VISION = "Qwen/Qwen2.5-VL-72B-Instruct"
TEXT_ONLY = "Qwen/Qwen3-8B"
MODELS = ["fake/model-a", TEXT_ONLY, VISION]


def png(size: tuple[int, int] = (48, 32), color: tuple[int, int, int] = (220, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def noisy_png(size: tuple[int, int] = (120, 90)) -> bytes:
    """A PNG that does not compress away (~32 KB)."""
    width, height = size
    image = Image.frombytes("RGB", size, random.Random(5).randbytes(width * height * 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def data_url(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def payload(name: str, raw: bytes) -> FilePayload:
    return {"name": name, "mimeType": "image/png", "buffer": raw}


@pytest.fixture
def make_app(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[Callable[..., RunningApp]]:
    """Start Parley (SQLite) with the given settings; the fake lists a vision model."""
    running: list[RunningApp] = []

    def make(**env: str) -> RunningApp:
        fake_openai.models = list(MODELS)
        app = start_app(fake_openai, tmp_path / f"parley{len(running)}.db", **env)
        running.append(app)
        return app

    yield make
    for app in running:
        app.close()


@pytest.fixture
def vision_app(make_app: Callable[..., RunningApp]) -> RunningApp:
    return make_app()


# ---- helpers -----------------------------------------------------------------------------------


def box_thumbnails(page: Page) -> Locator:
    """The images waiting in the message box (shown once their upload has finished)."""
    return page.locator("#message .thumbnail-item img")


def attach(page: Page, *files: FilePayload) -> None:
    before = box_thumbnails(page).count()
    page.locator("#message input[type=file]").set_input_files(list(files))
    expect(box_thumbnails(page)).to_have_count(before + len(files))


def type_and_send(page: Page, text: str) -> None:
    box = message_box(page)
    box.fill(text)
    send_again(page)


def send_again(page: Page) -> None:
    """Press Enter in the box once it is ready to send (the last turn's chain has ended)."""
    expect(page.locator("#message button.submit-button")).to_be_visible()
    message_box(page).press("Enter")


def answered(page: Page, text: str) -> None:
    """Wait until the echo answer to `text` is complete (its stats line is rendered)."""
    answer = bot(page, f"Echo: {text}")
    expect(answer).to_be_visible()
    expect(page.locator("#chatbot")).to_contain_text("completion")


def user_image(page: Page, alt: str) -> Locator:
    return page.locator(f'#chatbot [data-testid="user"] img[alt="{alt}"]')


def wait_loaded(page: Page, image: Locator) -> None:
    """Wait until the image has loaded and decoded to real pixels."""
    wait_until(page, "img => img.complete && img.naturalWidth > 0", image.element_handle())


def toast(page: Page, text: str) -> Locator:
    return page.locator(".toast-body", has_text=text)


def last_user_content(app: RunningApp) -> Any:
    return chat_requests(app)[-1]["json"]["messages"][-1]["content"]


# ---- tests -------------------------------------------------------------------------------------

QUESTION = "What is in this picture?"


def test_an_uploaded_image_is_sent_as_a_data_url_and_shown_after_reopening(
    vision_app: RunningApp, page: Page
) -> None:
    app = vision_app
    raw = png()
    open_app(page, app)
    choose_model(page, VISION)
    attach(page, payload("red.png", raw))
    type_and_send(page, QUESTION)
    answered(page, QUESTION)

    assert len(chat_requests(app)) == 1
    assert last_user_content(app) == [
        {"type": "text", "text": QUESTION},
        {"type": "image_url", "image_url": {"url": data_url(raw)}},
    ]
    preview = user_image(page, "red.png")
    expect(preview).to_have_count(1)
    wait_loaded(page, preview)
    users = page.locator('#chatbot [data-testid="user"]')
    expect(users).to_have_count(2)  # the text, then the picture
    expect(users.nth(0)).to_have_text(QUESTION)
    expect(users.nth(1).locator("img")).to_have_count(1)
    # Sent: the box is empty again, text and images.
    expect(message_box(page)).to_have_value("")
    expect(box_thumbnails(page)).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "attachments.png"), full_page=True)

    page.goto(app.url)  # a fresh page: no conversation in the address (?c=), none open
    expect(page.locator("#models-note")).to_contain_text("models from")
    expect(user_image(page, "red.png")).to_have_count(0)
    entry = page.locator("#conversations label", has_text=QUESTION)
    expect(entry).to_have_count(1)
    entry.click()
    preview = user_image(page, "red.png")
    expect(preview).to_have_count(1)
    wait_loaded(page, preview)
    expect(bot(page, f"Echo: {QUESTION}")).to_be_visible()
    assert len(chat_requests(app)) == 1  # reopening did not call the provider


def test_pasted_and_dropped_images_are_sent_too(vision_app: RunningApp, page: Page) -> None:
    app = vision_app
    pasted, dropped = png(color=(20, 200, 20)), png((30, 30), (20, 20, 220))
    open_app(page, app)
    choose_model(page, VISION)
    page.evaluate(PASTE_JS, [base64.b64encode(pasted).decode(), "pasted.png"])
    expect(box_thumbnails(page)).to_have_count(1)
    page.evaluate(DROP_JS, [base64.b64encode(dropped).decode(), "dropped.png"])
    expect(box_thumbnails(page)).to_have_count(2)
    type_and_send(page, "Compare these")
    answered(page, "Compare these")
    assert last_user_content(app) == [
        {"type": "text", "text": "Compare these"},
        {"type": "image_url", "image_url": {"url": data_url(pasted)}},
        {"type": "image_url", "image_url": {"url": data_url(dropped)}},
    ]
    for name in ("pasted.png", "dropped.png"):
        wait_loaded(page, user_image(page, name))


# A paste of an image file into the message box, as a browser makes it from the clipboard.
PASTE_JS = """([b64, name]) => {
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, {type: 'image/png'}));
    document.querySelector('#message textarea').dispatchEvent(
        new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
}"""

# A file dragged from the desktop and dropped on the message box.
DROP_JS = """([b64, name]) => {
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, {type: 'image/png'}));
    const target = document.querySelector('#message .full-container');
    for (const type of ['dragenter', 'dragover', 'drop']) {
        target.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true,
                                                  cancelable: true}));
    }
}"""


def test_a_text_only_model_refuses_the_image_and_keeps_the_message(
    vision_app: RunningApp, page: Page
) -> None:
    app = vision_app
    raw = png()
    open_app(page, app)
    choose_model(page, TEXT_ONLY)
    attach(page, payload("red.png", raw))
    type_and_send(page, QUESTION)

    refusal = toast(page, "does not accept images")
    expect(refusal).to_be_visible()
    expect(refusal).to_contain_text(TEXT_ONLY)
    expect(message_box(page)).to_have_value(QUESTION)
    expect(box_thumbnails(page)).to_have_count(1)
    expect(page.locator('#chatbot [data-testid="user"]')).to_have_count(0)
    assert chat_requests(app) == []

    # The kept message goes out as it is once a vision model is chosen.
    refusal.locator('[data-testid="toast-close"]').click()
    choose_model(page, VISION)
    send_again(page)
    answered(page, QUESTION)
    assert last_user_content(app)[1] == {"type": "image_url", "image_url": {"url": data_url(raw)}}


def test_an_over_size_image_is_refused_and_kept_in_the_box(
    make_app: Callable[..., RunningApp], page: Page
) -> None:
    app = make_app(ATTACH_MAX_MB="0.01")  # 10 KB
    raw = noisy_png()
    assert len(raw) > 20_000
    open_app(page, app)
    choose_model(page, VISION)
    attach(page, payload("noise.png", raw))
    type_and_send(page, "Too big?")

    refusal = toast(page, "ATTACH_MAX_MB")
    expect(refusal).to_be_visible()
    expect(refusal).to_contain_text("noise.png is ")
    expect(message_box(page)).to_have_value("Too big?")
    expect(box_thumbnails(page)).to_have_count(1)
    expect(page.locator('#chatbot [data-testid="user"]')).to_have_count(0)
    assert chat_requests(app) == []


def test_the_refusal_toast_says_the_attachment_was_refused(
    make_app: Callable[..., RunningApp], page: Page
) -> None:
    app = make_app(ATTACH_MAX_MB="0.01")
    open_app(page, app)
    choose_model(page, VISION)
    attach(page, payload("noise.png", noisy_png()))
    type_and_send(page, "Too big?")
    expect(toast(page, "ATTACH_MAX_MB")).to_be_visible()
    expect(toast(page, "ATTACH_MAX_MB")).to_contain_text("Attachment refused", timeout=1000)


def test_links_are_sent_as_image_and_video_parts(vision_app: RunningApp, page: Page) -> None:
    app = vision_app
    image_link = "https://images.example.com/cat.png"
    video_link = "https://videos.example.com/clip.mp4"
    open_app(page, app)
    choose_model(page, VISION)
    page.locator("#attach-links").get_by_text("Attach a link").click()
    links = page.locator("#attach-url textarea")
    expect(links).to_be_visible()

    links.fill("javascript:alert(1)")
    type_and_send(page, "Look at the link")
    expect(toast(page, "is not an http(s) link")).to_be_visible()
    expect(message_box(page)).to_have_value("Look at the link")
    expect(links).to_have_value("javascript:alert(1)")
    assert chat_requests(app) == []

    links.fill(f"{image_link}\n{video_link}")
    send_again(page)
    answered(page, "Look at the link")
    assert last_user_content(app) == [
        {"type": "text", "text": "Look at the link"},
        {"type": "image_url", "image_url": {"url": image_link}},
        {"type": "video_url", "video_url": {"url": video_link}},
    ]
    expect(links).to_have_value("")  # the links went with the message
    shown = page.locator('#chatbot [data-testid="user"]').last  # after the message's text
    expect(shown.locator(f'a[href="{image_link}"]')).to_have_count(1)
    expect(shown.locator(f'a[href="{video_link}"]')).to_have_count(1)
    expect(shown.locator("img")).to_have_count(0)  # a linked image is not fetched by the page
