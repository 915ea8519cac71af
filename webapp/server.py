"""Assemble Parley from Settings: HTTP client, database, provider clients, service, UI."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import gradio as gr
import httpx
from sqlalchemy import Engine

from storage import message_rows
from storage.db import make_engine, migrate, session_factory, unit_of_work
from webapp import gradio_tuning
from webapp.app.api_keys import ApiKeyAuth
from webapp.app.auth import Accounts, HeaderAuth, Identity, LoginThrottle
from webapp.app.chat import ChatService
from webapp.app.cluster import Cluster
from webapp.app.compare import CompareService
from webapp.app.downloads import Downloads
from webapp.app.redis_cluster import RedisCluster
from webapp.app.redis_signin import SharedLoginThrottle
from webapp.app.versions import Versions
from webapp.config import ConfigError, Settings
from webapp.core.attachments import Limits
from webapp.core.capabilities import CapabilityTable, load_rules
from webapp.observability import Metrics
from webapp.provider.catalog import ModelCatalog
from webapp.provider.client import ProviderClient, RetryPolicy
from webapp.provider.http_client import provider_http
from webapp.provider.pricing import PriceFileError, load_prices
from webapp.tools.builtin import register_builtins
from webapp.tools.mcp_client import McpManager
from webapp.tools.mcp_convert import MAX_TOOL_IMAGES
from webapp.tools.registry import ToolRegistry, ToolSpecError
from webapp.tools.selection import ToolSelectionError, parse_names
from webapp.ui import presentation
from webapp.ui.api import ChatAPI
from webapp.ui.app import CSS, build_ui
from webapp.ui.compare_tab import CompareUI
from webapp.ui.context import PageContext
from webapp.ui.handlers.chat import ChatUI
from webapp.ui.keys_ui import KeysUI
from webapp.ui.share_page import SharePage, build_share_page
from webapp.ui.team import TeamUI

log = logging.getLogger(__name__)
MAX_THREADS = 400  # Gradio's queue runs at most max_threads events at once, async ones too


@dataclass
class Parley:
    """A built app and the resources to close with it."""

    settings: Settings
    demo: gr.Blocks
    http: httpx.AsyncClient
    engine: Engine
    service: ChatService
    identity: Identity
    metrics: Metrics
    share_demo: gr.Blocks
    accounts: Accounts | None = None  # the sign-in check when AUTH_MODE=accounts
    downloads: Downloads | None = None  # exports, served by create_app to their owners only
    catalog: ModelCatalog | None = None  # model lists (the UI's and GET /v1/models)
    api_keys: ApiKeyAuth | None = None  # who a /v1 (or /mcp) Bearer key belongs to
    default_tools: tuple[str, ...] = ()  # DEFAULT_TOOLS: offered in API turns that name none
    mcp: McpManager | None = None  # the MCP_SERVERS_FILE servers whose tools are in the registry
    tuning: gradio_tuning.Applied | None = None  # the process-wide Gradio patches this app holds

    def share_auth_kwargs(self) -> dict[str, Any]:
        """The share page asks for sign-in only when the admin setting says so."""
        return self.auth_kwargs() if self.settings.share_requires_login else {}

    def auth_kwargs(self) -> dict[str, Any]:
        """Gradio's auth settings for the mode: a password check, or the trusted header."""
        if self.settings.auth_mode == "accounts":
            assert self.accounts is not None
            return {
                "auth": self.accounts.authenticate,
                "auth_message": "Sign in with your Parley account (ask an admin for one).",
            }
        if self.settings.auth_mode == "header":
            return {
                "auth_dependency": HeaderAuth(
                    self.settings.auth_header, self.settings.trusted_proxies
                )
            }
        return {}


def build_tools(
    settings: Settings, http: httpx.AsyncClient
) -> tuple[ToolRegistry, tuple[str, ...]]:
    """The tool registry (built-ins plus TOOLS_MODULES) and the default selection.

    A bad tool definition or setting stops start-up with a message saying what to fix.
    """
    registry = ToolRegistry()
    fetcher = None
    if settings.http_get_allowed_hosts:
        # http_get gets its own client that never keeps cookies: one user's fetch must not
        # carry a cookie another user's fetch received (the provider client is shared).
        no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        fetcher = httpx.AsyncClient(cookies=httpx.Cookies(no_cookies), follow_redirects=False)
    try:
        register_builtins(
            registry, http=fetcher, http_allowed_hosts=settings.http_get_allowed_hosts
        )
    except ValueError as exc:
        raise ConfigError(f"HTTP_GET_ALLOWED_HOSTS: {exc}: fix it in .env") from None
    for spec in settings.tools_modules:
        try:
            added = registry.load(spec)
        except ToolSpecError as exc:
            raise ConfigError(f"TOOLS_MODULES: {exc}") from None
        log.info("loaded %d tools from %s", added, spec)
    try:
        defaults = parse_names(settings.default_tools, registry, "DEFAULT_TOOLS")
    except ToolSelectionError as exc:
        raise ConfigError(f"{exc}: fix DEFAULT_TOOLS in .env") from None
    return registry, defaults


