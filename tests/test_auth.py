"""Sign-in pieces: password hashes, the throttles, the trusted header, and the address guard."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI
from webapp import cli
from webapp.app.auth import HeaderAuth, LoginThrottle, hash_password, trusted, verify_password

PASSWORD = "a long enough secret"


def test_hashes_are_argon2_salted_and_verify_only_the_right_password() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first.startswith("$argon2id$") and first != second
    assert verify_password(first, PASSWORD) and verify_password(second, PASSWORD)
    assert not verify_password(first, PASSWORD + "!")
    assert not verify_password(None, PASSWORD) and not verify_password("garbage", PASSWORD)
    with pytest.raises(ValueError, match="at least 8 characters"):
        hash_password("short")


def test_throttle_locks_after_the_limit_and_opens_after_the_lockout() -> None:
    now = [1000.0]
    throttle = LoginThrottle(max_failures=3, lockout_s=60, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("user:ana")
    assert throttle.retry_after("user:ana") == 0
    throttle.failed("user:ana")
    assert throttle.retry_after("user:ana") == pytest.approx(60)
    assert throttle.retry_after("user:bo") == 0  # other names are not affected
    now[0] += 59
    assert throttle.retry_after("user:ana") == pytest.approx(1)
    now[0] += 2
    assert throttle.retry_after("user:ana") == 0
    throttle.failed("user:ana")
    throttle.succeeded("user:ana")
    assert throttle.retry_after("user:ana") == 0


def request(host: str, **headers: str) -> SimpleNamespace:
    return SimpleNamespace(client=SimpleNamespace(host=host), headers=headers)


def test_the_header_counts_only_from_a_trusted_proxy() -> None:
    auth = HeaderAuth("X-Forwarded-User", ("127.0.0.1/32", "10.0.0.0/8"))
    assert auth(request("10.1.2.3", **{"X-Forwarded-User": "carol"})) == "carol"
    assert auth(request("192.168.1.5", **{"X-Forwarded-User": "carol"})) is None
    assert auth(request("127.0.0.1")) is None
    assert auth(request("127.0.0.1", **{"X-Forwarded-User": "  "})) is None
    assert auth(request("127.0.0.1", **{"X-Forwarded-User": "x" * 151})) is None
    assert not trusted("not-an-ip", ("0.0.0.0/0",)) and not trusted(None, ("0.0.0.0/0",))


@pytest.fixture
def guarded(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningApp]:
    db = tmp_path / "auth.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    assert (
        cli.main(["add", "ana", "--password-stdin"], io.StringIO(), io.StringIO(PASSWORD + "\n"))
        == 0
    )
    running = start_app(
        fake_openai, db, AUTH_MODE="accounts", LOGIN_MAX_FAILURES="1", LOGIN_LOCKOUT="60"
    )
    try:
        yield running
    finally:
        running.close()


def login(app: RunningApp, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{app.url}login", data={"username": username, "password": password})


def test_one_address_spraying_many_names_is_stopped(guarded: RunningApp) -> None:
    assert login(guarded, "ana", PASSWORD).status_code == 200
    # LOGIN_MAX_FAILURES=1 per name; per address the limit is four times that.
    statuses = [login(guarded, f"user{i}", "wrong").status_code for i in range(4)]
    assert statuses == [400, 400, 400, 400]
    refused = login(guarded, "ana", PASSWORD)
    assert refused.status_code == 429
    assert "Too many failed sign-ins" in refused.text and int(refused.headers["retry-after"]) > 0


def test_a_name_is_locked_even_for_the_right_password(guarded: RunningApp) -> None:
    assert login(guarded, "ana", "wrong").status_code == 400
    assert login(guarded, "ana", PASSWORD).status_code == 400  # locked for 60 s


@pytest.fixture
def open_share(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[RunningApp]:
    running = start_app(
        fake_openai,
        tmp_path / "open.db",
        SHARE_REQUIRES_LOGIN="false",
        METRICS_ALLOWED="10.0.0.0/8",
    )
    try:
        yield running
    finally:
        running.close()


def test_the_share_page_takes_no_uploads_and_metrics_follow_their_allow_list(
    open_share: RunningApp,
) -> None:
    upload = httpx.post(
        f"{open_share.url}share/gradio_api/upload", files={"files": ("x.txt", b"hello")}
    )
    assert upload.status_code == 403 and "read-only" in upload.text
    assert httpx.get(f"{open_share.url}share/gradio_api/file=/etc/hostname").status_code == 403
    assert httpx.get(f"{open_share.url}share/").status_code == 200  # the page itself works
    refused = httpx.get(f"{open_share.url}metrics")
    assert refused.status_code == 403 and "METRICS_ALLOWED" in refused.text
    assert httpx.get(f"{open_share.url}healthz").status_code == 200
