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
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from jsonschema import exceptions as schema_errors
from jsonschema import validators
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError

from webapp.tools.mcp_config import McpServerConfig
from webapp.tools.registry import Tool, ToolArgumentsError, ToolRegistry

log = logging.getLogger(__name__)

FIRST_DELAY_S, MAX_DELAY_S, STABLE_S = 0.5, 60.0, 30.0  # restart back-off
_INVALID = re.compile(r"[^a-zA-Z0-9_-]")


class McpToolError(RuntimeError):
    """The server ran the call and reported an error (isError), or the session failed."""


def tool_name(server: str, tool: str, taken: set[str]) -> str:
    """`SERVER__TOOL`, made to fit the providers' `^[a-zA-Z0-9_-]{1,64}$` and unique in `taken`."""
    name = f"{_INVALID.sub('_', server)}__{_INVALID.sub('_', tool)}"
    if len(name) <= 64 and name not in taken:
        return name
    digest = hashlib.sha1(f"{server}\0{tool}".encode()).hexdigest()[:8]
    return f"{name[:55]}_{digest}"


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
    ) -> None:
        self._registry = registry
        self._start_timeout_s = start_timeout_s
        self._states = {s.name: ServerState(s) for s in servers}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._first_attempts = threading.Semaphore(0)
        self._closing = False

    # ---- lifecycle (called from the main thread) -------------------------------------------
    def start(self, wait_s: float | None = None) -> None:
        """Start every server; wait up to `wait_s` (default: the start timeout) for first tries."""
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
        deadline = time.monotonic() + (self._start_timeout_s if wait_s is None else wait_s)
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
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        for state in self._states.values():
            state.state = "stopped"
        self._loop = self._thread = None

    def status(self) -> list[dict[str, Any]]:
        """Each server's name, transport, state and tool count (never its env or headers)."""
        return [state.public() for state in self._states.values()]

    # ---- calls (from any event loop) --------------------------------------------------------
    async def call(self, server: str, tool: str, arguments: dict[str, Any]) -> str:
        """Run `tool` on `server` and return its result as text; raise McpToolError on failure."""
        loop = self._loop
        if loop is None:
            raise McpToolError(f"MCP server {server} is not running")
        future = asyncio.run_coroutine_threadsafe(self._call(server, tool, arguments), loop)
        return await asyncio.wrap_future(future)

    async def _call(self, server: str, tool: str, arguments: dict[str, Any]) -> str:
        state = self._states[server]
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
            raise McpToolError(f"the connection to {server} failed: {_describe(exc)}") from None
        finally:
            state.calls.discard(task)
        text = result_text(result)
        if result.isError:
            raise McpToolError(text)
        return text

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

        async with self._transport(state.config) as (read, write):
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
                    parameters=_parameters(remote.inputSchema),
                    function=self._caller(config.name, remote.name),
                    needs_approval=not config.trusted(remote.name),
                    timeout_s=config.timeout_s,
                    validator=_validator(remote.inputSchema),
                    group=config.name,
                    read_only=read_only,
                )
            )
        return made

    def _caller(self, server: str, tool: str) -> Callable[..., Coroutine[Any, Any, str]]:
        async def call_mcp_tool(**arguments: Any) -> str:
            return await self.call(server, tool, arguments)

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


def result_text(result: types.CallToolResult) -> str:
    """A tool result as the text the model reads: text, JSON, and a line per image/resource."""
    parts: list[str] = []
    for item in result.content:
        if isinstance(item, types.TextContent):
            parts.append(item.text)
        elif isinstance(item, types.ImageContent | types.AudioContent):
            size = len(item.data) * 3 // 4
            kind = "image" if isinstance(item, types.ImageContent) else "audio"
            parts.append(f"[{kind}: {item.mimeType}, about {size:,} bytes; not shown here]")
        elif isinstance(item, types.ResourceLink):
            parts.append(f"[resource link: {item.name} <{item.uri}>]")
        elif isinstance(item, types.EmbeddedResource):
            resource = item.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[resource: {resource.uri} ({resource.mimeType or 'binary'})]")
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent, ensure_ascii=False))
    return "\n\n".join(parts) or "(no output)"


def _parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """The tool's input schema as the provider's `parameters` (always an object schema)."""
    shown = dict(schema or {})
    shown.setdefault("type", "object")
    shown.setdefault("properties", {})
    return shown


def _validator(schema: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Check arguments against the server's JSON schema (a broken schema checks nothing)."""
    try:
        cls = validators.validator_for(schema)
        cls.check_schema(schema)
        checker: Any = cls(schema)
    except (schema_errors.SchemaError, TypeError):
        checker = None

    def validate(arguments: dict[str, Any]) -> dict[str, Any]:
        if checker is not None:
            problems = [
                f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}"
                for e in sorted(checker.iter_errors(arguments), key=lambda e: list(e.path))
            ]
            if problems:
                raise ToolArgumentsError(problems[:10])
        return arguments

    return validate


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
