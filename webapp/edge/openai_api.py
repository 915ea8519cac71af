"""Parley's OpenAI-compatible API: GET /v1/models and POST /v1/chat/completions.

Starlette routes on the same server, off Gradio's queue. Each request runs through the run
engine (saved as a conversation of the caller's, quotas and limits apply) and streams as the
OpenAI spec says: `data:` chunks, a usage chunk with `stream_options.include_usage`, `[DONE]`.
Errors use OpenAI's error JSON with the status the provider gave. A client that goes away
only stops watching: the answer goes on and is saved.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from storage import repository as repo
from storage.api_keys import KEY_PREFIX
from storage.db import StorageUnavailable
from storage.schemas import StoredUsage
from webapp.app.api_keys import ApiKeyAuth
from webapp.app.api_turns import ApiRequestError, ApiTurns, parse_request
from webapp.app.auth import Identity, NotSignedIn
from webapp.app.error_text import DATABASE_DOWN, user_message
from webapp.app.runs import Run, RunManager
from webapp.app.turn_runs import RateLimitRefused, TurnRefused, TurnUpdate
from webapp.config import Settings
from webapp.core.params import ParamError
from webapp.provider.catalog import ModelCatalog

API_INTERVAL_S = 0.1  # a streaming client gets at most 10 chunks a second
MAX_BODY_BYTES = 32 * 1024 * 1024
CONVERSATION_HEADER = "X-Parley-Conversation"


def error(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def provider_error(update: TurnUpdate) -> JSONResponse:
    """How a run that failed before any text is reported: the provider's status, our words."""
    failure = update.failure
    status = failure.status if failure is not None and failure.status else 502
    kind = {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "api_error" if status >= 500 else "invalid_request_error")
    code = failure.kind if failure is not None else "upstream_error"
    return error(status, user_message(update.error) or "the provider failed", kind=kind, code=code)


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: int
    username: str
    limited: bool  # has per-user usage limits (checked with the request's first rows)


