"""Parley as an MCP server: Streamable HTTP at /mcp, with Parley's own auth and tool set.

The tools: `chat` (one turn through the run engine, saved in the caller's history, as the
/chat API and the page do), `list_models` (the ids GET /v1/models lists), and the registry's
tools that need no approval (calculator, current_time, search_conversations over the caller's
own conversations, http_get where allowed). A tool that needs a person's approval is never
offered: an MCP caller has no person at hand to ask.

Who is calling is settled before any MCP handling, exactly as for /v1 (a per-user Bearer key;
none on a keyless loopback server), so an unauthenticated caller cannot even list the tools.
The caller reaches the handlers with the request (its ASGI scope), never through a global.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from storage import repository as repo
from storage.db import StorageUnavailable
from storage.field_limits import shown
from webapp.app.api_turns import split_model
from webapp.app.auth import NotSignedIn
from webapp.app.chat import ChatService, TurnRefused
from webapp.app.chat_request import NewMessage
from webapp.app.turn_runs import RateLimitRefused, TurnUpdate
from webapp.core.params import ParamError
from webapp.edge.openai_api import Caller, answer_texts, error, model_ids
from webapp.provider.catalog import ModelCatalog

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
CALLER_KEY = "parley.caller"  # the ASGI scope key the auth wrapper puts the caller under
WAIT_INTERVAL_S = 3600.0  # a chat call waits for the whole answer: no frames in between
PROGRESS_INTERVAL_S = 0.5  # unless the caller asked for progress: then at most twice a second
DATABASE_DOWN = "The database is not reachable; try again shortly."
OWN_TOOLS = ("chat", "list_models")

INSTRUCTIONS = (
    "Parley is a chat server for several LLM providers. `chat` asks one of its models (ids from "
    "`list_models`) and saves the exchange in the user's Parley history; pass the returned "
    "conversation_id to continue it. `search_conversations` finds the user's earlier "
    "conversations. The other tools run on the Parley server."
)

Authenticate = Callable[[Request], Awaitable[Caller | JSONResponse]]
Progress = Callable[[TurnUpdate], Awaitable["Progress | None"]]

CHAT_TOOL = types.Tool(
    name="chat",
    description=(
        "Ask one of Parley's models. The turn is saved in your Parley history; pass the "
        "returned conversation_id to continue that conversation (the model sees its earlier "
        "messages). Returns the answer and the conversation id."
    ),
    inputSchema={
        "type": "object",
        "properties": {
            "message": {"type": "string", "description": "Your message to the model."},
            "conversation_id": {
                "type": "string",
                "description": "A conversation of yours to continue (from an earlier chat "
                "call or search_conversations); leave it out to start a new one.",
            },
            "model": {
                "type": "string",
                "description": "A model id from list_models (provider/model); leave it out "
                "for the server's default model.",
            },
            "parameters": {
                "type": "object",
                "description": 'Request parameters, e.g. {"temperature": 0.2, "max_tokens": '
                '500}; "tools" (a list of Parley tool names the model may call) and '
                '"tool_choice" too.',
            },
        },
        "required": ["message"],
        "additionalProperties": False,
    },
    outputSchema={
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "reasoning": {"type": "string"},
            "conversation_id": {"type": "string"},
            "model": {"type": "string"},
            "state": {"type": "string"},
        },
        "required": ["answer", "conversation_id", "model", "state"],
    },
)

LIST_MODELS_TOOL = types.Tool(
    name="list_models",
    description="The models Parley can use, as ids to pass to chat (provider/model), and the "
    "default one.",
    inputSchema={"type": "object", "properties": {}, "additionalProperties": False},
    annotations=types.ToolAnnotations(readOnlyHint=True),
)


class ToolFailed(Exception):
    """A tool call that cannot be done; the message says why (sent as an MCP tool error)."""


def failed(message: str) -> types.CallToolResult:
    """An MCP tool error (`isError: true`) with a message for the caller."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], isError=True
    )


