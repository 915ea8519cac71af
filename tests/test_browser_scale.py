"""The reference deployment's nginx (deploy/nginx.conf, Debian's nginx) in front of two real
Parley processes sharing a database and a redis-server: a browser stays on its replica for a
whole turn (Gradio's queue lives in one process), and the APIs spread over both."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser import browser_fixture, page_fixture, playwright_fixture  # noqa: F401
from tests.fake_openai import FakeOpenAI, Reply
from tests.nginx_server import nginx
from tests.processes import parley_process
from tests.redis_server import RedisServer


@pytest.fixture
def nginx_in_front(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[tuple[str, Path, dict]]:
    """Yields (nginx's URL, its access log, {replica port: its base URL})."""
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    shared = {"REDIS_URL": redis.url, "RUN_LEASE": "5", "ALLOWED_HOSTS": "127.0.0.1"}
    database = f"sqlite:///{tmp_path / 'parley.db'}"
    prefix = tmp_path / "nginx"
    log = prefix / "access.log"
    # A log line naming the replica each request went to.
    log_lines = f"log_format replica '$upstream_addr $uri'; access_log {log} replica;"
    try:
        with (
            parley_process(database, fake_openai, tmp_path, tmp_path / "a.log", **shared) as (
                _,
                a,
            ),
            parley_process(database, fake_openai, tmp_path, tmp_path / "b.log", **shared) as (
                _,
                b,
            ),
        ):
            replicas = {int(url.rsplit(":", 1)[1]): url for url in (a, b)}
            with nginx(prefix, list(replicas), log_lines) as (url, _):
                yield url, log, replicas
    finally:
        redis.stop()


def replicas_in_log(log: Path, path: re.Pattern[str]) -> Counter[str]:
    """How many requests whose path matches went to each replica (by upstream address)."""
    seen: Counter[str] = Counter()
    for line in log.read_text(encoding="utf-8").splitlines():
        upstream, _, uri = line.partition(" ")
        if path.search(uri):
            seen[upstream] += 1
    return seen


def test_a_browser_stays_on_its_replica_and_the_apis_spread(
    nginx_in_front: tuple[str, Path, dict], fake_openai: FakeOpenAI, page: Page
) -> None:
    url, log, replicas = nginx_in_front
    fake_openai.enqueue(Reply(content="Hello through nginx, word by word", chunk_words=1))
    page.goto(f"{url}/")
    expect(page.locator("#models-note")).to_contain_text("models from")
    box = page.locator("#message textarea")
    box.fill("hi")
    box.press("Enter")
    expect(
        page.locator('#chatbot [data-testid="bot"]').filter(has_text="Hello through nginx")
    ).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "parley_replica")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    # Every request of the page, the queue's join and its event stream included, went to
    # one replica.
    pages = replicas_in_log(log, re.compile(r"^/(gradio_api|config|parley|assets|$)"))
    assert len(pages) == 1 and sum(pages.values()) > 5, pages

    # The APIs and health checks go to both.
    for _ in range(12):
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 200
        assert httpx.get(f"{url}/healthz", timeout=10).json()["redis"] == "ok"
    spread = replicas_in_log(log, re.compile(r"^/(v1/models|healthz)$"))
    assert set(spread) == {f"127.0.0.1:{port}" for port in replicas}, spread


def test_a_page_on_another_replica_follows_an_answer_live(
    nginx_in_front: tuple[str, Path, dict], fake_openai: FakeOpenAI, page: Page
) -> None:
    """A second browser (or a reload that lands elsewhere) opens the conversation on the
    replica that is not streaming it: the page shows the question and follows the answer."""
    from gradio_client import Client

    _, _, replicas = nginx_in_front
    owner, other = list(replicas.values())
    words = " ".join(f"w{n}" for n in range(80))  # 80 words at 20 a second: 4 s
    fake_openai.default = Reply(content=words, chunk_words=1, delay=0.05)
    job = Client(f"{owner}/", verbose=False).submit(
        "a slow question", "", "", "{}", api_name="/chat"
    )
    conversation = ""
    for text, conversation_id in job:
        conversation = conversation_id
        if len(text.split()) >= 3:
            break
    page.goto(f"{other}/?c={conversation}")
    expect(page.locator('#chatbot [data-testid="user"]')).to_contain_text("a slow question")
    live = page.locator("#chatbot .parley-live")
    expect(live).to_contain_text("w10")  # streaming here, from the other process
    expect(page.locator('#chatbot [data-testid="bot"]').filter(has_text="w79")).to_be_visible(
        timeout=20_000
    )  # then the stored answer, whole
    assert job.result(timeout=20)[0] == words