class OpenAIApi:
    """The /v1 routes, bound to one Parley."""

    def __init__(
        self,
        *,
        settings: Settings,
        turns: ApiTurns,
        keys: ApiKeyAuth,
        identity: Identity,
        catalog: ModelCatalog,
        runs: RunManager,
        keyless: bool,
    ) -> None:
        self.settings = settings
        self.turns = turns
        self.keys = keys
        self.identity = identity
        self.catalog = catalog
        self.runs = runs
        self.keyless = keyless  # AUTH_MODE=none on loopback: the local user needs no key
        # A bare router, run ahead of the page's middleware (FastPath): each streamed chunk
        # would otherwise pass through seven layers written for HTML pages.
        self.app = Router(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            ],
            default=self.unknown,
        )

    async def unknown(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Any other /v1 path: 404 in OpenAI's shape."""
        await error(
            404,
            f"Unknown endpoint {scope.get('path', '')}: Parley serves "
            "GET /v1/models and POST /v1/chat/completions.",
            kind="not_found_error",
        )(scope, receive, send)

    async def caller(self, request: Request) -> Caller | JSONResponse:
        """Who is asking: the owner of the Bearer key, or the local user when none is needed."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if self.keyless and not token.startswith(KEY_PREFIX):
            token = ""  # SDKs insist on some key: on a keyless server any non-Parley one does
        if token:
            owner = await self.keys.owner(token)
            if owner is None:
                return error(
                    401,
                    "Incorrect API key: create one under Settings → API keys.",
                    kind="invalid_request_error",
                    code="invalid_api_key",
                )
            name = owner.username
        elif self.keyless:
            if cross_site(request):
                return error(
                    403,
                    "A web page on another site may not use this server's API.",
                    kind="permission_error",
                    code="cross_site",
                )
            name = self.identity.username(None)
        else:
            return error(
                401,
                "Missing API key: send Authorization: Bearer <key> (create a "
                "key under Settings → API keys).",
                code="invalid_api_key",
            )
        try:
            user = await self.identity.user(name)
        except StorageUnavailable:
            return error(503, DATABASE_DOWN, kind="api_error", code="database_unavailable")
        if user.disabled:
            return error(
                403,
                "This account is disabled: ask an admin to enable it.",
                kind="permission_error",
                code="account_disabled",
            )
        assert user.id is not None
        return Caller(user.id, user.username, bool(user.rpm_limit or user.daily_token_limit))

    async def models(self, request: Request) -> Response:
        """Every model of every configured provider, as `provider/model`."""
        caller = await self.caller(request)
        if isinstance(caller, JSONResponse):
            return caller
        data = [
            {"id": model_id, "object": "model", "created": 0, "owned_by": label}
            for model_id, label in await model_ids(self.settings, self.catalog)
        ]
        return JSONResponse({"object": "list", "data": data})

    async def chat_completions(self, request: Request) -> Response:
        """Run a chat completion, streamed or whole."""
        caller = await self.caller(request)
        if isinstance(caller, JSONResponse):
            return caller
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return error(413, f"The request body is over {MAX_BODY_BYTES // 2**20} MB.")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return error(400, f"The request body is not valid JSON: {exc}")
        try:
            parsed = parse_request(
                body,
                providers={p.name: p for p in self.settings.providers},
                default_provider=self.settings.default_provider,
                max_chars=self.settings.max_message_chars,
            )
            if request.headers.get(CONVERSATION_HEADER):
                parsed = _with_conversation(parsed, request.headers[CONVERSATION_HEADER])
            run = await self.turns.start(
                parsed, user_id=caller.user_id, username=caller.username, limited=caller.limited
            )
        except ApiRequestError as exc:
            return error(exc.status, exc.message, kind=exc.kind, param=exc.param, code=exc.code)
        except ParamError as exc:
            return error(400, "Invalid parameters: " + "; ".join(exc.errors))
        except RateLimitRefused as exc:
            return error(429, str(exc), kind="rate_limit_error", code="rate_limit_exceeded")
        except TurnRefused as exc:
            return error(400, str(exc))
        except repo.InvalidId:
            return error(400, "conversation_id is malformed.", param="conversation_id")
        except repo.NotFound:
            return error(
                404,
                "No such conversation: it does not exist or is not yours.",
                kind="not_found_error",
                param="conversation_id",
            )
        except (StorageUnavailable, NotSignedIn):
            return error(503, DATABASE_DOWN, kind="api_error", code="database_unavailable")
        headers = {CONVERSATION_HEADER: run.snapshot.conversation_id}
        if parsed.stream:
            return await self._streamed(run, parsed.model_id, parsed.include_usage, headers)
        return await self._whole(run, parsed.model_id, headers)

    async def _whole(self, run: Run, model_id: str, headers: dict[str, str]) -> Response:
        async for _ in self.runs.watch([run], 3600.0):
            pass
        update: TurnUpdate = run.snapshot
        if update.state == "error" and not _any_output(update):
            return provider_error(update)
        return JSONResponse(completion(run, model_id), headers=headers)

    async def _streamed(
        self, run: Run, model_id: str, include_usage: bool, headers: dict[str, str]
    ) -> Response:
        frames = self.runs.watch([run], API_INTERVAL_S)
        update: TurnUpdate = run.snapshot
        # Headers wait for the first text (or the end), so a failure before any answer gets
        # the provider's status instead of a 200 with an error inside.
        last = False
        async for last in frames:
            if last or _any_output(update):
                break
        if last and update.state == "error" and not _any_output(update):
            return provider_error(update)
        chunks = Chunks(run, model_id, include_usage)

        async def body() -> AsyncIterator[bytes]:
            try:
                yield chunks.next(last)
                if not last:
                    async for done in frames:
                        piece = chunks.next(done)
                        if piece:
                            yield piece
            finally:
                await frames.aclose()  # only stops watching: the run goes on

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


async def model_ids(settings: Settings, catalog: ModelCatalog) -> list[tuple[str, str]]:
    """(`provider/model`, provider label) for every model of every configured provider."""
    found = []
    for provider in settings.providers:
        listed = await catalog.models(provider.name)
        found += [(f"{provider.name}/{model}", provider.label) for model in listed.models]
    return found


def cross_site(request: Request) -> bool:
    """A request a browser sent from another site's page (a keyless server must refuse it:
    with no key to ask for, a page's form post could otherwise spend the user's tokens)."""
    fetch_site = request.headers.get("sec-fetch-site", "")
    if fetch_site in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1].rstrip("/") != host


class FastPath:
    """Sends the streaming endpoints (/v1, the live answer feed) straight to their own routers,
    past the HTML page's middleware (the Host check stays outside); everything else goes on
    to the page's stack."""

    def __init__(self, app: ASGIApp, routes: dict[str, ASGIApp]) -> None:
        self.app = app
        self.routes = tuple(routes.items())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = str(scope.get("path", ""))
            for prefix, app in self.routes:
                if path.startswith(prefix):
                    await app(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _with_conversation(parsed: Any, conversation_id: str) -> Any:
    return replace(parsed, conversation_id=conversation_id.strip())


def _any_output(update: TurnUpdate) -> bool:
    progress = update.progress
    return bool(progress.rounds) or any(
        c.content or c.reasoning or c.tool_calls for c in progress.choices
    )


def answer_texts(update: TurnUpdate, index: int) -> tuple[str, str]:
    """A choice's answer text and reasoning so far (a tool-using answer's rounds joined)."""
    progress = update.progress
    choice = progress.choices[index]
    if index or not progress.rounds:
        return choice.content, choice.reasoning
    contents = [r.content for r in progress.rounds if r.content] + (
        [choice.content] if choice.content else []
    )
    reasonings = [r.reasoning for r in progress.rounds if r.reasoning] + (
        [choice.reasoning] if choice.reasoning else []
    )
    return "\n\n".join(contents), "\n\n".join(reasonings)


def _finish_reason(update: TurnUpdate, index: int) -> str:
    choice = update.progress.choices[index]
    if (
        choice.tool_calls
        and not update.progress.rounds
        and not choice.content
        and (not update.record_missing_results)
    ):
        return "tool_calls"
    reason = choice.finish_reason or "stop"
    return (
        "tool_calls"
        if reason == "tool_calls" and not update.record_missing_results
        else (reason if reason in ("stop", "length", "content_filter", "tool_calls") else "stop")
    )


def _tool_calls(update: TurnUpdate, index: int) -> list[dict[str, Any]] | None:
    """The model's calls of the client's own function tools (Parley's ran on the server)."""
    if update.record_missing_results:
        return None
    calls = update.progress.choices[index].tool_calls
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ] or None


