"""Browser: Settings → API keys makes a key the OpenAI SDK can use, lists it, revokes it."""

from __future__ import annotations

import re

import openai
import pytest
from playwright.sync_api import Page, expect

from tests.browser import browser_fixture, open_app, page_fixture, playwright_fixture  # noqa: F401
from tests.conftest import RunningApp


def test_a_key_made_in_settings_works_until_it_is_revoked(
    sqlite_app: RunningApp, page: Page
) -> None:
    app = sqlite_app
    open_app(page, app)
    page.locator("#api-keys").get_by_text("API keys").first.click()
    page.locator("#api-key-name input, #api-key-name textarea").fill("my script")
    page.locator("#api-key-create").click()
    note = page.locator("#api-key-note")
    expect(note).to_contain_text("pk-")
    expect(note).to_contain_text("/v1")
    key = re.search(r"pk-[\w-]{20,}", note.inner_text())
    assert key is not None
    api = openai.OpenAI(base_url=f"{app.url}v1", api_key=key.group(0), max_retries=0)
    assert (
        api.chat.completions.create(
            model="Qwen/Qwen3-8B", messages=[{"role": "user", "content": "hi"}]
        )
        .choices[0]
        .message.content
        == "Echo: hi"
    )
    # Listed with its name and the start of the key (never the whole key), then revoked.
    keys = page.locator("#api-key-list")
    keys.locator("input").click()
    option = page.get_by_role("option", name=re.compile(r"^my script · pk-"))
    expect(option).to_have_count(1)
    assert key.group(0) not in option.inner_text()
    option.click()
    page.locator("#api-key-revoke").click()
    expect(note).to_contain_text("Key revoked")
    with pytest.raises(openai.AuthenticationError):
        api.models.list()
