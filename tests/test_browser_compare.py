"""Compare view in a real headless Chromium: three fake models with different speeds, one of
them refused with 429; the figures shown must match what the fake server was told to do.

The page is a small Blocks of our own around the Compare tab (build_compare_tab +
wire_compare), served by the production stack (FastAPI + uvicorn, webapp.web.create_app).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pytest
from gradio.events import Dependency
from playwright.sync_api import Page, expect

from tests.browser import ARTIFACTS, browser_fixture, page_fixture, playwright_fixture  # noqa: F401
from tests.conftest import free_port
from tests.fake_openai import ErrorReply, FakeOpenAI, Reply
from webapp.app.compare import CompareService
from webapp.app.versions import Versions
from webapp.config import load_settings
from webapp.provider.catalog import ModelCatalog
from webapp.provider.pricing import parse_prices
from webapp.server import Parley, build
from webapp.ui.compare_tab import CompareUI, build_compare_tab, wire_compare
from webapp.ui.handlers.chat import ChatUI
from webapp.ui.session import SessionState
from webapp.web import ServerThread, create_app, start_in_thread

PRICES = [
    {
        "match": "fast/a",
        "provider": "siliconflow",
        "input": 1000,
        "output": 3000,
        "currency": "CNY",
    },
    {"match": "slow/.*", "input": 500, "output": 1500, "currency": "USD"},
]
FIGURES = re.compile(
    r"first token (?P<ttft>[\d.]+) s · (?P<rate>[\d.]+) tok/s · (?P<prompt>\d+) prompt · "
    r"(?P<completion>\d+) completion · (?P<reasoning>\d+) reasoning tokens · cost (?P<cost>\S+)"
)


@dataclass
class CompareApp:
    url: str
    fake: FakeOpenAI
    parley: Parley
    compare: CompareUI
    server: ServerThread


@pytest.fixture
def compare_app(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[CompareApp]:
    fake_openai.models = ["fast/a", "slow/b", "mid/c"]
    port = free_port()
    settings = load_settings(
        {
            "SILICONFLOW_BASE_URL": fake_openai.base_url,
            "SILICONFLOW_API_KEY": "test-key-sf",
            "JIEKOU_BASE_URL": fake_openai.base_url,
            "JIEKOU_API_KEY": "test-key-jiekou",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'parley.db'}",
            "PORT": str(port),
            "MAX_RETRIES": "0",  # the 429 is shown at once, not retried
        },
        dotenv_path=None,
    )
    parley = build(settings)
    service = parley.service
    catalog = ModelCatalog({p.name: p for p in settings.providers}, service.clients)
    chat = ChatUI(service, catalog, Versions(service._session_factory), parley.identity)
    assert parley.downloads is not None  # served by create_app's /download route
    compare = CompareUI(chat.page, CompareService(service, parse_prices(PRICES)), parley.downloads)
    with gr.Blocks(title="Parley Compare") as demo:
        state = gr.State(SessionState())
        with gr.Sidebar(open=True):
            search = gr.Textbox(visible=False)
            conversations = gr.Radio([], label="Conversations", elem_id="conversations")
        with gr.Tabs() as tabs:
            with gr.Tab("Chat", id="chat"):
                gr.Markdown("The chat would be here.")
            with gr.Tab("Compare", id="compare"):
                tab = build_compare_tab(compare, state=state)

        def sidebar_refresh(event: Dependency) -> None:
            event.then(chat.sidebar, [state, search], [conversations], api_visibility="private")

        wire_compare(
            compare,
            tab,
            demo=demo,
            sidebar_refresh=sidebar_refresh,
            conversations=conversations,
            tabs=tabs,
        )
        demo.load(chat.sidebar, [state, search], [conversations], api_visibility="private")
    demo.queue(default_concurrency_limit=None)
    server = start_in_thread(create_app(dataclasses.replace(parley, demo=demo)), "127.0.0.1", port)
    try:
        yield CompareApp(f"http://127.0.0.1:{port}/", fake_openai, parley, compare, server)
    finally:
        server.stop()
        parley.engine.dispose()


def open_compare(page: Page, app: CompareApp) -> None:
    page.goto(app.url)
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare-model-0 input")).to_have_value("Qwen/Qwen3-32B")  # loaded


def pick(page: Page, column: int, model: str, provider_label: str | None = None) -> None:
    """Choose a column's provider (from the list) and type its model id."""
    if provider_label is not None:
        page.locator(f"#compare-provider-{column} input").click()
        page.get_by_role("option", name=provider_label).click()
        # The provider's default model arrives first; type over it only then.
        expect(page.locator(f"#compare-model-{column} input")).to_have_value(
            "deepseek/deepseek-v3.2"
        )
    box = page.locator(f"#compare-model-{column} input")
    box.click()
    box.fill(model)
    box.press("Enter")
    box.blur()
    expect(box).to_have_value(model)


