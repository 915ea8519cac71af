"""Browser: sign in, chat, share, and open the share link in a second browser context."""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from bench.soak import base_env  # this checkout on PYTHONPATH
from tests.browser import (  # noqa: F401
    TIMEOUT_MS,
    bot,
    browser_fixture,
    expand,
    page_fixture,
    playwright_fixture,
    send,
)
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply
from webapp import cli

PASSWORD = "correct horse battery"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def team_app(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningApp]:
    db = tmp_path / "team.db"
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    for name in ("alice", "bob"):
        assert (
            cli.main(["add", name, "--password-stdin"], io.StringIO(), io.StringIO(PASSWORD + "\n"))
            == 0
        )
    running = start_app(fake_openai, db, AUTH_MODE="accounts")
    try:
        yield running
    finally:
        running.close()


def sign_in(page: Page, app: RunningApp, name: str, url: str | None = None) -> None:
    page.goto(url or app.url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()


def test_sign_in_chat_share_and_open_the_link_elsewhere(
    team_app: RunningApp, browser: Browser, page: Page
) -> None:
    team_app.fake.enqueue(
        Reply(reasoning="Counting the moons.", content="Jupiter has **95** known moons.")
    )
    sign_in(page, team_app, "alice")
    expect(page.locator("#models-note")).to_contain_text("models from")
    send(page, "How many moons has Jupiter?")
    expect(bot(page, "Jupiter has")).to_contain_text("95 known moons")
    expect(page.locator("#conversations")).to_contain_text("How many moons has Jupiter?")

    page.locator("#share-export").get_by_text("Share and export").click()
    page.locator("#share").click()
    note = page.locator("#share-note")
    expect(note).to_contain_text("/share/?token=")
    link = re.search(r"https?://\S+/share/\?token=[\w-]+", note.inner_text())
    assert link is not None, note.inner_text()

    # A second browser (no cookies): the link needs sign-in (SHARE_REQUIRES_LOGIN default).
    viewer = browser.new_context(viewport={"width": 1100, "height": 800})
    try:
        other = viewer.new_page()
        other.set_default_timeout(TIMEOUT_MS)
        sign_in(other, team_app, "bob", url=link.group(0))
        expect(other.locator("#share-title")).to_contain_text("How many moons has Jupiter?")
        shared = other.locator("#share-chat")
        expect(shared).to_contain_text("Jupiter has 95 known moons.")
        block = other.locator("#share-chat .thought-group").filter(
            has=other.locator(".title", has_text="Thinking")
        )
        expect(block).to_have_count(1)
        expand(other, block)
        expect(block.get_by_text("Counting the moons.")).to_be_visible()
        # Read-only: no message box, no edit or retry on the shared page.
        expect(other.locator("textarea")).to_have_count(0)

        # Revoked: the same link now shows that it is gone.
        page.locator("#revoke-shares").click()
        expect(note).to_contain_text("Revoked 1 link")
        other.reload()
        expect(other.locator("#share-title")).to_contain_text("does not exist or was revoked")
        expect(other.locator("#share-chat")).to_be_hidden()
    finally:
        viewer.close()
    assert len([r for r in team_app.fake.requests if r["path"].endswith("/chat/completions")]) == 1


def test_a_wrong_password_does_not_get_in(team_app: RunningApp, page: Page) -> None:
    page.goto(team_app.url)
    page.get_by_label("username").fill("alice")
    page.get_by_label("password").fill("not the password")
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_text(re.compile("incorrect credentials", re.I))).to_be_visible()
    expect(page.locator("#message")).to_have_count(0)


def test_a_signed_in_viewer_opens_a_share_link_directly(team_app: RunningApp, page: Page) -> None:
    team_app.fake.enqueue(Reply(content="Saturn has rings of ice."))
    sign_in(page, team_app, "ALICE")  # names match whatever their case
    signed_in = page.locator("#signed-in")
    expect(signed_in).to_have_text("Signed in as alice")  # as the account spells it
    expect(page.locator("#sign-out")).to_be_visible()
    # The header line sits at the right end of the tab bar, level with the tabs.
    tab = page.get_by_role("tab", name="Chat").bounding_box()
    line = signed_in.bounding_box()
    assert tab is not None and line is not None
    assert abs((tab["y"] + tab["height"] / 2) - (line["y"] + line["height"] / 2)) <= 2
    assert line["x"] > tab["x"] + tab["width"]
    send(page, "Tell me about Saturn")
    expect(bot(page, "Saturn has")).to_contain_text("rings of ice")
    page.locator("#share-export").get_by_text("Share and export").click()
    page.locator("#share").click()
    note = page.locator("#share-note")
    expect(note).to_contain_text("/share/?token=")
    link = re.search(r"https?://\S+/share/\?token=[\w-]+", note.inner_text())
    assert link is not None, note.inner_text()

    page.goto(link.group(0))  # the same browser: no second sign-in
    expect(page.locator("#share-title")).to_contain_text("Tell me about Saturn")
    expect(page.locator("#share-chat")).to_contain_text("Saturn has rings of ice.")
    expect(page.get_by_label("username")).to_have_count(0)
    expect(signed_in).to_have_text("Signed in as alice")
    clear = page.locator('#share-chat button[aria-label="Clear"]')  # Gradio's, on every Chatbot
    expect(clear).to_have_count(1)
    expect(clear).to_be_hidden()  # a shared conversation is read-only

    page.locator("#sign-out").click()  # signs out of the chat and its share links
    expect(page.get_by_label("username")).to_be_visible()
    page.goto(link.group(0))
    expect(page.get_by_label("username")).to_be_visible()
    expect(page.locator("#share-chat")).to_have_count(0)


def test_the_readme_command_without_a_prompt_makes_an_account_that_signs_in(
    fake_openai: FakeOpenAI, tmp_path: Path, page: Page
) -> None:
    """README's `users add NAME --password-stdin` line, run as written in a shell (this
    checkout's Python for `.venv/bin/python`), makes an account that signs in on the page."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    [line] = [text for text in readme if "users add" in text and "--password-stdin" in text]
    assert line.startswith("printf") and "$CAROL_PASSWORD" in line, line
    db = tmp_path / "team.db"
    done = subprocess.run(
        ["sh", "-c", line.replace(".venv/bin/python", shlex.quote(sys.executable))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=base_env()
        | {"DATABASE_URL": f"sqlite:///{db}", "AUTH_MODE": "accounts", "CAROL_PASSWORD": PASSWORD},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Created carol."
    running = start_app(fake_openai, db, AUTH_MODE="accounts")
    try:
        sign_in(page, running, "carol")
        expect(page.locator("#signed-in")).to_have_text("Signed in as carol")
        expect(page.locator("#message")).to_be_visible()
    finally:
        running.close()
