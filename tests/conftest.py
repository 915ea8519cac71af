"""Shared fixtures: a fake OpenAI-compatible server, databases (a SQLite file or a fresh
database on a real PostgreSQL server), and a running Parley on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client

from storage.db import make_engine, migrate, session_factory
from tests.fake_openai import FakeOpenAI
from tests.pg import PostgresUnavailable, create_database, drop_database, start_postgres_server
from webapp.app.chat import ChatService
from webapp.config import Settings, load_settings
from webapp.core.capabilities import CapabilityTable
from webapp.edge.image_fetch import ImageFetcher
from webapp.provider.client import ProviderClient, RetryPolicy
from webapp.server import Parley, build
from webapp.web import ServerThread, create_app, start_in_thread

# The browser fixtures (playwright, browser, page) live in tests/browser.py and are imported
# by the test_browser*.py modules only: other runs never load Playwright.
pytest_plugins = ["tests.repo_fixtures"]


# ---- markers: `scripts/test --fast` leaves out what needs Chromium, PostgreSQL or many seconds
SLOW_MODULES = {
    "test_soak.py",  # a minute of streaming against the resource bounds
    "test_install.py",  # a fresh virtualenv and pip install
    "test_faults.py",  # real server processes killed and restarted
    "test_cluster_processes.py",  # two Parley processes and a redis-server
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by what it needs: `browser` (Chromium), `postgres` (a real server, also
    through the `database_url` parameter) and `slow` (see SLOW_MODULES)."""
    for item in items:
        module = item.path.name
        if module.startswith("test_browser"):
            item.add_marker(pytest.mark.browser)
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and "postgres" in callspec.params.values()
        if on_postgres or "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One throwaway PostgreSQL server for the whole session (the `postgres` database's URL).

    Missing binaries fail the PostgreSQL cases rather than skip them: CI installs PostgreSQL,
    and a skip would hide that the "works on PostgreSQL" claim went untested.
    """
    try:
        server = start_postgres_server()
    except PostgresUnavailable as exc:
        pytest.fail(f"cannot run the PostgreSQL cases: {exc}", pytrace=False)
    try:
        yield server.url
    finally:
        server.destroy()


@pytest.fixture(params=["sqlite", "postgres"], ids=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: a SQLite file that does not exist yet (in a directory that
    does not exist yet either), or a database of its own on the session's PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'parley.db'}"
        return
    url = create_database(request.getfixturevalue("postgres_url"))
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """The fake upstream behind the `service` fixture."""
    with FakeOpenAI() as server:
        yield server


# ---- the chat service on each database -------------------------------------------------------
@pytest.fixture
def service_env() -> dict[str, str]:
    """Extra settings for `service`: a module overrides this fixture to change them."""
    return {}


@pytest.fixture
def service_capabilities() -> CapabilityTable:
    """The capability table of `service` (a module overrides it for its own rules)."""
    return CapabilityTable()


@pytest.fixture
def service_tools() -> Any:
    """The tool registry of `service`: None is the default (empty) one."""
    return None


@pytest.fixture
async def service(
    fake: FakeOpenAI,
    database_url: str,
    service_env: dict[str, str],
    service_capabilities: CapabilityTable,
    service_tools: Any,
    request: pytest.FixtureRequest,
) -> AsyncIterator[ChatService]:
    """A ChatService on each database, its providers pointed at `fake`, no retries.

    Settings come from `service_env`, then from an `indirect` parameter (a dict)."""
    env = {
        "SILICONFLOW_BASE_URL": fake.base_url,
        "SILICONFLOW_API_KEY": "k",
        "JIEKOU_BASE_URL": fake.base_url,
        **service_env,
        **getattr(request, "param", {}),
    }
    settings = load_settings(env, dotenv_path=None)
    engine = make_engine(database_url)
    migrate(engine)
    async with httpx.AsyncClient() as http:
        clients = {
            p.name: ProviderClient(http, p, retry=RetryPolicy(max_retries=0))
            for p in settings.providers
        }
        yield ChatService(
            settings=settings,
            session_factory=session_factory(engine),
            clients=clients,
            capabilities=service_capabilities,
            tools=service_tools,
        )
    engine.dispose()


@dataclass
class RunningApp:
    """A Parley server on loopback, its settings, and the fake upstream behind it."""

    parley: Parley
    settings: Settings
    url: str
    fake: FakeOpenAI
    server: ServerThread

    def client(self, **kwargs: object) -> Client:
        return Client(self.url, verbose=False, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.server.stop()
        self.parley.engine.dispose()
        if self.parley.tuning is not None:  # Gradio's own code again once no app holds it
            self.parley.tuning.undo()


def start_app(
    fake: FakeOpenAI, db: Path | str, *, image_fetcher: ImageFetcher | None = None, **env: str
) -> RunningApp:
    """Build Parley on `db` (a SQLite file's Path, or a database URL) and serve it on loopback.

    "Load image" fetches go through `image_fetcher` (default: the production one)."""
    values = {
        "SILICONFLOW_BASE_URL": fake.base_url,
        "SILICONFLOW_API_KEY": "test-key-siliconflow",
        "JIEKOU_BASE_URL": fake.base_url,
        "DATABASE_URL": f"sqlite:///{db}" if isinstance(db, Path) else db,
        "PORT": str(free_port()),
        "MAX_RETRIES": "2",
        "SHUTDOWN_GRACE": "2",  # a test server stopped mid-answer must not wait 30 s
        # Without sign-in every client is the one local user, and many tests stream in
        # parallel; the tests of the limit itself set it.
        "MAX_RUNS_PER_USER": "200",
        **env,
    }
    settings = load_settings(values, dotenv_path=None)
    parley = build(settings)
    # The production stack: FastAPI with /healthz, /metrics and /share, served by uvicorn.
    server = start_in_thread(
        create_app(parley, image_fetcher=image_fetcher), "127.0.0.1", settings.port
    )
    return RunningApp(parley, settings, f"http://127.0.0.1:{settings.port}/", fake, server)


@pytest.fixture
def app(fake_openai: FakeOpenAI, database_url: str) -> Iterator[RunningApp]:
    """Parley on each database: every test using it runs on SQLite and on PostgreSQL."""
    running = start_app(fake_openai, database_url)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def sqlite_app(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[RunningApp]:
    """Parley on a SQLite file only: for browser journeys whose storage is covered elsewhere."""
    running = start_app(fake_openai, tmp_path / "parley.db")
    try:
        yield running
    finally:
        running.close()
