"""Shared fixtures: a fake OpenAI-compatible server and a running Parley on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gradio_client import Client

from tests.fake_openai import FakeOpenAI
from webapp.config import Settings, load_settings
from webapp.server import Parley, build, launch_kwargs

# Browser fixtures (playwright, browser, page) for test_browser*.py: one Chromium per session.
pytest_plugins = ["tests.browser"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@dataclass
class RunningApp:
    """A Parley server on loopback, its settings, and the fake upstream behind it."""

    parley: Parley
    settings: Settings
    url: str
    fake: FakeOpenAI

    def client(self) -> Client:
        return Client(self.url, verbose=False)


def start_app(fake: FakeOpenAI, db_path: Path, **env: str) -> RunningApp:
    values = {
        "SILICONFLOW_BASE_URL": fake.base_url,
        "SILICONFLOW_API_KEY": "test-key-siliconflow",
        "JIEKOU_BASE_URL": fake.base_url,
        "DATABASE_URL": f"sqlite:///{db_path}",
        "PORT": str(free_port()),
        "MAX_RETRIES": "2",
        **env,
    }
    settings = load_settings(values, dotenv_path=None)
    parley = build(settings)
    kwargs = launch_kwargs(settings) | {"prevent_thread_lock": True, "quiet": True}
    parley.demo.launch(**kwargs)
    return RunningApp(parley, settings, f"http://127.0.0.1:{settings.port}/", fake)


@pytest.fixture
def app(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[RunningApp]:
    running = start_app(fake_openai, tmp_path / "parley.db")
    try:
        yield running
    finally:
        running.parley.demo.close()
