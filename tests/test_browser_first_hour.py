"""What a new user tripped on in the first hour, each shown fixed in a real Chromium.

Dollar amounts stay text while formulas render; nothing flashes after an answer or while a
conversation opens; the model note follows the provider of the conversation opened; the sidebar
lists one entry per row. Fixtures and helpers come from tests/conftest.py and tests/browser.py;
the app runs on SQLite only (storage is covered elsewhere).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser import bot, open_app, send
from tests.conftest import RunningApp
from tests.fake_openai import Reply


@pytest.fixture
def app(sqlite_app: RunningApp) -> RunningApp:
    """Parley on SQLite only (overrides conftest's app, which also runs PostgreSQL)."""
    return sqlite_app


# ---- 1. dollar amounts are not math ------------------------------------------------------------

def test_dollar_amounts_stay_text_and_formulas_still_render(app: RunningApp, page: Page) -> None:
    app.fake.enqueue(Reply(content="It costs $5 and $10 today.\n\n"
                                   "Area $x^2$, angle $\\alpha$.\n\n$$\\frac{1}{2}$$"))
    open_app(page, app)
    send(page, "Prices and formulas?")
    answer = bot(page, "It costs")
    expect(page.locator("#chatbot")).to_contain_text("completion")  # the final render
    money = answer.locator("p", has_text="It costs")
    expect(money).to_have_text("It costs $5 and $10 today.")
    expect(money.locator(".katex, em")).to_have_count(0)
    formulas = answer.locator("p", has_text="Area").locator(".katex")
    expect(formulas).to_have_count(2)
    expect(formulas.first.locator("annotation")).to_have_text("x^2")
    expect(formulas.last.locator("annotation")).to_have_text("\\alpha")
    expect(answer.locator(".katex-display annotation")).to_have_text("\\frac{1}{2}")
