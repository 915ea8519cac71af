"""HTTP hardening over real HTTP against the production stack (tests/conftest.py start_app):
the Host check (DNS rebinding), the Content-Security-Policy and other headers, sign-out by
same-origin POST only, no cross-site writes or reads, and the "load image" endpoint."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from bench import gradio_queue as gq
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI
from tests.image_server import ImageServer, image_server, picture
from tests.test_image_fetch import loopback_too, resolve
from webapp import cli
from webapp.edge.image_fetch import ImageFetcher
from webapp.edge.web_security import inline_script_hashes, policy

PASSWORD = "correct horse battery"
EVIL = "http://evil.example"
REQUIRED = [
    "default-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "frame-ancestors 'none'",
    "form-action 'self'",
    "object-src 'none'",
    "base-uri 'self'",
]


@pytest.fixture
def accounts_app(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningApp]:
    """AUTH_MODE=accounts with alice; "load image" reaches the loopback image server too."""
    db = tmp_path / "team.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    assert (
        cli.main(["add", "alice", "--password-stdin"], io.StringIO(), io.StringIO(PASSWORD + "\n"))
        == 0
    )
    fetcher = ImageFetcher(resolve=resolve, address_allowed=loopback_too)
    running = start_app(
        fake_openai,
        db,
        image_fetcher=fetcher,
        AUTH_MODE="accounts",
        ALLOWED_HOSTS="chat.example.com,localhost,127.0.0.1",
    )
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def images() -> Iterator[ImageServer]:
    with image_server() as server:
        yield server


def signed_in(app: RunningApp) -> httpx.Client:
    client = httpx.Client(base_url=app.url, timeout=10)
    client.post("login", data={"username": "alice", "password": PASSWORD}).raise_for_status()
    return client


def origin(app: RunningApp) -> str:
    return app.url.rstrip("/")


def chat_requests(app: RunningApp) -> int:
    return sum(r["path"].endswith("/chat/completions") for r in app.fake.requests)


# ---- item 3: the Host header -----------------------------------------------------------------


async def test_a_forged_host_cannot_drive_chat(sqlite_app: RunningApp) -> None:
    """DNS rebinding: a page at evil.example, its name now pointing at 127.0.0.1, sends
    `Host: evil.example`. Nothing is served to it, and /chat does not run."""
    async with httpx.AsyncClient(timeout=30) as http:
        config = (await http.get(sqlite_app.url + "config")).raise_for_status().json()
        event = gq.find_event(config, "chat")
        body = {
            "data": ["secret question", "", "", "{}"],
            "event_data": None,
            "fn_index": event.fn_index,
            "trigger_id": event.trigger_id,
            "session_hash": "rebound",
        }
        for host in ("evil.example", f"evil.example:{sqlite_app.settings.port}"):
            joined = await http.post(
                sqlite_app.url + "gradio_api/queue/join", json=body, headers={"Host": host}
            )
            assert (joined.status_code, joined.text) == (400, "Invalid host header")
            page = await http.get(sqlite_app.url, headers={"Host": host})
            assert page.status_code == 400 and "gradio_config" not in page.text
        assert chat_requests(sqlite_app) == 0
        # The same request with the real Host runs.
        outputs = await gq.call(
            http, sqlite_app.url, gq.new_session(), event, ["hello", "", "", "{}"]
        )
        assert outputs is not None and outputs[0] == "Echo: hello"


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost:{port}", 200),
        ("127.0.0.1:{port}", 200),
        ("[::1]:{port}", 200),
        ("localhost", 200),
        ("LOCALHOST:{port}", 200),
        ("evil.example", 400),
        ("localhost.evil.example", 400),
        ("127.0.0.1.nip.io:{port}", 400),
        ("[::2]:{port}", 400),
        ("", 400),
    ],
)
def test_on_loopback_only_loopback_names_are_served(
    sqlite_app: RunningApp, host: str, status: int
) -> None:
    headers = {"Host": host.format(port=sqlite_app.settings.port)}
    assert httpx.get(sqlite_app.url + "config", headers=headers).status_code == status


def test_the_health_check_answers_any_host_and_metrics_do_not(sqlite_app: RunningApp) -> None:
    forged = {"Host": "10.1.2.3:7860"}  # how a load balancer's probe names the instance
    assert httpx.get(sqlite_app.url + "healthz", headers=forged).status_code == 200
    assert httpx.get(sqlite_app.url + "metrics", headers=forged).status_code == 400
    assert httpx.get(sqlite_app.url + "metrics").status_code == 200


def test_allowed_hosts_lists_the_names_served(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    app = start_app(fake_openai, tmp_path / "p.db", ALLOWED_HOSTS="chat.example.com,*.corp.test")
    try:
        for host, status in (
            ("chat.example.com", 200),
            ("chat.example.com:443", 200),
            ("wiki.corp.test", 200),
            ("corp.test.evil.example", 400),
            ("localhost", 400),
            (f"127.0.0.1:{app.settings.port}", 400),
        ):
            response = httpx.get(app.url + "config", headers={"Host": host})
            assert response.status_code == status, host
    finally:
        app.close()


# ---- item 2: the policy and the other headers ------------------------------------------------


def check_policy(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    assert csp == policy(inline_script_hashes(response.content)), csp
    for directive in REQUIRED:
        assert directive in csp.split("; "), directive
    script_src = next(d for d in csp.split("; ") if d.startswith("script-src "))
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    assert len(re.findall("'sha256-", script_src)) >= 4  # Gradio's own inline scripts
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"


def test_the_chat_page_and_the_share_page_carry_the_policy(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    app = start_app(fake_openai, tmp_path / "p.db", SHARE_REQUIRES_LOGIN="false")
    try:
        for path in ("", "share/?token=whatever"):
            for encoding in ("identity", "br", "gzip"):  # Gradio compresses its pages
                page = httpx.get(app.url + path, headers={"Accept-Encoding": encoding})
                assert page.status_code == 200 and "gradio_config" in page.text
                check_policy(page)
        config = httpx.get(app.url + "config")  # not a page: no policy, the other headers
        assert "content-security-policy" not in config.headers
        assert config.headers["x-content-type-options"] == "nosniff"
    finally:
        app.close()


def test_the_sign_in_page_carries_the_policy(accounts_app: RunningApp) -> None:
    page = httpx.get(accounts_app.url)
    assert '"auth_required":true' in page.text.replace(" ", "")
    check_policy(page)


# ---- item 2: sign-out, and writes from other sites -------------------------------------------


def test_sign_out_takes_a_same_origin_post_and_never_a_get(accounts_app: RunningApp) -> None:
    client = signed_in(accounts_app)
    assert client.get("config").status_code == 200
    assert client.get("logout").status_code == 405  # what <img src="/logout"> would send
    assert client.get("logout").headers["allow"] == "POST"
    for headers in (
        {},
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        assert client.post("logout", headers=headers).status_code == 403, headers
    assert client.get("config").status_code == 200, "still signed in"

    done = client.post("logout", headers={"Origin": origin(accounts_app)})
    assert done.status_code == 302
    assert client.get("config").status_code == 401, "signed out"
    client = signed_in(accounts_app)
    assert client.post("logout", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 302
    assert client.get("config").status_code == 401


def test_other_sites_can_neither_write_nor_read(accounts_app: RunningApp) -> None:
    client = signed_in(accounts_app)
    body = {"data": ["hi", "", "", "{}"], "fn_index": 0, "session_hash": "csrf"}
    for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}):
        assert client.post("gradio_api/queue/join", json=body, headers=headers).status_code == 403
        assert (
            client.post(
                "login", data={"username": "alice", "password": PASSWORD}, headers=headers
            ).status_code
            == 403
        )
    # Gradio answers any origin, with credentials, when the Host is not localhost: not here.
    named = {"Host": "chat.example.com", "Origin": EVIL}
    token = client.get("gradio_api/token", headers=named)
    assert token.status_code == 200 and "access-control-allow-origin" not in token.headers
    preflight = client.options(
        "gradio_api/queue/join",
        headers={
            **named,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    # Gradio's deep-link GET writes the session's values to disk; Parley has no deep links.
    assert client.get("gradio_api/deep_link", params={"session_hash": "x"}).status_code == 404
    assert chat_requests(accounts_app) == 0


# ---- item 2: the "load image" endpoint -------------------------------------------------------


def test_load_image_serves_a_checked_image_to_signed_in_users_only(
    accounts_app: RunningApp, images: ImageServer
) -> None:
    url = "/parley/image?url=" + quote(
        images.url("/chart.png?q=SECRET", host="images.test"), safe=""
    )
    assert httpx.get(accounts_app.url.rstrip("/") + url).status_code == 401
    assert images.requests == []
    client = signed_in(accounts_app)
    assert client.get(url, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert images.requests == []

    image = client.get(url, headers={"Sec-Fetch-Site": "same-origin"})
    assert image.status_code == 200 and image.content == picture()
    assert image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert image.headers["cache-control"].startswith("private")
    assert [r["path"] for r in images.requests] == ["/chart.png"]

    not_image = "/parley/image?url=" + quote(images.url("/page.png", host="images.test"), safe="")
    refused = client.get(not_image)
    assert refused.status_code == 415 and "not a PNG" in refused.text


def test_load_image_refuses_this_machine_with_the_production_rule(
    sqlite_app: RunningApp, images: ImageServer
) -> None:
    for target in (
        images.url("/chart.png"),
        images.url("/chart.png", host="localhost"),
        sqlite_app.url + "config",
    ):
        response = httpx.get(sqlite_app.url + "parley/image", params={"url": target})
        assert response.status_code == 403 and "not on the public internet" in response.text
    assert images.requests == []