def figures(page: Page, column: int) -> dict[str, str]:
    text = page.locator(f"#compare-stats-{column}").inner_text()
    found = FIGURES.search(text)
    assert found, f"column {column} shows {text!r}"
    return found.groupdict()


def chat_bodies(app: CompareApp, model: str) -> list[dict]:
    return [
        r["json"]
        for r in app.fake.requests
        if r["path"].endswith("/chat/completions") and r["json"]["model"] == model
    ]


def test_three_models_stream_side_by_side_with_true_figures_and_one_failure(
    compare_app: CompareApp, page: Page
) -> None:
    fake = compare_app.fake
    fast = Reply(
        content="Alpha says the answer is plainly forty two today",
        prompt_tokens=21,
        reasoning="Weighing both sides",
        chunk_words=1,
        first_delay=0.1,
        delay=0.06,
    )
    slow = Reply(
        content="Beta replies after a long pause",
        prompt_tokens=17,
        chunk_words=1,
        first_delay=0.4,
        delay=0.04,
    )
    fake.enqueue(fast, model="fast/a")
    fake.enqueue(slow, model="slow/b")
    fake.enqueue(ErrorReply(429, '{"message": "TPM limit reached"}', delay=0.2), model="mid/c")

    open_compare(page, compare_app)
    page.locator("#compare-count label", has_text="3").click()
    expect(page.locator("#compare-picker-2")).to_be_visible()
    expect(page.locator("#compare-col-2")).to_be_visible()
    pick(page, 0, "fast/a")
    pick(page, 1, "slow/b", "jiekou.ai")
    pick(page, 2, "mid/c")
    page.locator("#compare-blind input").check()
    page.locator("#compare-prompt textarea").fill("What is the answer?")
    page.locator("#compare-send").click()

    # While streaming, blind mode shows letters, never the model names.
    for column, letter in enumerate("ABC"):
        expect(page.locator(f"#compare-header-{column}")).to_have_text(f"Model {letter}")
    expect(page.locator("#compare-stats-0")).to_contain_text("cost ¥")
    expect(page.locator("#compare-stats-1")).to_contain_text("cost $")
    expect(page.locator("#compare-stats-2")).to_contain_text("failed")
    expect(page.locator("#compare-best-1")).to_be_visible()  # the final render from storage

    # The failing column shows its error; the others' answers are complete.
    expect(page.locator("#compare-col-2")).to_contain_text("rate-limiting this key (429)")
    expect(page.locator("#compare-col-2")).to_contain_text("TPM limit reached")
    # Blind mode: the error names neither the provider nor the model before the vote.
    expect(page.locator("#compare-col-2")).to_contain_text("The provider is rate-limiting")
    expect(page.locator("#compare-col-2")).not_to_contain_text("SiliconFlow")
    expect(page.locator("#compare-col-0")).to_contain_text(fast.content)
    expect(page.locator("#compare-col-0 .thought-group")).to_have_count(1)
    expect(page.locator("#compare-col-1")).to_contain_text(slow.content)
    expect(page.locator("#compare-best-2")).to_be_hidden()  # no vote for a failed answer
    for column in range(3):
        expect(page.locator(f"#compare-header-{column}")).not_to_contain_text("/")

    # Figures: what the fake was told. The first token is the second chunk (after the role
    # chunk): first_delay + one delay. Every word is one chunk, counted as one token.
    a, b = figures(page, 0), figures(page, 1)
    assert (int(a["prompt"]), int(a["completion"]), int(a["reasoning"])) == (21, 9 + 3, 3)
    assert (int(b["prompt"]), int(b["completion"]), int(b["reasoning"])) == (17, 6, 0)
    assert 0.16 - 0.01 <= float(a["ttft"]) <= 0.16 + 0.25
    assert 0.44 - 0.01 <= float(b["ttft"]) <= 0.44 + 0.25
    # Tokens/s: one chunk per `delay` at best; a busy machine only makes it slower.
    assert 0.35 / 0.06 <= float(a["rate"]) <= 1.15 / 0.06
    assert 0.35 / 0.04 <= float(b["rate"]) <= 1.15 / 0.04
    assert a["cost"] == "¥0.0570"  # (21 × 1000 + 12 × 3000) / 1M
    assert b["cost"] == "$0.0175"  # (17 × 500 + 6 × 1500) / 1M
    expect(page.locator("#compare-stats-2")).to_have_text("failed · cost unknown")
    arrivals = sorted(
        r["received_at"] for r in fake.requests if r["path"].endswith("/chat/completions")
    )
    assert len(arrivals) == 3 and arrivals[-1] - arrivals[0] < 0.2  # sent at once

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)

    # Voting reveals the names; the vote is stored.
    page.locator("#compare-best-1").click()
    expect(page.locator("#compare-header-1")).to_have_text("slow/b · jiekou.ai · ★ best")
    expect(page.locator("#compare-header-0")).to_have_text("fast/a · SiliconFlow")
    expect(page.locator("#compare-best-1")).to_have_text("★ Best")

    # Continue with one model: only slow/b answers, with its own history.
    fake.enqueue(Reply(content="Only Beta now", prompt_tokens=40), model="slow/b")
    page.locator("#compare-continue label", has_text="slow/b").click()
    page.locator("#compare-prompt textarea").fill("And next?")
    page.locator("#compare-send").click()
    expect(page.locator("#compare-col-1")).to_contain_text("Only Beta now")
    expect(page.locator("#compare-stats-1")).to_contain_text("40 prompt")
    expect(page.locator("#compare-col-0")).not_to_contain_text("And next?")
    expect(page.locator("#compare-continue input:checked")).to_have_count(1)
    expect(page.locator("#compare-continue label")).to_have_count(1)  # locked to slow/b
    assert chat_bodies(compare_app, "slow/b")[-1]["messages"] == [
        {"role": "user", "content": "What is the answer?"},
        {"role": "assistant", "content": slow.content},
        {"role": "user", "content": "And next?"},
    ]
    assert len(chat_bodies(compare_app, "fast/a")) == 1

    page.locator("#compare-export").click()
    expect(page.locator("#compare-download")).to_contain_text(".md")
    exported = next(compare_app.compare.downloads.root.rglob("*.md")).read_text(encoding="utf-8")
    assert "### Column B · slow/b (jiekou) — ★ best" in exported
    assert "rate-limiting" in exported and "Only Beta now" in exported

    # Saved like a conversation: listed in the sidebar, and opening it shows the comparison.
    entry = page.locator("#conversations label", has_text="What is the answer?")
    expect(entry).to_have_count(1)
    page.reload()
    expect(page.get_by_role("tab", name="Chat", selected=True)).to_be_visible()
    page.locator("#conversations label", has_text="What is the answer?").click()
    expect(page.get_by_role("tab", name="Compare", selected=True)).to_be_visible()
    expect(page.locator("#compare-col-1")).to_contain_text("Only Beta now")
    expect(page.locator("#compare-col-2")).to_contain_text("TPM limit reached")
    expect(page.locator("#compare-header-1")).to_contain_text("★ best")
    expect(page.locator("#compare-stats-0")).to_contain_text("cost ¥0.0570")