def usage_of(update: TurnUpdate) -> dict[str, Any] | None:
    """OpenAI's usage object from the run's figures (summed over tool rounds)."""
    progress = update.progress
    found: list[StoredUsage | None] = [r.usage for r in progress.rounds]
    found.append(progress.stored_usage())
    usages: list[StoredUsage] = [u for u in found if u]
    if not usages:
        return None
    prompt = sum(u.get("prompt_tokens", 0) for u in usages)
    completion = sum(u.get("completion_tokens", 0) for u in usages)
    reasoning = sum(u.get("reasoning_tokens", 0) for u in usages)
    result: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    if any(u.get("estimated") for u in usages):
        result["estimated"] = True
    return result


def completion(run: Run, model_id: str) -> dict[str, Any]:
    """The whole answer as a chat.completion object."""
    update: TurnUpdate = run.snapshot
    choices = []
    for index in range(len(update.progress.choices[: update.progress.n])):
        content, reasoning = answer_texts(update, index)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reasoning:
            message["reasoning_content"] = reasoning
        if calls := _tool_calls(update, index):
            message["tool_calls"] = calls
        choices.append(
            {"index": index, "message": message, "finish_reason": _finish_reason(update, index)}
        )
    body: dict[str, Any] = {
        "id": f"chatcmpl-{run.id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": choices,
        "usage": usage_of(update),
        "parley": {"conversation_id": update.conversation_id, "state": update.state},
    }
    if update.error and update.state != "complete":
        body["parley"]["error"] = user_message(update.error)
    return body


class Chunks:
    """The SSE chunks of a streamed run: each frame sends only what is new."""

    def __init__(self, run: Run, model_id: str, include_usage: bool) -> None:
        self.run, self.update = run, run.snapshot
        self.include_usage = include_usage
        self.head = {
            "id": f"chatcmpl-{run.id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model_id,
        }
        n = self.update.progress.n
        self.sent = [(0, 0)] * n  # (content, reasoning) characters sent per choice
        self.started = [False] * n

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return (
            b"data: "
            + json.dumps({**self.head, "choices": choices, **extra}, ensure_ascii=False).encode()
            + b"\n\n"
        )

    def next(self, last: bool) -> bytes:
        """The bytes to send for this frame (b"" when nothing is new)."""
        out: list[bytes] = []
        deltas = []
        for index, (sent_text, sent_reasoning) in enumerate(self.sent):
            content, reasoning = answer_texts(self.update, index)
            delta: dict[str, Any] = {}
            if len(reasoning) > sent_reasoning:
                delta["reasoning_content"] = reasoning[sent_reasoning:]
            if len(content) > sent_text:
                delta["content"] = content[sent_text:]
            self.sent[index] = (len(content), len(reasoning))
            if delta:
                if not self.started[index]:
                    delta = {"role": "assistant", **delta}
                    self.started[index] = True
                deltas.append({"index": index, "delta": delta, "finish_reason": None})
        if deltas:
            out.append(self._chunk(deltas))
        if last:
            out.append(self._last())
        return b"".join(out)

    def _last(self) -> bytes:
        update = self.update
        out = []
        if update.state == "error" or (update.state != "complete" and update.error):
            kind = "api_error" if update.state == "error" else "stopped"
            out.append(
                b"data: "
                + json.dumps(
                    {
                        "error": {
                            "message": user_message(update.error) or update.state,
                            "type": kind,
                            "code": update.failure.kind if update.failure else update.state,
                        }
                    },
                    ensure_ascii=False,
                ).encode()
                + b"\n\n"
            )
        finals = []
        for index in range(len(self.sent)):
            delta: dict[str, Any] = {}
            if calls := _tool_calls(update, index):
                delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
            finals.append(
                {"index": index, "delta": delta, "finish_reason": _finish_reason(update, index)}
            )
        out.append(self._chunk(finals))
        if self.include_usage:
            out.append(self._chunk([], usage=usage_of(update)))
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)
