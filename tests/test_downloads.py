"""Export downloads (Hardening item 5): the link works only for the user who exported, and the
file on disk is private (0600 in 0700 folders), on the production stack in accounts mode.

Alice and bob sign in over real HTTP (POST /login, cookies), alice clicks "All my data
(JSON)" through Gradio's queue protocol as her page does, and both fetch the link it shows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from tests.conftest import RunningApp
from tests.fake_openai import FakeOpenAI
from tests.test_team import PASSWORDS, Team, chat, login

LIMIT_S = 60


@pytest.fixture
def team(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Team]:
    """alice and bob have accounts (made by the CLI) on one SQLite file."""
    db = tmp_path / "team.db"
    monkeypatch.chdir(tmp_path)  # cli.main reads ./.env: run it where there is none
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("AUTH_MODE", "accounts")
    made = Team(db, fake_openai)
    made.add("alice")
    made.add("bob")
    try:
        yield made
    finally:
        for running in made.apps:
            running.close()


@contextlib.contextmanager
def signed_in(app: RunningApp, name: str) -> Iterator[httpx.Client]:
    """An HTTP client holding `name`'s sign-in cookie, as a browser would after the form."""
    with httpx.Client(base_url=app.url, timeout=LIMIT_S) as http:
        response = http.post("login", data={"username": name, "password": PASSWORDS[name]})
        assert response.status_code == 200, response.text
        yield http


def click(http: httpx.Client, elem_id: str) -> Any:
    """Click a page button through Gradio's queue protocol; return the event's first output."""
    config = http.get("config").json()
    target = next(
        c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id
    )
    dependency = next(
        d for d in config["dependencies"] if [target, "click"] in [list(t) for t in d["targets"]]
    )
    props = {c["id"]: c.get("props", {}) for c in config["components"]}
    session_hash = secrets.token_hex(8)
    body = {
        "data": [props[i].get("value") for i in dependency["inputs"]],
        "fn_index": dependency["id"],
        "trigger_id": target,
        "session_hash": session_hash,
        "event_data": None,
    }
    http.post("gradio_api/queue/join", json=body).raise_for_status()
    with http.stream(
        "GET", "gradio_api/queue/data", params={"session_hash": session_hash}
    ) as stream:
        for line in stream.iter_lines():
            if (
                line.startswith("data:")
                and (message := json.loads(line[5:])).get("msg") == "process_completed"
            ):
                assert message.get("success"), message
                return message["output"]["data"][0]
    raise AssertionError("the event stream ended without a result")


def link_of(app: RunningApp, output: Any) -> str:
    """The URL the page's download component offers (a link, or a file's URL)."""
    value = output.get("value") if isinstance(output, dict) else output
    if isinstance(value, dict):
        return str(value["url"])
    found = re.search(r'href="([^"]+)"', str(value))
    assert found, f"no download link in {output!r}"
    return urljoin(app.url, found.group(1))


def copies_on_disk(name: str, since: float) -> list[Path]:
    """Every file called `name` written since `since` where Parley or Gradio keep files."""
    temp = Path(tempfile.gettempdir())
    gradio_cache = Path(os.environ.get("GRADIO_TEMP_DIR") or temp / "gradio")
    candidates = [*temp.glob(f"parley-*/*/{name}"), *gradio_cache.glob(f"*/{name}")]
    return [path for path in candidates if path.stat().st_mtime >= since - 1]


def test_an_export_link_works_only_for_the_user_who_exported(team: Team) -> None:
    app = team.start()
    secret = f"alice's plan {secrets.token_hex(4)}"
    chat(login(app, "alice"), secret)
    started = time.time()
    with signed_in(app, "alice") as alice, signed_in(app, "bob") as bob:
        url = link_of(app, click(alice, "export-all"))
        mine = alice.get(url)
        assert mine.status_code == 200 and secret in mine.text
        theirs = bob.get(url)
        assert theirs.status_code == 404 and secret not in theirs.text, (
            "bob downloaded alice's export with its link"
        )
        assert "export again" in theirs.text.lower()
        assert "attachment" in mine.headers["content-disposition"]
    anonymous = httpx.get(url, timeout=LIMIT_S)
    assert anonymous.status_code in (401, 403) and secret not in anonymous.text

    files = copies_on_disk("parley-export.json", started)
    assert files, "the export is not on disk where Parley keeps downloads"
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} is readable by others"
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, path.parent
        assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700, path.parent.parent


def test_an_expired_or_unknown_download_is_not_found(team: Team) -> None:
    app = team.start()
    assert app.parley.downloads is not None
    downloads = app.parley.downloads
    with signed_in(app, "alice") as alice:
        for token in ("x" * 32, "../../etc/passwd", "%2e%2e%2fetc"):
            assert alice.get(f"download/{token}").status_code == 404
        url = link_of(app, click(alice, "export-all"))
        token = url.rsplit("/", 1)[1]
        (folder,) = downloads.root.glob(f"*-{token}")
        old = time.time() - 3601
        os.utime(folder, (old, old))
        assert alice.get(url).status_code == 404, "a download older than an hour was served"
