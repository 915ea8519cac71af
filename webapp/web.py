"""The production server: FastAPI with /healthz and /metrics, Gradio mounted at "/", uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import fastapi
import gradio as gr
import uvicorn
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from gradio.routes import App as GradioApp
from sqlalchemy import Engine, text
from starlette.routing import Mount, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage.db import StorageUnavailable, session_factory
from webapp import gradio_tuning
from webapp.app import downloads
from webapp.app.api_turns import ApiTurns
from webapp.app.auth import LoginAddressGuard, NotSignedIn, trusted
from webapp.app.cluster import database_reaper
from webapp.config import Settings, is_loopback
from webapp.edge.image_fetch import ImageFetcher
from webapp.edge.mcp_server import MCP_PATH, McpServer
from webapp.edge.openai_api import FastPath, OpenAIApi
from webapp.edge.page_routes import add_page_routes
from webapp.edge.proxy_page import UnidentifiedPage
from webapp.edge.sign_in import share_sign_in
from webapp.edge.web_security import HostCheck, SameOriginGuard, SecurityHeaders
from webapp.observability import Metrics
from webapp.server import Parley, launch_kwargs, login_throttle
from webapp.ui.live_view import LIVE_PATH, LIVE_PREFIX, LiveFeed

log = logging.getLogger(__name__)

HEALTH_DB_TIMEOUT_S = 3.0
GRACEFUL_SHUTDOWN_S = 30  # connections left after the runs ended get this long to close
NO_STORE = {"Cache-Control": "no-store"}
# launch() settings that mount_gradio_app() also takes; max_threads is set on the Blocks.
_MOUNT_KEYS = (
    "server_name",
    "server_port",
    "footer_links",
    "run_history",
    "max_file_size",
    "show_error",
    "ssr_mode",
    "enable_monitoring",
    "css",
    "js",
    "head",
    "theme",
    "allowed_paths",
    "blocked_paths",
    "favicon_path",
    "root_path",
)


def _short_error(exc: BaseException) -> str:
    """`OperationalError: unable to open database file`: the class and a first line, short."""
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    first_line = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}"[:160]


def _ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


class DatabaseProbe:
    """`SELECT 1` in a worker thread with a deadline; at most one probe in flight, so a hung
    database cannot pile up threads however often the load balancer asks."""

    def __init__(self, parley: Parley, timeout_s: float = HEALTH_DB_TIMEOUT_S) -> None:
        self._parley = parley
        self._timeout_s = timeout_s
        self._inflight: asyncio.Future[None] | None = None

    async def check(self) -> str | None:
        """None when the database answers, else a short description of what went wrong."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(asyncio.to_thread(_ping, self._parley.engine))
            # Mark a late failure as seen: nobody may await this future again.
            self._inflight.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            await asyncio.wait_for(asyncio.shield(self._inflight), self._timeout_s)
        except TimeoutError:
            return f"TimeoutError: no answer within {self._timeout_s:g} s"
        except Exception as exc:  # any failure means unhealthy; say which kind
            # The driver's text can name hosts and users: it goes to the log, not the page.
            log.warning("health check: database unavailable: %s", _short_error(exc))
            return f"{type(exc).__name__} (details in the server log)"
        return None


def queue_state(demo: gr.Blocks) -> tuple[bool | None, int | None]:
    """(running, pending events) of a Blocks' queue; None where this Gradio hides it."""
    queue = getattr(demo, "_queue", None)
    if queue is None:
        return None, None
    stopped = getattr(queue, "stopped", None)
    is_running = getattr(demo, "is_running", None)
    running = None if stopped is None or is_running is None else bool(is_running and not stopped)
    try:
        pending: int | None = len(queue)  # events waiting, summed over concurrency groups
    except TypeError:
        pending = None
    return running, pending


def _raise_max_threads(demo: gr.Blocks, max_threads: int) -> None:
    """launch(max_threads=) does this; mounting does not (the queue sizes its slots from it)."""
    demo.max_threads = max_threads
    queue = getattr(demo, "_queue", None)
    if queue is not None and hasattr(queue, "max_thread_count"):
        queue.max_thread_count = max_threads


class ShareReadOnly:
    """The share page needs no uploads, file downloads or proxying: refuse them under /share
    (it may be open to anyone when SHARE_REQUIRES_LOGIN=false)."""

    BLOCKED = (b"/upload", b"/file=", b"/proxy=")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("raw_path") or str(scope.get("path", "")).encode()
        if (
            scope["type"] == "http"
            and path.startswith(b"/share/")
            and any(marker in path for marker in self.BLOCKED)
        ):
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": b"The share page is read-only."})
            return
        await self.app(scope, receive, send)