class McpServer:
    """The /mcp endpoint, bound to one Parley (an ASGI app)."""

    def __init__(
        self,
        *,
        service: ChatService,
        catalog: ModelCatalog,
        authenticate: Authenticate,
        default_tools: tuple[str, ...] = (),
    ) -> None:
        self.service = service
        self.catalog = catalog
        self.authenticate = authenticate
        self.default_tools = default_tools
        self.server: Server[Any, Request] = Server(
            "parley", version=parley_version(), instructions=INSTRUCTIONS
        )
        for name in OWN_TOOLS:
            if service.tools.get(name) is not None:
                log.warning("MCP: the registry's tool %r is hidden by Parley's own %r", name, name)
        self.server.list_tools()(self.list_tools)  # type: ignore[no-untyped-call]
        self.server.call_tool()(self.call_tool)
        # Stateless: each POST is a whole exchange, so no session outlives its request (nor
        # could one be picked up by another caller).
        self.sessions = StreamableHTTPSessionManager(app=self.server, stateless=True)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The session manager's task group: entered in the app's lifespan."""
        async with self.sessions.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope.get("path", "")).rstrip("/") != MCP_PATH:
            await error(404, "Parley's MCP endpoint is /mcp.", kind="not_found_error")(
                scope, receive, send
            )
            return
        caller = await self.authenticate(Request(scope, receive))
        if isinstance(caller, JSONResponse):
            if caller.status_code == 401:
                caller.headers["WWW-Authenticate"] = 'Bearer realm="parley"'
            await caller(scope, receive, send)
            return
        if scope.get("method") == "GET":
            # Stateless: the server never sends unasked, so it offers no event stream (which
            # would otherwise stay open for good); the spec's answer is 405.
            response = error(405, "Parley's MCP endpoint takes POST requests only.")
            response.headers["Allow"] = "POST"
            await response(scope, receive, send)
            return
        scope[CALLER_KEY] = caller
        await self.sessions.handle_request(scope, receive, send)

    def caller(self) -> Caller:
        """Who sent the request being handled (set by __call__ on its scope)."""
        request = self.server.request_context.request
        caller = request.scope.get(CALLER_KEY) if request is not None else None
        if not isinstance(caller, Caller):  # cannot happen behind __call__
            raise ToolFailed("Not signed in.")
        return caller

    def registry_tools(self) -> list[types.Tool]:
        """The registry's tools that need no approval, in the MCP shape."""
        return [
            types.Tool(name=tool.name, description=tool.description, inputSchema=tool.parameters)
            for tool in self.service.tool_turns.unattended()
            if tool.name not in OWN_TOOLS
        ]

    async def list_tools(self) -> list[types.Tool]:
        """chat, list_models and the registry's tools that need no approval."""
        return [CHAT_TOOL, LIST_MODELS_TOOL, *self.registry_tools()]

    async def call_tool(
        self, name: str, arguments: dict[str, Any]
    ) -> types.CallToolResult | tuple[list[types.TextContent], dict[str, Any]]:
        """Run one tool for the caller; every refusal or failure is a tool error."""
        try:
            caller = self.caller()
            if name == "chat":
                return await self.chat(caller, arguments)
            if name == "list_models":
                return await self.list_models()
            return await self.run_registry_tool(caller, name, arguments)
        except ToolFailed as exc:
            return failed(str(exc))
        except (StorageUnavailable, NotSignedIn):
            return failed(DATABASE_DOWN)
        except Exception:
            log.exception("MCP tool %s failed", name)
            return failed(f"{name} failed on the server (details in its log).")

    async def list_models(self) -> tuple[list[types.TextContent], dict[str, Any]]:
        settings = self.service.settings
        models = [
            {"id": model_id, "provider": label}
            for model_id, label in await model_ids(settings, self.catalog)
        ]
        default = "/".join(default_model(self.service))
        listed = "\n".join(m["id"] for m in models) or "(none listed)"
        text = f"Default: {default}\n{listed}"
        return [types.TextContent(type="text", text=text)], {"default": default, "models": models}

    async def run_registry_tool(
        self, caller: Caller, name: str, arguments: dict[str, Any]
    ) -> types.CallToolResult:
        """A registry tool, run as in a turn (validated, timed out, its failures as text)."""
        result = await self.service.tool_turns.run_unattended(
            caller.user_id, name, json.dumps(arguments)
        )
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=result.content)],
            isError=result.status != "done",
        )

    async def chat(
        self, caller: Caller, arguments: dict[str, Any]
    ) -> types.CallToolResult | tuple[list[types.TextContent], dict[str, Any]]:
        """One turn, saved in the caller's history; waits for the whole answer.

        Long: the MCP tool's arguments checked one by one (each with its own error for the MCP
        client) before one call of ChatService.unattended_turn."""
        service, settings = self.service, self.service.settings
        conversation_id = str(arguments.get("conversation_id") or "").strip() or None
        params = dict(arguments.get("parameters") or {})
        tools = params.pop("tools", None)  # None: the conversation's (or the server's) default
        tool_choice = params.pop("tool_choice", None)
        if tools is not None and not (
            isinstance(tools, list) and all(isinstance(t, str) for t in tools)
        ):
            raise ToolFailed('parameters.tools must be a list of tool names, e.g. ["calculator"]')
        if tool_choice is not None and not isinstance(tool_choice, str):
            raise ToolFailed(
                'parameters.tool_choice must be "auto", "none", "required" or a tool name'
            )
        providers = {p.name: p for p in settings.providers}
        model_id = str(arguments.get("model") or "").strip()
        if model_id:
            provider, model = split_model(model_id, providers, settings.default_provider)
        else:
            provider, model = default_model(service)
        user_id = caller.user_id
        try:
            turn = await service.unattended_turn(
                user_id=user_id,
                conversation_id=conversation_id,
                provider=provider,
                model=model,
                params=params,
                tools=tools,
                tool_choice=tool_choice,
                default_tools=self.default_tools,
            )
            run = await service.start_turn(
                user_id=user_id,
                conversation_id=conversation_id,
                action=NewMessage(str(arguments.get("message", ""))),
                turn=turn,
                username=caller.username,
            )
        except repo.InvalidId:
            raise ToolFailed(
                f"conversation_id {shown(conversation_id or '')} is malformed: use one an "
                "earlier chat call returned, or leave it out to start a new conversation."
            ) from None
        except repo.NotFound:
            raise ToolFailed(
                f"No conversation {shown(conversation_id or '')}: it does not exist or is not "
                "yours. Leave conversation_id out to start a new one."
            ) from None
        except ParamError as exc:
            raise ToolFailed("Invalid parameters: " + "; ".join(exc.errors)) from None
        except RateLimitRefused as exc:
            raise ToolFailed(f"Usage limit reached: {exc}") from None
        except TurnRefused as exc:
            raise ToolFailed(str(exc)) from None
        # A caller that goes away only stops waiting: the run goes on and is saved.
        report = self.progress_reporter()
        interval = PROGRESS_INTERVAL_S if report is not None else WAIT_INTERVAL_S
        async for last in service.runs.watch([run], interval):
            if report is not None and not last:
                report = await report(run.snapshot)
        return answer_result(run.snapshot, provider, model)

    def progress_reporter(self) -> Progress | None:
        """With a progressToken from the caller: a function sending the answer's new text as
        progress notifications (progress = characters so far); None without one."""
        context = self.server.request_context
        token = context.meta.progressToken if context.meta is not None else None
        if token is None:
            return None
        sent = 0

        async def report(update: TurnUpdate) -> Progress | None:
            nonlocal sent
            answer, _ = answer_texts(update, 0)
            if len(answer) <= sent:
                return report
            try:
                await context.session.send_progress_notification(
                    token,
                    progress=float(len(answer)),
                    message=answer[sent:],
                    related_request_id=str(context.request_id),
                )
            except Exception:  # the caller went away: the run goes on, reporting stops
                log.debug("MCP progress not sent", exc_info=True)
                return None
            sent = len(answer)
            return report

        return report