def build(settings: Settings) -> Parley:
    """Migrate the database, mark interrupted streams, and build the UI (no server yet).

    Long: the composition root, one collaborator after another in dependency order."""
    http = provider_http(settings)
    tools, default_tools = build_tools(settings, http)
    # MCP servers start now (a bounded wait), so the Tools panel lists their tools; one that
    # fails is reported in the log, the Tools panel and /healthz, and retried with back-off.
    mcp = McpManager(
        settings.mcp_servers,
        tools,
        start_timeout_s=settings.mcp_start_timeout_s,
        image_limits=Limits.from_mb(settings.attach_max_mb, MAX_TOOL_IMAGES),
    )
    mcp.start()
    engine = make_engine(settings.database_url)
    backup = migrate(engine)
    if backup:
        log.info("database migrated; the previous file was backed up to %s", backup)
    sessions = session_factory(engine)
    cluster = make_cluster(settings)
    if not cluster.shared:  # alone, every answer left streaming is from this server's last run
        with unit_of_work(sessions) as session:
            interrupted = message_rows.mark_interrupted(session=session)
        if interrupted:
            log.warning(
                "%d answers were streaming when the server stopped: marked interrupted",
                interrupted,
            )
    retry = RetryPolicy(max_retries=settings.max_retries)
    metrics = Metrics()
    clients = {
        p.name: ProviderClient(http, p, retry=retry, read_timeout_s=settings.read_timeout_s)
        for p in settings.providers
    }
    service = ChatService(
        settings=settings,
        session_factory=sessions,
        clients=clients,
        capabilities=CapabilityTable(load_rules(settings.capabilities_file)),
        tools=tools,
        metrics=metrics,
        cluster=cluster,
    )
    catalog = ModelCatalog({p.name: p for p in settings.providers}, clients)
    identity = Identity(settings, sessions)
    try:
        prices = load_prices(settings.prices_file)
    except PriceFileError as exc:
        raise ConfigError(f"{exc}: fix it, or unset PRICES_FILE in .env") from None
    page = PageContext(service, catalog, identity)  # what every panel's handlers share
    chat_ui = ChatUI(
        service,
        catalog,
        Versions(sessions),
        identity,
        default_tools,
        mcp_status=mcp.status,
        page=page,
    )
    api_keys = ApiKeyAuth(sessions)
    downloads = Downloads()
    compare_ui = CompareUI(page, CompareService(service, prices), downloads)
    demo = build_ui(
        chat_ui,
        ChatAPI(service, identity, default_tools),
        TeamUI(page, downloads, sidebar=chat_ui.sidebar),
        compare_ui,
        KeysUI(page, api_keys),
    )
    try:  # Gradio internals tuned for speed (webapp/gradio_tuning.py), undone on close
        tuning = gradio_tuning.Applied.apply(settings.gradio_tuning_off)
    except ValueError as exc:
        raise ConfigError(f"GRADIO_TUNING_OFF: {exc}") from None
    # Queue positions go out every 2 s instead of to every waiting event after each start
    # (Gradio's "auto": O(n²) messages in a burst, 12% of its CPU before the first token).
    demo.queue(default_concurrency_limit=None, max_size=2000, status_update_rate=2)
    gradio_tuning.skip_queue_analytics(demo)
    gradio_tuning.calmer_queue(demo)
    accounts = None
    if settings.auth_mode == "accounts":
        accounts = Accounts(sessions, login_throttle(settings, settings.login_max_failures))
    share_demo = build_share_page(SharePage(sessions, settings.auth_mode))
    gradio_tuning.skip_queue_analytics(share_demo)
    gradio_tuning.calmer_queue(share_demo)
    return Parley(
        settings,
        demo,
        http,
        engine,
        service,
        identity,
        metrics,
        share_demo,
        accounts,
        downloads,
        catalog,
        api_keys,
        default_tools,
        mcp,
        tuning,
    )


def make_cluster(settings: Settings) -> Cluster:
    """What this process shares with the deployment's others: through Redis with REDIS_URL
    (their answers interrupted by any other when one dies), else nothing (one process)."""
    if not settings.redis_url:
        return Cluster()
    return RedisCluster(settings.redis_url, lease_s=settings.run_lease_s)


def login_throttle(settings: Settings, max_failures: int) -> LoginThrottle:
    """Failed sign-ins counted over every process with REDIS_URL, else in this one."""
    if settings.redis_url:
        return SharedLoginThrottle(settings.redis_url, max_failures, settings.login_lockout_s)
    return LoginThrottle(max_failures, settings.login_lockout_s)


def launch_kwargs(settings: Settings) -> dict[str, Any]:
    """Gradio launch settings that apply everywhere (see GRADIO6.md's checklist)."""
    return {
        "server_name": settings.host,
        "server_port": settings.port,
        "max_threads": MAX_THREADS,
        "max_file_size": f"{settings.max_upload_mb}mb",
        "run_history": False,
        "enable_monitoring": False,
        "show_error": settings.env != "production",
        "share": False,
        "css": CSS + presentation.CSS,
        "head": presentation.HEAD,
        "footer_links": ["api"],
        "ssr_mode": False,
    }
