"""Screenshots of what a new user tripped on in the first hour (docs/screenshots/first-hour/).

    .venv/bin/python -m scripts.first_hour after    # docs/screenshots/first-hour/*-after.png
    .venv/bin/python -m scripts.first_hour after flash share    # only these scenes

Each item of issue 16 is shown as a person sees it: the real app on the fake upstream of the
test suite (nothing leaves 127.0.0.1), driven by Debian's Chromium. The "before" pictures come
from this same script run on a checkout of the version the walk-through used (49e1a65), which
does not have the script: from that checkout's directory,

    PYTHONPATH=. /path/to/.venv/bin/python /path/to/this/scripts/first_hour.py before

(PYTHONPATH makes its webapp/ and tests/ the ones imported; the pictures are written next to
this file's checkout). The script uses only what both versions of the page have. For the
pictures of item 2 the refresh after an answer and the opening of a conversation are each held
for a second, as on a busy server (the walk-through saw 0.5-1.5 s): on this machine they are
over before a screenshot.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.browser import CHROMIUM, LAUNCH_ARGS
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots" / "first-hour"
PASSWORD = "correct horse battery"
DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}
FLASH = (
    '() => [...document.querySelectorAll(\'#conversations [data-testid="status-tracker"]'
    ':not(.hide), #settings [data-testid="status-tracker"]:not(.hide), #chatbot .pending\')]'
    ".length > 0"
)
QUIET = (
    '() => document.querySelectorAll(\'[data-testid="status-tracker"]:not(.hide), '
    ".pending').length === 0"
)
LONG_TITLES = [
    "How do I migrate a PostgreSQL database between two cloud providers without downtime?",
    "Hi",
    "Write a haiku about autumn rain on a tin roof",
    "Dark mode on phones",
    "Why does parse_configuration_file_with_overrides() fail?",
    "Explain the difference between TCP and UDP like I am five",
]


def wait_until(page: Page, predicate: str, arg: Any = None, timeout_ms: int = 10_000) -> Any:
    """tests.browser.wait_until, which the commit before the fixes does not have yet."""
    check = (
        "async (arg) => { await new Promise(r => requestAnimationFrame(r)); "
        f"return await ({predicate})(arg); }}"
    )
    deadline = time.monotonic() + timeout_ms / 1000
    while not (value := page.evaluate(check, arg)):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_ms} ms: {predicate}")
    return value


def ask(page: Page, text: str) -> None:
    box = page.locator("#message textarea")
    box.fill(text)
    box.press("Enter")


def settled(page: Page) -> None:
    """Wait until the answer is final and Send is back."""
    expect(page.locator("#chatbot")).to_contain_text("completion", timeout=30_000)
    expect(page.locator("#message button.stop-button")).to_be_hidden(timeout=30_000)


def maybe(page: Page, predicate: str, timeout_ms: int) -> bool:
    """Whether `predicate` comes true within the time (a flash that the fixed page never has)."""
    try:
        wait_until(page, predicate, timeout_ms=timeout_ms)
    except AssertionError:
        return False
    return True


def money(page: Page, app: RunningApp, shot: Callable[[str, Page], None]) -> None:
    app.fake.enqueue(
        Reply(
            content="It costs $5 and $10 today, so $15 in all.\n\n"
            "The area is $x^2$ and the angle $\\alpha$."
        )
    )
    page.goto(app.url)
    expect(page.locator("#models-note")).to_contain_text("models from")
    ask(page, "What does it cost, and what is the area?")
    settled(page)
    shot("1-dollar-amounts", page)


def slow_server() -> Callable[[], None]:
    """Hold ChatUI.after_turn and ChatUI.open for a second each (apps built from now on), as on
    a busy server; returns the undo."""
    from webapp.ui.handlers.chat import ChatUI

    originals = {name: getattr(ChatUI, name) for name in ("after_turn", "open")}

    def held(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)  # Gradio reads the signature to pass gr.Request
        async def slow(self: ChatUI, *args: object, **kwargs: object) -> object:
            await asyncio.sleep(1)
            return await original(self, *args, **kwargs)

        return slow

    for name, original in originals.items():
        setattr(ChatUI, name, held(original))
    return lambda: [setattr(ChatUI, name, original) for name, original in originals.items()]


def flash(page: Page, app: RunningApp, shot: Callable[[str, Page], None]) -> None:
    app.fake.models = ["Qwen/Qwen3-32B", "deepseek-ai/DeepSeek-V3"]
    app.fake.enqueue(
        Reply(content="Streaming shows the first words at once.", delay=0.02),
        Reply(content="A plain model's answer.", delay=0.02),
    )
    page.goto(app.url)
    expect(page.locator("#models-note")).to_contain_text("models from")
    ask(page, "Why does streaming feel faster?")
    expect(page.locator("#chatbot")).to_contain_text("completion", timeout=30_000)
    maybe(page, FLASH, 3000)  # the old page: the typing bubble and the sidebar's spinner
    shot("2-after-an-answer", page)
    settled(page)
    page.locator("#new-chat").click()
    page.locator("#model input").click()
    page.get_by_role("option", name="deepseek-ai/DeepSeek-V3", exact=True).click()
    ask(page, "And without thinking?")
    settled(page)
    # The refresh after the answer has listed it (on the old page it ran after Send was back).
    expect(page.locator("#conversations label")).to_have_count(2)
    wait_until(page, QUIET)
    page.locator("#conversations label", has_text="Why does streaming").click()
    maybe(page, FLASH, 3000)  # the old page: spinners over the settings
    shot("2-opening-a-conversation", page)


def model_note(page: Page, app: RunningApp, shot: Callable[[str, Page], None]) -> None:
    page.goto(app.url)
    note = page.locator("#models-note")
    expect(note).to_contain_text("models from SiliconFlow")
    page.locator("#provider input").click()
    page.get_by_role("option", name="jiekou.ai", exact=True).click()
    expect(note).to_contain_text("models from jiekou.ai")
    ask(page, "Asked on jiekou.ai")
    settled(page)
    page.goto(app.url)
    expect(note).to_contain_text("models from SiliconFlow")
    page.locator("#conversations label", has_text="Asked on jiekou").click()
    expect(page.locator("#provider input")).to_have_value("jiekou.ai")
    wait_until(page, "() => !document.querySelector('#settings .pending')", timeout_ms=3000)
    page.wait_for_timeout(1000)  # a screenshot, not a test: let a stale note stay stale
    shot("3-model-note", page)


def sign_in(page: Page, url: str, name: str) -> None:
    page.goto(url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()


def share_link(page: Page, app: RunningApp, shot: Callable[[str, Page], None]) -> None:
    app.fake.enqueue(Reply(content="Saturn's rings are mostly ice."))
    sign_in(page, app.url, "alice")
    expect(page.locator("#models-note")).to_contain_text("models from")
    shot("4-signed-in-chat", page)
    ask(page, "What are Saturn's rings made of?")
    settled(page)
    page.locator("#share-export").get_by_text("Share and export").click()
    page.locator("#share").click()
    note = page.locator("#share-note")
    expect(note).to_contain_text("/share/?token=")
    link = re.search(r"https?://\S+/share/\?token=[\w-]+", note.inner_text())
    assert link is not None
    page.goto(link.group(0))
    expect(page.locator("#share-title, input")).not_to_have_count(0)
    page.wait_for_timeout(500)  # let the page finish drawing
    shot("4-share-link", page)


def no_header(page: Page, app: RunningApp, shot: Callable[[str, Page], None]) -> None:
    page.goto(app.url)
    expect(page.locator("body")).not_to_be_empty()
    shot("5-no-proxy-header", page)


def latin_only(page: Page, app: RunningApp, shot: Callable[[str, Page], None]) -> None:
    page.goto(app.url)
    expect(page.locator("#models-note")).to_contain_text("models from")
    shot("6-without-cjk-fonts", page)


def sidebar(page: Page, app: RunningApp, shot: Callable[[str, Page], None]) -> None:
    for title in LONG_TITLES:
        app.fake.enqueue(Reply(content="Noted."))
        page.goto(app.url)
        expect(page.locator("#models-note")).to_contain_text("models from")
        ask(page, title)
        settled(page)
    page.goto(app.url)
    expect(page.locator("#conversations label")).to_have_count(len(LONG_TITLES))
    wait_until(page, QUIET)  # the old page: spinners over the settings while they load
    page.wait_for_timeout(500)  # a screenshot, not a test: let their fade-out end
    shot("7-sidebar", page)


def phone_sidebar(page: Page, app: RunningApp, shot: Callable[[str, Page], None]) -> None:
    sidebar(page, app, lambda _name, _page: None)
    side = page.locator("#sidebar")
    if "open" not in (side.get_attribute("class") or ""):
        side.locator(".toggle-button").click()
    expect(side).to_have_class(re.compile(r"\bopen\b"))
    wait_until(page, "el => el.getAnimations({subtree: true}).length === 0", side.element_handle())
    shot("7-sidebar-phone", page)


def latin_only_browser(playwright: Playwright, folder: Path) -> Browser:
    """Chromium on this machine's fonts minus every CJK one (tests/test_browser_first_hour.py)."""
    config = folder / "fonts.conf"
    config.write_text(
        f"""<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <cachedir>{folder / "cache"}</cachedir>
  <selectfont><rejectfont>
    <pattern><patelt name="lang"><string>zh</string></patelt></pattern>
    <pattern><patelt name="lang"><string>ja</string></patelt></pattern>
    <glob>*CJK*</glob><glob>*wqy*</glob><glob>*droid*</glob>
  </rejectfont></selectfont>
</fontconfig>
""",
        encoding="utf-8",
    )
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=LAUNCH_ARGS,
        env={**os.environ, "FONTCONFIG_FILE": str(config)},
    )


