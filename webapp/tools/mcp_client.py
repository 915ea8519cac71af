"""MCP servers as tool sources: one long-lived ClientSession per server, kept alive.

Every server has a supervisor task that connects (stdio process, Streamable HTTP or SSE),
lists the tools into the registry as `SERVER__TOOL`, follows `tools/list_changed`, and
reconnects with back-off when the session dies. The sessions live on an event loop of their
own, in one thread: build() is synchronous and runs before the web server's loop exists, and a
slow or stuck MCP server can then never stall the loop that streams answers. Calls cross over
with run_coroutine_threadsafe; cancelling the caller (timeout, Stop) cancels the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError

from webapp.core.attachments import Limits
from webapp.core.messages import ToolOutput
from webapp.tools.context import ToolContext
from webapp.tools.mcp_config import McpServerConfig, drop_user_headers, fill_user_fields
from webapp.tools.mcp_convert import (
    MAX_TOOL_IMAGES,
    parameters,
    result_output,
    tool_name,
    validator,
)
from webapp.tools.registry import Tool, ToolRegistry

log = logging.getLogger(__name__)

FIRST_DELAY_S, MAX_DELAY_S, STABLE_S = 0.5, 60.0, 30.0  # restart back-off
CONTEXT_PARAM = "_parley_context"  # how the executor hands the caller the user's context
MAX_USER_SESSIONS = 64  # per-user HTTP sessions kept open (least recently used closed first)


@dataclass
class _UserSession:
    """A session with one user's header values (servers whose headers ask for {{user.X}})."""

    ready: asyncio.Future[ClientSession]
    stop: asyncio.Event
    task: asyncio.Task[None] | None = None
    done: bool = False


class McpToolError(RuntimeError):
    """The server ran the call and reported an error (isError), or the session failed."""


@dataclass
class ServerState:
    """What is known about one server; read from any thread (plain attributes)."""

    config: McpServerConfig
    state: str = "starting"  # starting | ready | restarting | failed | stopped
    reason: str = ""  # why it is not ready (no secrets: exception text only)
    tools: int = 0
    restarts: int = 0
    session: ClientSession | None = field(default=None, repr=False)
    ready: asyncio.Event | None = field(default=None, repr=False)  # on the MCP loop
    signals: Any = field(default=None, repr=False)  # "closed" | "refresh" to the supervisor
    tried: bool = False  # the first attempt has ended (ready or failed)
    calls: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)  # in flight
    broken: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)  # session died

    def public(self) -> dict[str, Any]:
        """Name, transport, state, tool count: what /healthz and the Tools panel show."""
        row: dict[str, Any] = {
            "name": self.config.name,
            "transport": self.config.transport,
            "state": self.state,
            "tools": self.tools,
        }
        if self.reason and self.state != "ready":
            row["reason"] = self.reason
        if self.restarts:
            row["restarts"] = self.restarts
        return row


