"""OpenAI-style chat requests as Parley runs: check the body, store it, start the run. No HTTP.

A request carries its whole history; it is sent to the provider as the client wrote it (text
Parley cannot store cleaned as everywhere), and saved as a conversation of the caller's: a new
one, or the one named by `conversation_id` (then the request's trailing messages continue it).
Parley's own tools (`{"type": "parley", "name": ...}`) run on the server; ordinary function
tools go to the model, and its tool calls come back for the client to run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from storage.api_turns import ApiTurnRows, StoredRequestMessage, write_api_turn
from storage.db import storable_text
from storage.field_limits import MODEL, FieldTooLong, check
from webapp.app.chat import ChatService
from webapp.app.limits import LimitReached, check_limits
from webapp.app.runs import Run
from webapp.app.turn_runs import RateLimitRefused, RunSpec, TurnRefused, TurnUpdate, plan_model
from webapp.core.engine import TurnRequest
from webapp.core.history import auto_title
from webapp.core.messages import ChatMessage
from webapp.core.params import ParamError
from webapp.core.turn import TurnProgress
from webapp.tools.selection import ToolSelectionError

ROLES = {"system", "developer", "user", "assistant", "tool"}
MAX_MESSAGES = 2000
MAX_FUNCTION_TOOLS = 128
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Accepted and not used: they change nothing a Parley answer depends on.
IGNORED = ("user", "store", "metadata", "service_tier", "parallel_tool_calls")
TAKEN = (
    "model",
    "messages",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "conversation_id",
    "max_completion_tokens",
    *IGNORED,
)


class ApiRequestError(Exception):
    """A request Parley refuses before anything is stored or sent (OpenAI's error fields)."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        status: int = 400,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.code, self.kind = (
            message,
            param,
            status,
            code,
            kind,
        )


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """A checked /v1/chat/completions body."""

    model_id: str  # as the client named it (echoed back)
    provider: str
    model: str
    messages: list[ChatMessage]  # sent as is (after cleaning)
    stored: list[StoredRequestMessage]  # the request's messages as the conversation keeps them
    system_prompt: str
    params: dict[str, Any]  # raw request parameters, checked by webapp.core.params
    stream: bool = False
    include_usage: bool = False
    parley_tools: tuple[str, ...] = ()
    tool_choice: str = "auto"  # for Parley's tools
    function_tools: list[dict[str, Any]] = field(default_factory=list)
    function_choice: Any = None  # the client's tool_choice, sent as is with function tools
    conversation_id: str | None = None


def split_model(model_id: str, providers: Mapping[str, Any], default: str) -> tuple[str, str]:
    """`provider/model` → (provider, model); an id without a known provider prefix is the
    default provider's (its own ids may contain slashes, like Qwen/Qwen3-32B)."""
    head, slash, rest = model_id.partition("/")
    if slash and head in providers and rest:
        return head, rest
    return default, model_id


def _text(content: Any, where: str) -> tuple[Any, str, list[dict[str, Any]]]:
    """A message's content as sent, its text as stored, and its image links as attachments."""
    if content is None:
        return "", "", []
    if isinstance(content, str):
        clean = storable_text(content)
        return clean, clean, []
    if not isinstance(content, list):
        raise ApiRequestError(
            f"{where}.content must be a string or a list of parts", param=f"{where}.content"
        )
    parts, texts, links = [], [], []
    for number, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise ApiRequestError(
                f"{where}.content[{number}] must be an object with a type", param=f"{where}.content"
            )
        if part["type"] == "text":
            text = storable_text(str(part.get("text") or ""))
            texts.append(text)
            parts.append({**part, "text": text})
        else:
            parts.append(part)
            url = (
                (part.get(part["type"]) or {}) if isinstance(part.get(part["type"]), dict) else {}
            ).get("url", "")
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                kind = "video" if part["type"] == "video_url" else "image"
                links.append({"kind": kind, "url": url[:2000]})
    return parts, "\n\n".join(texts), links