class MetricsAllowList:
    """/metrics only for the networks in METRICS_ALLOWED (by default loopback and private)."""

    def __init__(self, app: ASGIApp, networks: tuple[str, ...]) -> None:
        self.app = app
        self.networks = networks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).rstrip("/") == "/metrics":
            client = scope.get("client") or ("", 0)
            if not trusted(client[0], self.networks):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"Metrics are not served to this address (METRICS_ALLOWED).",
                    }
                )
                return
        await self.app(scope, receive, send)


class NoProxyBuffering:
    """Marks event streams `X-Accel-Buffering: no`, so nginx passes each event on at once even
    where its own proxy_buffering cannot be turned off (Gradio does not send it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if any(
                    name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                    for name, value in headers
                ):
                    message = {**message, "headers": [*headers, (b"x-accel-buffering", b"no")]}
            await send(message)

        await self.app(scope, receive, send_marked)


def create_app(
    parley: Parley,
    metrics: Metrics | None = None,
    *,
    auth: Any = None,
    auth_dependency: Any = None,
    auth_message: str | None = None,
    image_fetcher: ImageFetcher | None = None,
) -> fastapi.FastAPI:
    """FastAPI with GET /healthz and GET /metrics, the read-only share page at /share, and
    Parley's Gradio app at "/". Sign-in follows AUTH_MODE unless auth arguments are given.

    Every request passes the Host check (ALLOWED_HOSTS), pages get the CSP, state-changing
    requests from other sites are refused (webapp/edge/web_security.py); "load image" links fetch
    through `image_fetcher` (a default ImageFetcher: public addresses only).

    Long: the routes and middleware of the server in the order they apply, which must be read
    together."""
    demo = parley.demo
    metrics = metrics or parley.metrics
    if auth is None and auth_dependency is None:
        modes = parley.auth_kwargs()
        auth, auth_dependency = modes.get("auth"), modes.get("auth_dependency")
        auth_message = auth_message or modes.get("auth_message")
    options = launch_kwargs(parley.settings)
    _raise_max_threads(demo, options["max_threads"])

    mcp: McpServer | None = None

    @contextlib.asynccontextmanager
    async def lifespan(_app: fastapi.FastAPI) -> AsyncIterator[None]:
        # mount_gradio_app wraps this: Gradio's start-up (which starts the queue) runs inside.
        runs = parley.service.runs
        reaper = database_reaper(session_factory(parley.engine))
        approvals = parley.service.approvals

        def decide_here(user_id: int, conversation_id: str, approved: bool) -> bool:
            return approvals.resolve(user_id, conversation_id, approved) is not None

        async with (
            runs.cluster.running(runs.stop_here, reaper, decide_here),
            mcp.running() if mcp is not None else contextlib.nullcontext(),
        ):
            yield
        # Normally drained already (_Server.shutdown); a server that skipped it still leaves
        # no row "streaming": what is left is saved as interrupted now.
        await parley.service.runs.shutdown(0)
        demo.close(verbose=False)  # stops the queue's loops
        await parley.http.aclose()  # the provider client's connections (aiohttp's session)
        if parley.mcp is not None:
            await asyncio.to_thread(parley.mcp.close)  # MCP sessions; stdio servers end
        await fetcher.aclose()

    app = fastapi.FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(NoProxyBuffering)
    if auth_dependency is not None:  # header mode: a page saying the proxy did not say who
        app.add_middleware(UnidentifiedPage)
    app.add_middleware(ShareReadOnly)
    app.add_middleware(MetricsAllowList, networks=parley.settings.metrics_allowed)
    if parley.settings.auth_mode == "accounts":
        # Per address, on top of the per-name throttle: stops spraying many names from one host.
        settings = parley.settings
        app.add_middleware(
            LoginAddressGuard,
            throttle=login_throttle(settings, settings.login_max_failures * 4),
        )
    # With a CORSMiddleware on the parent app, Gradio's own steps aside; it would let any
    # origin read any answer, with credentials, whenever the Host is not localhost.
    app.add_middleware(CORSMiddleware, allow_origins=[])
    app.add_middleware(SameOriginGuard)
    app.add_middleware(SecurityHeaders)
    # The OpenAI-compatible API and the page's live answer feed: off Gradio's queue and past
    # the page's middleware (each streamed chunk would pass through all of it).
    live = LiveFeed(parley.service.runs, lambda request: _page_user(app, parley, request))
    fast: dict[str, ASGIApp] = {
        LIVE_PREFIX: Router(
            routes=[Route(LIVE_PATH, live.endpoint, methods=["GET"])],
            default=PlainTextResponse("", 404),
        )
    }
    if parley.catalog is not None and parley.api_keys is not None:
        settings = parley.settings
        api = OpenAIApi(
            settings=settings,
            turns=ApiTurns(parley.service),
            keys=parley.api_keys,
            identity=parley.identity,
            catalog=parley.catalog,
            runs=parley.service.runs,
            keyless=settings.auth_mode == "none" and is_loopback(settings.host),
        )
        fast["/v1/"] = api.app
        # MCP over Streamable HTTP, with the same keys, curated tools (webapp/edge/mcp_server.py).
        mcp = McpServer(
            service=parley.service,
            catalog=parley.catalog,
            authenticate=api.caller,
            default_tools=parley.default_tools,
        )
        fast[MCP_PATH] = mcp
    app.add_middleware(FastPath, routes=fast)
    app.add_middleware(HostCheck, allowed_hosts=parley.settings.allowed_hosts)
    fetcher = image_fetcher or ImageFetcher()
    add_page_routes(
        app,
        identity=parley.identity,
        fetcher=fetcher,
        gradio_apps=lambda: sorted(_gradio_apps(app), key=lambda g: g.blocks is not demo),
    )
    probe = DatabaseProbe(parley)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        database_error = await probe.check()
        cluster = parley.service.runs.cluster
        redis_error = await cluster.health() if cluster.shared else None
        shared = {"redis": redis_error or "ok"} if cluster.shared else {}
        running, pending = queue_state(demo)
        queue: dict[str, Any] = {"pending": "unknown" if pending is None else pending}
        if running is False:
            queue["running"] = False
        live = len(parley.service.runs)  # answers streaming now (a draining server shows them)
        # MCP servers: name, state, tool count (never env or headers); one that is down does
        # not make Parley unhealthy, its other features work.
        servers = parley.mcp.status() if parley.mcp is not None else []
        mcp = {"mcp": servers} if servers else {}
        if database_error is None and redis_error is None and running is not False:
            body = {
                "status": "ok",
                "database": "ok",
                **shared,
                "queue": queue,
                "runs": live,
                **mcp,
            }
            return JSONResponse(body, headers=NO_STORE)
        body = {
            "status": "unavailable",
            "database": database_error or "ok",
            **shared,
            "queue": queue,
            "runs": live,
            **mcp,
        }
        return JSONResponse(body, status_code=503, headers=NO_STORE)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        _, pending = queue_state(demo)
        if pending is not None:
            metrics.set_queue_pending(pending)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type, headers=NO_STORE)

    runs = parley.service.runs
    grace_s = parley.settings.shutdown_grace_s
    app.state.drain_runs = lambda: runs.shutdown(grace_s)
    mount = {key: options[key] for key in _MOUNT_KEYS if key in options}
    # Never Gradio's own MCP server (GRADIO_MCP_SERVER=true would start it): it makes every
    # public endpoint a tool, with no sign-in. Parley's is /mcp (webapp/edge/mcp_server.py).
    mount["mcp_server"] = False
    share = parley.share_auth_kwargs()
    app = gr.mount_gradio_app(
        app,
        parley.share_demo,
        path="/share",
        auth=share.get("auth"),
        auth_dependency=share.get("auth_dependency"),
        auth_message=share.get("auth_message"),
        **mount,
    )
    app = gr.mount_gradio_app(
        app,
        demo,
        path="/",
        auth=auth,
        auth_dependency=auth_dependency,
        auth_message=auth_message,
        **mount,
    )
    # Gradio checks that a file named in an event was uploaded only once `has_launched` is set,
    # which launch() does and mount_gradio_app does not: without it, a crafted event could name
    # any file the server can read (Gradio 6.31, processing_utils._check_allowed).
    for blocks in (demo, parley.share_demo):
        blocks.has_launched = True
    mounted = {id(gradio_app.get_blocks()): gradio_app for gradio_app in _gradio_apps(app)}
    if parley.settings.auth_mode == "accounts":  # signed in to the chat: to its share links too
        share_sign_in(mounted[id(demo)], mounted[id(parley.share_demo)])
    for gradio_app in _gradio_apps(app):
        gradio_tuning.login_check_on_the_loop(gradio_app)
        if gradio_app.get_blocks() is demo and parley.downloads is not None:
            downloads.add_route(gradio_app, parley.downloads, parley.identity)
    return cast(fastapi.FastAPI, app)


async def _page_user(app: Any, parley: Parley, request: Any) -> int | None:
    """The user id of a request from the page (Gradio's sign-in), or None."""
    pages = [g for g in _gradio_apps(app) if g.get_blocks() is parley.demo]
    if not pages:
        return None
    try:
        name = await downloads.gradio_user(pages[0], request)
        person = await parley.identity.person(gr.Request(request=request, username=name))
    except (NotSignedIn, StorageUnavailable):
        return None
    return person.user_id


def _gradio_apps(app: Any) -> list[GradioApp]:
    return [
        route.app
        for route in getattr(app, "routes", [])
        if isinstance(route, Mount) and isinstance(route.app, GradioApp)
    ]


class _Server(uvicorn.Server):
    """uvicorn, draining Parley's runs and ending Gradio's keep-alive streams on shutdown.

    On SIGTERM the live runs (answers streaming) get SHUTDOWN_GRACE seconds to finish; those
    still running then are stopped and saved as interrupted with their text, so a clean
    shutdown never leaves a row "streaming". Each open page holds a /heartbeat stream that
    only ends on the Gradio app's stop_event; uvicorn waits for every connection before the
    lifespan shutdown, so without setting it SIGTERM would wait out the graceful timeout.
    """

    async def shutdown(self, sockets: Any = None) -> None:
        drain = getattr(getattr(self.config.app, "state", None), "drain_runs", None)
        if drain is not None:
            await drain()
        for gradio_app in _gradio_apps(self.config.app):
            gradio_app.stop_event.set()
        await super().shutdown(sockets)


def _log_level(name: str) -> int:
    return logging.getLevelNamesMapping().get(name.upper(), logging.INFO)


def uvicorn_config(
    app: fastapi.FastAPI,
    settings: Settings,
    *,
    forwarded_allow_ips: str = "127.0.0.1",
    proxy_headers: bool = True,
    graceful_shutdown_s: int = GRACEFUL_SHUTDOWN_S,
) -> uvicorn.Config:
    """uvicorn's settings for production: no access log (log_turn lines are the request log),
    uvicorn's own logging set-up off (its lines go through configure_logging's handler).

    proxy_headers rewrites the request's client address to X-Forwarded-For's when the peer is
    in forwarded_allow_ips; turn it off where a check needs the proxy's own address.
    """
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=_log_level(settings.log_level),
        log_config=None,
        access_log=False,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=graceful_shutdown_s,
    )