class McpManager:
    """Starts, watches and calls the MCP servers of MCP_SERVERS_FILE."""

    def __init__(
        self,
        servers: tuple[McpServerConfig, ...],
        registry: ToolRegistry,
        *,
        start_timeout_s: float = 10.0,
        image_limits: Limits | None = None,
    ) -> None:
        """`image_limits`: how many images of a result are kept to show, and how large."""
        self._registry = registry
        self._image_limits = image_limits or Limits(max_count=MAX_TOOL_IMAGES)
        self._start_timeout_s = start_timeout_s
        self._states = {s.name: ServerState(s) for s in servers}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._first_attempts = threading.Semaphore(0)
        self._user_sessions: dict[tuple[str, str], _UserSession] = {}  # on the MCP loop
        self._closing = False

    # ---- lifecycle (called from the main thread) -------------------------------------------
    def start(self, wait_s: float | None = None) -> None:
        """Start every server; wait up to `wait_s` for their first tries (default: the start
        timeout, plus a second for processes to spawn: that is not under the timeout)."""
        if not self._states or self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        self._loop = loop
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            for state in self._states.values():
                self._tasks.append(loop.create_task(self._supervise(state)))
            started.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="parley-mcp", daemon=True)
        self._thread.start()
        started.wait()
        deadline = time.monotonic() + (self._start_timeout_s + 1.0 if wait_s is None else wait_s)
        for _ in self._states:
            if not self._first_attempts.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break

    def close(self) -> None:
        """Stop every session (stdio processes are ended) and the loop's thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._closing = True

        async def stop() -> None:
            held = [s.task for s in self._user_sessions.values() if s.task is not None]
            for task in [*self._tasks, *held]:
                task.cancel()
            await asyncio.gather(*self._tasks, *held, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()
        for state in self._states.values():
            state.state = "stopped"
        self._loop = self._thread = None

    def in_flight(self) -> int:
        """Calls waiting for a server's answer now."""
        return sum(len(state.calls) for state in self._states.values())

    def status(self) -> list[dict[str, Any]]:
        """Each server's name, transport, state and tool count (never its env or headers)."""
        return [state.public() for state in self._states.values()]

    # ---- calls (from any event loop) --------------------------------------------------------
    async def call(
        self,
        server: str,
        tool: str,
        arguments: dict[str, Any],
        credentials: Mapping[str, str] | None = None,
    ) -> ToolOutput:
        """Run `tool` on `server` and return its result (text, images); raise McpToolError on
        failure.

        `credentials`: the calling user's values for the server's {{user.X}} headers."""
        loop = self._loop
        if loop is None:
            raise McpToolError(f"MCP server {server} is not running")
        work = self._call(server, tool, arguments, dict(credentials or {}))
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, loop))

    async def _call(
        self, server: str, tool: str, arguments: dict[str, Any], credentials: dict[str, str]
    ) -> ToolOutput:
        state = self._states[server]
        if state.config.user_fields:
            session: ClientSession | None = await self._user_session(state.config, credentials)
        else:
            if state.state != "ready" and state.ready is not None:
                await state.ready.wait()  # restarting: the executor's timeout bounds the wait
            session = state.session
        if session is None:
            raise McpToolError(f"MCP server {server} is not available: {state.reason}")
        task = asyncio.current_task()
        assert task is not None
        state.calls.add(task)
        try:
            result = await session.call_tool(tool, arguments)
        except asyncio.CancelledError:
            if task not in state.broken:
                raise
            state.broken.discard(task)
            task.uncancel()
            raise McpToolError(f"the MCP server {server} stopped during the call") from None
        except McpError as exc:
            if exc.error.code == types.CONNECTION_CLOSED:
                self._signal(state, "closed")
            raise McpToolError(exc.error.message) from None
        except (httpx.HTTPError, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            self._signal(state, "closed")  # HTTP servers: reconnect before the next call
            self._forget_user_session(state.config, credentials)
            raise McpToolError(f"the connection to {server} failed: {_describe(exc)}") from None
        finally:
            state.calls.discard(task)
        if result.isError:
            raise McpToolError(result_output(result, None).text)
        return await asyncio.to_thread(result_output, result, self._image_limits)

    # ---- the supervisor (on the MCP loop) ---------------------------------------------------
    async def _supervise(self, state: ServerState) -> None:
        """Connect; when the session ends, reconnect after a growing delay. Never raises."""
        state.ready = asyncio.Event()
        delay = FIRST_DELAY_S
        while not self._closing:
            began = time.monotonic()
            try:
                await self._session(state)
                reason = "the server closed the connection"
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - anyio wraps errors in groups
                reason = _describe(_leaf(exc))
            finally:
                state.session = None
                state.ready.clear()
                for call in list(state.calls):  # their answers can never come now
                    state.broken.add(call)
                    call.cancel()
            self._tried(state)
            if self._closing:
                return
            delay = FIRST_DELAY_S if time.monotonic() - began > STABLE_S else delay
            state.state = "restarting" if state.tools else "failed"
            state.reason = reason
            state.restarts += 1
            log.warning(
                "MCP server %s: not available (%s); retrying in %.1f s",
                state.config.name,
                reason,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)

    def _tried(self, state: ServerState) -> None:
        """Count the server's first attempt as done (start() waits for these)."""
        if not state.tried:
            state.tried = True
            self._first_attempts.release()

    async def _session(self, state: ServerState) -> None:
        """One session: initialize, list tools, then follow notifications until it ends."""
        signals_in, signals = anyio.create_memory_object_stream[str](16)
        state.signals = signals_in

        async def on_message(message: Any) -> None:
            root = getattr(message, "root", None)
            if isinstance(root, types.ToolListChangedNotification):
                self._signal(state, "refresh")

        # The server-wide session lists the tools; headers that need a user's value are left out.
        shared = dataclasses.replace(state.config, headers=drop_user_headers(state.config.headers))
        async with self._transport(shared) as (read, write):
            relay_in, relay = anyio.create_memory_object_stream[Any](0)

            async def pump() -> None:
                # Forward the transport's messages; its end is how a dead process shows.
                async with relay_in:
                    async for item in read:
                        await relay_in.send(item)
                self._signal(state, "closed")

            async with anyio.create_task_group() as group:
                group.start_soon(pump)
                async with ClientSession(relay, write, message_handler=on_message) as session:
                    with anyio.fail_after(self._start_timeout_s):
                        await session.initialize()
                        await self._list_tools(state, session)
                    state.session, state.state, state.reason = session, "ready", ""
                    assert state.ready is not None
                    state.ready.set()
                    self._tried(state)
                    log.info("MCP server %s: ready, %d tools", state.config.name, state.tools)
                    async for signal in signals:
                        if signal == "closed":
                            break
                        with anyio.fail_after(self._start_timeout_s):
                            await self._list_tools(state, session)
                group.cancel_scope.cancel()

    # ---- per-user sessions (on the MCP loop) ------------------------------------------------
    def _user_key(self, config: McpServerConfig, credentials: dict[str, str]) -> tuple[str, str]:
        values = json.dumps([credentials.get(name, "") for name in config.user_fields])
        return config.name, hashlib.sha256(values.encode()).hexdigest()

    async def _user_session(
        self, config: McpServerConfig, credentials: dict[str, str]
    ) -> ClientSession:
        """The open session with this user's header values (opened on first use)."""
        missing = [name for name in config.user_fields if not credentials.get(name, "").strip()]
        if missing:
            raise McpToolError(
                f"the MCP server {config.name} needs your {', '.join(missing)}: the user must "
                "set it under Settings → Tools (MCP credentials) first"
            )
        key = self._user_key(config, credentials)
        held = self._user_sessions.pop(key, None)
        if held is None or held.done:
            loop = asyncio.get_running_loop()
            held = _UserSession(loop.create_future(), asyncio.Event())
            headers = fill_user_fields(config.headers, credentials)
            personal = dataclasses.replace(config, headers=headers)
            held.task = loop.create_task(self._hold(personal, held))
        self._user_sessions[key] = held  # most recently used last
        while len(self._user_sessions) > MAX_USER_SESSIONS:
            oldest = next(iter(self._user_sessions))
            self._user_sessions.pop(oldest).stop.set()
        return await asyncio.shield(held.ready)

    async def _hold(self, config: McpServerConfig, held: _UserSession) -> None:
        """Keep one user's session open until it is stopped or fails."""
        try:
            async with (
                self._transport(config) as (read, write),
                ClientSession(read, write) as session,
            ):
                with anyio.fail_after(self._start_timeout_s):
                    await session.initialize()
                held.ready.set_result(session)
                await held.stop.wait()
        except BaseException as exc:
            if not held.ready.done():
                reason = _describe(_leaf(exc))
                held.ready.set_exception(McpToolError(f"cannot reach {config.name}: {reason}"))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            held.done = True

    def _forget_user_session(self, config: McpServerConfig, credentials: dict[str, str]) -> None:
        if config.user_fields:
            held = self._user_sessions.pop(self._user_key(config, credentials), None)
            if held is not None:
                held.stop.set()

    def _signal(self, state: ServerState, signal: str) -> None:
        with contextlib.suppress(Exception):
            state.signals.send_nowait(signal)

    async def _list_tools(self, state: ServerState, session: ClientSession) -> None:
        """Read every page of tools/list and put them in the registry under the server's name."""
        listed: list[types.Tool] = []
        cursor: str | None = None
        while True:
            page = await session.list_tools(
                params=types.PaginatedRequestParams(cursor=cursor) if cursor else None
            )
            listed.extend(page.tools)
            cursor = page.nextCursor
            if not cursor:
                break
        self._registry.set_group(state.config.name, self._tools(state.config, listed))
        state.tools = len(listed)

    def _tools(self, config: McpServerConfig, listed: list[types.Tool]) -> list[Tool]:
        taken = {t.name for t in self._registry.tools() if t.group != config.name}
        made = []
        for remote in listed:
            name = tool_name(config.name, remote.name, taken)
            taken.add(name)
            read_only = remote.annotations.readOnlyHint if remote.annotations else None
            made.append(
                Tool(
                    name=name,
                    description=(remote.description or remote.title or remote.name).strip(),
                    parameters=parameters(remote.inputSchema),
                    function=self._caller(config.name, remote.name),
                    needs_approval=not config.trusted(remote.name),
                    timeout_s=config.timeout_s,
                    context_param=CONTEXT_PARAM,
                    validator=validator(remote.inputSchema),
                    group=config.name,
                    read_only=read_only,
                )
            )
        return made

    def _caller(self, server: str, tool: str) -> Callable[..., Coroutine[Any, Any, ToolOutput]]:
        async def call_mcp_tool(**arguments: Any) -> ToolOutput:
            context = arguments.pop(CONTEXT_PARAM, None)
            credentials = context.credentials if isinstance(context, ToolContext) else {}
            return await self.call(server, tool, arguments, credentials)

        return call_mcp_tool

    @contextlib.asynccontextmanager
    async def _transport(self, config: McpServerConfig) -> AsyncIterator[tuple[Any, Any]]:
        if config.transport == "stdio":
            params = StdioServerParameters(
                command=config.command,
                args=list(config.args),
                env=dict(config.env) or None,
                cwd=config.cwd,
            )
            async with stdio_client(params) as (read, write):
                yield read, write
        elif config.transport == "sse":
            async with sse_client(config.url, headers=dict(config.headers)) as (read, write):
                yield read, write
        else:
            timeout = httpx.Timeout(30.0, read=300.0)
            async with (
                httpx.AsyncClient(headers=dict(config.headers), timeout=timeout) as http,
                streamable_http_client(config.url, http_client=http) as (read, write, _),
            ):
                yield read, write


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out while starting"
    if isinstance(exc, McpError):
        return exc.error.message
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