def add_account(db: Path, name: str) -> None:
    from webapp import cli

    os.environ["DATABASE_URL"] = f"sqlite:///{db}"
    assert (
        cli.main(["add", name, "--password-stdin"], io.StringIO(), io.StringIO(PASSWORD + "\n"))
        == 0
    )


def main(label: str, only: list[str]) -> None:
    """Write the screenshots labelled `label` (every scene, or the ones named in `only`)."""
    OUT.mkdir(parents=True, exist_ok=True)
    scenes: list[tuple[str, Callable[..., None], dict[str, str], dict[str, int]]] = [
        ("money", money, {}, DESKTOP),
        ("flash", flash, {}, DESKTOP),
        ("model-note", model_note, {"JIEKOU_API_KEY": "test-key-jiekou"}, DESKTOP),
        ("share", share_link, {"AUTH_MODE": "accounts"}, DESKTOP),
        ("header", no_header, {"AUTH_MODE": "header"}, DESKTOP),
        ("fonts", latin_only, {}, DESKTOP),
        ("sidebar", sidebar, {}, DESKTOP),
        ("phone", phone_sidebar, {}, PHONE),
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        for name, scene, env, viewport in scenes:
            if only and name not in only:
                continue
            with tempfile.TemporaryDirectory() as folder, FakeOpenAI() as fake:
                db = Path(folder) / "parley.db"
                if env.get("AUTH_MODE") == "accounts":
                    add_account(db, "alice")
                undo = slow_server() if name == "flash" else (lambda: None)
                try:
                    app = start_app(fake, db, MAX_RETRIES="0", **env)
                finally:
                    undo()
                chosen = (
                    latin_only_browser(playwright, Path(folder)) if name == "fonts" else browser
                )
                context = chosen.new_context(
                    viewport=viewport, is_mobile=viewport is PHONE, has_touch=viewport is PHONE
                )
                try:
                    page = context.new_page()
                    page.set_default_timeout(15_000)

                    def shot(file: str, shown: Page) -> None:
                        shown.screenshot(path=OUT / f"{file}-{label}.png")

                    scene(page, app, shot)
                finally:
                    context.close()
                    if chosen is not browser:
                        chosen.close()
                    app.close()
        browser.close()
    print(f"wrote {len(list(OUT.glob(f'*-{label}.png')))} screenshots in {OUT}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "after", sys.argv[2:])