def serve(
    app: fastapi.FastAPI,
    settings: Settings,
    *,
    forwarded_allow_ips: str = "127.0.0.1",
    proxy_headers: bool = True,
    graceful_shutdown_s: int = GRACEFUL_SHUTDOWN_S,
) -> None:
    """Run the app with uvicorn until SIGINT/SIGTERM (call configure_logging first)."""
    config = uvicorn_config(
        app,
        settings,
        forwarded_allow_ips=forwarded_allow_ips,
        proxy_headers=proxy_headers,
        graceful_shutdown_s=graceful_shutdown_s,
    )
    _Server(config).run()


@dataclass
class ServerThread:
    """A uvicorn server running in a daemon thread (tests)."""

    server: uvicorn.Server
    thread: threading.Thread
    url: str  # ends with "/"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut down gracefully; force it if that takes longer than timeout_s."""
        self.server.should_exit = True
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout_s)


def start_in_thread(
    app: fastapi.FastAPI, host: str, port: int, *, timeout_s: float = 30.0
) -> ServerThread:
    """Start app on host:port (0: any free port) and return once it accepts connections."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=logging.WARNING,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)

    def run() -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind or start
            server.run()

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server on {host}:{port} stopped during start-up")
        if time.monotonic() > deadline:
            server.force_exit = server.should_exit = True
            raise RuntimeError(f"the server on {host}:{port} did not start in {timeout_s:g} s")
        thread.join(0.005)  # wakes at once if the thread ends
    bound = port or int(server.servers[0].sockets[0].getsockname()[1])
    return ServerThread(server, thread, f"http://{host}:{bound}/")