def parse_messages(
    raw: Any, max_chars: int
) -> tuple[list[ChatMessage], list[StoredRequestMessage], str]:
    """The messages to send, the ones to store (system prompts apart) and the system prompt."""
    if not isinstance(raw, list) or not raw:
        raise ApiRequestError("messages must be a non-empty list", param="messages")
    if len(raw) > MAX_MESSAGES:
        raise ApiRequestError(
            f"messages has {len(raw):,} items; the limit is {MAX_MESSAGES:,}", param="messages"
        )
    sent: list[ChatMessage] = []
    stored: list[StoredRequestMessage] = []
    system: list[str] = []
    for number, message in enumerate(raw):
        where = f"messages[{number}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ApiRequestError(
                f"{where} must be an object with a role: "
                "system, developer, user, assistant or tool",
                param=where,
            )
        role = "system" if message["role"] == "developer" else message["role"]
        content, text, links = _text(message.get("content"), where)
        if len(text) > max_chars:
            raise ApiRequestError(
                f"{where} is {len(text):,} characters; the limit is "
                f"{max_chars:,} (MAX_MESSAGE_CHARS)",
                param=where,
            )
        item: ChatMessage = {"role": role, "content": content}
        calls = message.get("tool_calls")
        if role == "assistant" and calls:
            if not isinstance(calls, list):
                raise ApiRequestError(f"{where}.tool_calls must be a list", param=where)
            item["tool_calls"] = calls
        if role == "tool":
            item["tool_call_id"] = str(message.get("tool_call_id") or "")[:256]
        sent.append(item)
        if role == "system":
            system.append(text)
            continue
        stored.append(
            StoredRequestMessage(
                role=role,
                content=text,
                tool_calls=item.get("tool_calls"),
                tool_call_id=item.get("tool_call_id"),
                name=str(message["name"])[:128] if role == "tool" and message.get("name") else None,
                attachments=links or None,
            )
        )
    if sent[-1]["role"] not in ("user", "tool"):
        raise ApiRequestError(
            "the last message must be from the user (or a tool result)", param="messages"
        )
    return sent, stored, "\n\n".join(system)


def parse_tools(raw: Any, choice: Any) -> tuple[tuple[str, ...], str, list[dict[str, Any]], Any]:
    """Parley's tools (name, tool_choice) and the client's function tools (sent as they are)."""
    if raw is None:
        return (), "auto", [], choice
    if not isinstance(raw, list) or len(raw) > MAX_FUNCTION_TOOLS:
        raise ApiRequestError(
            f"tools must be a list of at most {MAX_FUNCTION_TOOLS} tools", param="tools"
        )
    parley: list[str] = []
    functions: list[dict[str, Any]] = []
    for number, tool in enumerate(raw):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "parley" and isinstance(tool.get("name"), str):
            parley.append(tool["name"])
        elif (
            kind == "function"
            and isinstance(tool.get("function"), dict)
            and TOOL_NAME.match(str(tool["function"].get("name", "")))
        ):
            functions.append(tool)
        else:
            raise ApiRequestError(
                f'tools[{number}] must be {{"type": "parley", "name": ...}} (a Parley tool) or '
                '{"type": "function", "function": {"name": ...}} with a name of letters, '
                "digits, _ and -",
                param=f"tools[{number}]",
            )
    if parley and functions:
        raise ApiRequestError(
            "a request may offer Parley's tools or its own function tools, not both", param="tools"
        )
    if not parley:
        return (), "auto", functions, choice
    if choice is None or choice in ("auto", "none", "required"):
        return tuple(parley), choice or "auto", [], None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return tuple(parley), str(choice["function"].get("name", "")), [], None
    raise ApiRequestError(
        'tool_choice must be "auto", "none", "required" or '
        '{"type": "function", "function": {"name": ...}}',
        param="tool_choice",
    )


def parse_request(
    body: Any, *, providers: Mapping[str, Any], default_provider: str, max_chars: int
) -> ApiRequest:
    """Check a /v1/chat/completions body; raise ApiRequestError naming the field."""
    if not isinstance(body, dict):
        raise ApiRequestError("the request body must be a JSON object")
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id.strip():
        raise ApiRequestError(
            "model is required: one of the ids GET /v1/models lists", param="model"
        )
    try:
        check(MODEL, model_id)
    except FieldTooLong as exc:
        raise ApiRequestError(str(exc), param="model") from None
    provider, model = split_model(model_id.strip(), providers, default_provider)
    messages, stored, system = parse_messages(body.get("messages"), max_chars)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ApiRequestError("stream_options must be an object", param="stream_options")
    conversation_id = body.get("conversation_id")
    if conversation_id is not None and not isinstance(conversation_id, str):
        raise ApiRequestError("conversation_id must be a string", param="conversation_id")
    parley, choice, functions, function_choice = parse_tools(
        body.get("tools"), body.get("tool_choice")
    )
    params = {k: v for k, v in body.items() if k not in TAKEN}
    if "max_completion_tokens" in body and "max_tokens" not in body:
        params["max_tokens"] = body["max_completion_tokens"]
    return ApiRequest(
        model_id=model_id,
        provider=provider,
        model=model,
        messages=messages,
        stored=stored,
        system_prompt=system,
        params=params,
        stream=body.get("stream") is True,
        include_usage=bool((options or {}).get("include_usage")),
        parley_tools=parley,
        tool_choice=choice,
        function_tools=functions,
        function_choice=function_choice,
        conversation_id=conversation_id or None,
    )