def test_stop_keeps_partial_answers_in_every_column(compare_app: CompareApp, page: Page) -> None:
    fake = compare_app.fake
    fake.enqueue(
        Reply(content="Partial from A that never ends", chunk_chars=5, stall_after=3),
        model="fast/a",
    )
    fake.enqueue(
        Reply(content="Partial from B that never ends", chunk_chars=5, stall_after=3),
        model="slow/b",
    )
    open_compare(page, compare_app)
    pick(page, 0, "fast/a")
    pick(page, 1, "slow/b")
    page.locator("#compare-prompt textarea").fill("Tell me a long story")
    page.locator("#compare-send").click()
    expect(page.locator("#compare-col-0")).to_contain_text("Partial fr")
    expect(page.locator("#compare-col-1")).to_contain_text("Partial fr")
    page.locator("#compare-stop").click()
    assert fake.wait_for_disconnect(timeout=5, count=2), "the upstream streams were not closed"
    for column in (0, 1):
        expect(page.locator(f"#compare-col-{column}")).to_contain_text("Stopped by you")
        expect(page.locator(f"#compare-stats-{column}")).to_contain_text("stopped")
        expect(page.locator(f"#compare-col-{column}")).not_to_contain_text("never ends")


def test_the_parameter_table_s_controls_reach_every_column_s_request(
    compare_app: CompareApp, page: Page
) -> None:
    """Compare's parameters are the Chat tab's table (everyday ones, then an Advanced
    accordion), not boxes of its own: a temperature and a seed set there go to both models."""
    fake = compare_app.fake
    fake.enqueue(Reply(content="Alpha"), model="fast/a")
    fake.enqueue(Reply(content="Beta"), model="slow/b")
    open_compare(page, compare_app)
    pick(page, 0, "fast/a")
    pick(page, 1, "slow/b")
    page.locator("#compare-settings").get_by_text("System prompt and parameters").click()
    page.locator("#compare-param-temperature input").fill("0.3")
    page.locator("#compare-advanced").get_by_text("Advanced parameters").click()
    page.locator("#compare-param-seed input").fill("7")
    expect(page.locator("#compare-param-n")).to_have_count(0)  # one answer per column
    page.locator("#compare-prompt textarea").fill("Same settings?")
    page.locator("#compare-send").click()
    expect(page.locator("#compare-col-1")).to_contain_text("Beta")
    expect(page.locator("#compare-col-0")).to_contain_text("Alpha")
    sent = {
        r["json"]["model"]: r["json"]
        for r in fake.requests
        if r["path"].endswith("/chat/completions")
    }
    assert set(sent) == {"fast/a", "slow/b"}
    for body in sent.values():
        assert (body["temperature"], body["seed"]) == (0.3, 7), body