def parley_version() -> str:
    """Parley's installed version (the server's version in the MCP handshake)."""
    try:
        return importlib.metadata.version("parley")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


def default_model(service: ChatService) -> tuple[str, str]:
    """(provider, model) a chat call without a model uses."""
    settings = service.settings
    return settings.default_provider, settings.default_model_for(settings.default_provider)


def answer_result(
    update: TurnUpdate, provider: str, model: str
) -> types.CallToolResult | tuple[list[types.TextContent], dict[str, Any]]:
    """The finished run as the chat tool's result; a failed one as a tool error."""
    answer, reasoning = answer_texts(update, 0)
    if update.state == "error":
        so_far = f"\n\nThe answer so far:\n{answer}" if answer else ""
        return failed(
            f"The model's provider failed: {update.error or 'no answer'} "
            f"(conversation_id {update.conversation_id}).{so_far}"
        )
    structured = {
        "answer": answer,
        "reasoning": reasoning,
        "conversation_id": update.conversation_id,
        "model": f"{provider}/{update.model or model}",
        "state": update.state,
    }
    text = answer
    if update.error:  # stopped or cut short: say so beside what there is
        text += ("\n\n" if text else "") + f"[{update.state}] {update.error}"
    return [types.TextContent(type="text", text=text)], structured