class ApiTurns:
    """Starts /v1 requests as runs through the chat service's run engine."""

    def __init__(self, service: ChatService) -> None:
        self.service = service

    async def start(
        self, request: ApiRequest, *, user_id: int, username: str, limited: bool
    ) -> Run:
        """Store the request and start its run; TurnRefused/ParamError/ApiRequestError when it
        cannot start (nothing stored or sent). `limited`: the user has usage limits to check.

        Long: one refusal-first sequence (body, limits, model, then the rows and the run) whose
        steps share the request's values; nothing is written before every check passed."""
        service = self.service
        plan = plan_model(
            service.settings,
            service.capabilities,
            provider_name=request.provider,
            model=request.model,
            params=request.params,
            api_keys={},
        )
        try:
            selection = service.tool_turns.select(
                request.parley_tools, request.tool_choice, plan.model, plan.caps.tools
            )
        except ToolSelectionError as exc:
            raise TurnRefused(str(exc)) from None
        tools_sent = bool(selection.names or request.function_tools)
        sent = plan.request_params(tools_sent=tools_sent)
        if selection.names and sent.get("n", 1) > 1:
            sent.pop("n")  # the tool loop follows one answer
        if request.function_tools:
            sent["tools"] = request.function_tools
            if request.function_choice is not None:
                sent["tool_choice"] = request.function_choice
        n = int(sent.get("n", 1))
        stored_params = {
            **plan.clean,
            "tools": list(selection.names),
            "tool_choice": request.tool_choice,
        }
        title = auto_title(
            next((m.content for m in request.stored if m.role == "user"), "") or "API request"
        )
        new_messages = request.stored
        if request.conversation_id:  # the conversation has the history: keep what is new
            last_answer = max(
                (i for i, m in enumerate(new_messages) if m.role == "assistant"), default=-1
            )
            new_messages = new_messages[last_answer + 1 :]

        def work(session: Any) -> ApiTurnRows:
            if limited:
                try:
                    check_limits(session=session, user_id=user_id)
                except LimitReached as exc:
                    raise RateLimitRefused(str(exc)) from None
            return write_api_turn(
                session=session,
                user_id=user_id,
                conversation_id=request.conversation_id,
                title=title,
                system_prompt=request.system_prompt,
                provider=plan.provider.name,
                model=plan.model,
                parameters=stored_params,
                sent_parameters=sent,
                messages=new_messages,
                answers=n,
                owner=service.runs.cluster.process_id,
            )

        reservation = await service.reserve(user_id)
        try:
            prepare = service.write_ahead(work)
        except BaseException:
            reservation.release()
            raise

        def start(rows: ApiTurnRows) -> list[Run]:
            tools = service.tool_turns.setup(
                selection,
                user_id,
                rows.conversation_id,
                interactive=False,
                reasoning_passback=plan.caps.reasoning_passback,
                images=plan.caps.vision is True,
            )
            spec = RunSpec(
                client=service.clients[plan.provider.name],
                request=TurnRequest(
                    model=plan.model, messages=request.messages, params=sent, api_key=plan.api_key
                ),
                provider=plan.provider.name,
                username=username,
                tools=tools,
                recorded={**sent, **({"tools": list(selection.names)} if tools else {})},
            )
            update = TurnUpdate(
                rows.conversation_id,
                [],
                rows.answer_ids,
                TurnProgress(n=n),
                plan.provider.label,
                plan.model,
                record_missing_results=not request.function_tools,
            )
            return [
                service.runs.launch(
                    reservation,
                    rows.conversation_id,
                    update,
                    lambda run: service.recorder.execute(run, spec),
                    kind="api",
                )
            ]

        [run] = await service.launch_when_prepared(reservation, prepare, start)
        return run


__all__ = [
    "ApiRequest",
    "ApiRequestError",
    "ApiTurns",
    "ParamError",
    "parse_request",
    "split_model",
]
