"""The one turn orchestrator under Chat, Compare and the APIs: plan a model's request, then run
it as a server-owned run, persisting as it streams. No Gradio.

Planning (`plan_model`) does the checks every turn shares: provider, model id, capabilities,
parameters, key. Chat and Compare each write their own first rows (a chat turn's question and
answers, a comparison's columns), then hand each generation to `TurnRecorder.execute`, which
streams it into a `TurnUpdate`, saves the partial answer about once a second and at every
tool round, and saves the final state whatever ends it (its end, an error, Stop, shutdown).
Database work runs in threads in short sessions; no session is held across an `await`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlmodel import Session

from storage import message_rows
from storage.db import storable_text
from storage.field_limits import (
    MODEL,
    PROVIDER,
    TEXT_MAX,
    FieldLimit,
    FieldTooLong,
    check,
    message_limit,
)
from storage.models import Message
from storage.schemas import NextAnswer
from webapp.app.runs import Run
from webapp.app.tool_turns import stored_calls, tool_rows
from webapp.config import ProviderConfig, Settings
from webapp.core.capabilities import Capabilities, CapabilityTable
from webapp.core.engine import StreamingClient, ToolSetup, TurnRequest, run_turn
from webapp.core.messages import (
    RequestSized,
    RoundStarted,
    StreamStarted,
    ToolCallFinished,
    ToolRoundLimit,
)
from webapp.core.params import normalize, request_params
from webapp.core.turn import TurnProgress
from webapp.observability import Metrics, TurnRecord, log_turn
from webapp.provider.client import ProviderError
from webapp.provider.error_info import ErrorInfo, stored_error

log = logging.getLogger(__name__)
T = TypeVar("T")
Db = Callable[[Callable[[Session], T]], Awaitable[T]]

UPDATE_INTERVAL_S = 0.1  # a viewer renders at most 10 frames per second per run
MAX_UPDATE_INTERVAL_S = 0.4  # ... and at least 2.5 per second, however long the chat
PERSIST_INTERVAL_S = 0.8  # streaming answers' text is saved this often (what SIGKILL loses)
INTERNAL_ERROR = "Parley hit an internal error; the partial answer is kept."
# Events that change nothing a viewer shows: they must not wake viewers, whose frame budget
# (UPDATE_INTERVAL_S) would then be spent just before the first token arrives.
UNSEEN = (RequestSized, StreamStarted)
LENGTH_NOTE = "The answer hit the max_tokens limit and was cut off."


def update_interval(messages: int, per_message_s: float) -> float:
    """Seconds between a viewer's frames for a conversation of `messages` stored messages."""
    return min(MAX_UPDATE_INTERVAL_S, UPDATE_INTERVAL_S + messages * per_message_s)


class TurnRefused(Exception):
    """The turn cannot start; the message says why and how to fix it. Nothing was sent.

    With `params`, the message is a template (kept in `template`), so the page can show it in
    the user's language: `t(template, lang).format(**params)`.
    """

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message.format(**params) if params else message)
        self.template = message
        self.params = params


class RateLimitRefused(TurnRefused):
    """A turn refused by a usage limit (requests per minute, tokens per day, live runs)."""


class ContextFull(TurnRefused):
    """The request would not fit the model's context window; the page offers to drop the
    oldest turns or to start a new chat with a summary."""


CONTEXT_FULL = (
    "This conversation (about {used} tokens with your message) would not fit "
    "{model}'s context of {limit} tokens. Drop the oldest turns, or start a new chat "
    "with a summary (the buttons under the box); your message stays in the box."
)


def checked(limit: FieldLimit, value: str) -> str:
    """`value` if it fits its field (storage.field_limits); TurnRefused otherwise."""
    try:
        return check(limit, value)
    except FieldTooLong as exc:
        raise TurnRefused(str(exc)) from None


def user_text(
    what: str,
    text: str,
    max_chars: int,
    fix: str = "Shorten it, or attach long material as a file later.",
) -> str:
    """A text a person wrote (message, prompt, system prompt), ready to store and send.

    NUL and lone surrogates are replaced first (no database stores them, and a lone surrogate
    breaks the request), so what is stored, sent and shown agree; then the length is checked.
    """
    clean = storable_text(text)
    limit = message_limit(max_chars, what)
    return checked(
        FieldLimit(limit.label, limit.max_chars, one_line=False, setting=limit.setting, fix=fix),
        clean,
    )


@dataclass(frozen=True, slots=True)
class ModelPlan:
    """One model's request, checked: provider, model, capabilities, parameters, key."""

    provider: ProviderConfig
    model: str
    caps: Capabilities
    clean: dict[str, Any]  # the user's parameters, validated (stored with the conversation)
    api_key: str = field(repr=False)

    def request_params(self, *, tools_sent: bool = False) -> dict[str, Any]:
        """What is sent: only the parameters this provider and model accept."""
        return request_params(self.clean, self.caps, self.provider.kind, tools_sent=tools_sent)


def plan_model(
    settings: Settings,
    capabilities: CapabilityTable,
    *,
    provider_name: str,
    model: str,
    params: Mapping[str, Any],
    api_keys: Mapping[str, str],
    what: str = "",
) -> ModelPlan:
    """Check and resolve one model's request; raise TurnRefused or ParamError with the fix."""
    try:
        provider = settings.provider(checked(PROVIDER, provider_name))
    except ValueError as exc:
        raise TurnRefused(str(exc)) from None
    chosen = checked(MODEL, model.strip() or settings.default_model_for(provider.name))
    if not chosen:
        where = f" {what}" if what else ""
        raise TurnRefused(f"Choose a model{where} for {provider.label} (or type a model id).")
    clean = normalize(dict(params))  # raises ParamError, shown to the user as is
    caps = capabilities.lookup(chosen, provider.kind, provider.name)
    return ModelPlan(provider, chosen, caps, clean, api_key_for(provider, api_keys))


def api_key_for(provider: ProviderConfig, pasted: Mapping[str, str]) -> str:
    """The key to use: one pasted in this browser session wins over the configured one."""
    key = pasted.get(provider.name, "").strip() or provider.api_key.get()
    if not key and provider.kind != "openai":
        raise TurnRefused(
            f"No API key for {provider.label}: set {provider.key_env} in .env (then restart), "
            "or paste a key under Settings → API key (kept for this browser session only)."
        )
    return key


@dataclass(slots=True)
class TurnUpdate:
    """The live state of one run, which its viewers render (and the record of how it ended)."""

    conversation_id: str
    path: list[Message]  # the active path up to and including the user message
    assistant_ids: list[str]
    progress: TurnProgress
    provider_label: str
    model: str
    state: str = "streaming"  # streaming | complete | stopped | error | interrupted
    error: ErrorInfo | str = ""  # a provider error as data, or one of Parley's notes (English)
    notes: list[str] = field(default_factory=list)  # things the user should know (warnings)
    failure: ProviderError | None = None  # the provider's error, when that is how it ended
    # False when the caller runs the tools itself (the /v1 API's function tools): the calls are
    # stored without made-up results, since the caller's real ones come in its next request.
    record_missing_results: bool = True


@dataclass(frozen=True, slots=True)
class RunSpec:
    """How one run talks to its provider and what it records."""

    client: StreamingClient
    request: TurnRequest
    provider: str  # the provider's name (metrics and logs)
    username: str  # for the request log
    tools: ToolSetup | None = None
    recorded: dict[str, Any] = field(default_factory=dict)  # parameters stored per answer row


class TurnRecorder:
    """Runs a planned generation and records it: the one execute/save-round/finish path."""

    def __init__(
        self, db: Db[Any], metrics: Metrics, persist_interval_s: float = PERSIST_INTERVAL_S
    ) -> None:
        self._db = db
        self.metrics = metrics
        self.partials = PartialSaver(db, persist_interval_s)

    async def execute(self, run: Run, spec: RunSpec) -> None:
        """Stream the run's generation into its snapshot until it ends, then save it."""
        update: TurnUpdate = run.snapshot
        progress = update.progress
        self.partials.track(run.user_id, update)
        started = time.monotonic()
        self.metrics.stream_started()
        try:
            events = run_turn(spec.client, spec.request, spec.tools)
            async with contextlib.aclosing(events) as stream:
                async for event in stream:
                    if isinstance(event, RoundStarted):
                        await self._save_round(run.user_id, update, spec.recorded, event)
                    else:
                        progress.apply(event)
                    if isinstance(event, ToolCallFinished):
                        self.metrics.observe_tool(event.result.name, event.result.status)
                    elif isinstance(event, ToolRoundLimit):
                        update.error = ErrorInfo("tool_round_limit", number=event.rounds)
                    if not isinstance(event, UNSEEN):
                        run.changed()
            update.state = "complete"
        except ProviderError as exc:
            update.failure = exc
            update.state = "error"
            update.error = ErrorInfo.of(exc, partial=bool(progress.choices[0].content))
        except asyncio.CancelledError:
            update.state, update.error = run.end_state, run.end_note
            raise
        except Exception:
            update.state, update.error = "error", INTERNAL_ERROR
            log.exception("unexpected error in a run")
        finally:
            self.partials.forget(update)
            save = asyncio.ensure_future(self._db(lambda s: finish(s, run.user_id, update)))
            self.metrics.stream_ended()
            await until_done(save)
            self.report(spec.username, spec.provider, update, time.monotonic() - started)
            run.changed()

    async def _save_round(
        self, user_id: int, update: TurnUpdate, recorded: dict[str, Any], event: RoundStarted
    ) -> None:
        """A round of tool calls ended: store its answer and results, start the next answer."""
        progress = update.progress
        assistant_id = update.assistant_ids[0]
        first = _round_fields(progress)
        next_fields: NextAnswer = {"provider": "", "model": update.model, "parameters": recorded}

        def work(session: Session) -> str | None:
            row = message_rows.complete_message(
                session=session, user_id=user_id, message_id=assistant_id, **first
            )
            next_fields["provider"] = row.provider
            return message_rows.record_tool_round(
                session=session,
                user_id=user_id,
                assistant_id=assistant_id,
                results=tool_rows(progress.tools, first["tool_calls"], "not_run"),
                next_assistant=next_fields,
            )

        save = asyncio.ensure_future(self._db(work))
        try:
            await asyncio.shield(save)
        except asyncio.CancelledError:
            # Stopped while saving: let the save finish, so the final save completes the new
            # answer row instead of writing this round a second time.
            await until_done(save)
            raise
        finally:
            if save.done() and not save.cancelled() and save.exception() is None:
                update.assistant_ids = [str(save.result())]
                progress.apply(event)

    def report(self, username: str, provider: str, update: TurnUpdate, duration_s: float) -> None:
        """One metrics observation and one structured log line per run (never contents)."""
        progress = update.progress
        failure = update.failure
        usages = [r.usage for r in progress.rounds] + [progress.usage_dict()]
        first = progress.rounds[0].timings if progress.rounds else progress.timings()
        ttft_ms = first.get("ttft_ms")
        record = TurnRecord(
            user=username,
            provider=provider,
            model=update.model,
            status=update.state,
            http_status=failure.status if failure is not None else None,
            error_kind=failure.kind if failure is not None else None,
            prompt_tokens=sum((u or {}).get("prompt_tokens", 0) for u in usages),
            completion_tokens=sum((u or {}).get("completion_tokens", 0) for u in usages),
            reasoning_tokens=sum((u or {}).get("reasoning_tokens", 0) for u in usages),
            ttft_s=ttft_ms / 1000 if ttft_ms is not None else None,
            duration_s=duration_s,
            tool_calls=sum(len(r.tools) for r in progress.rounds) + len(progress.tools),
            conversation_id=update.conversation_id,
        )
        self.metrics.observe_turn(record)
        log_turn(log, record)


class PartialSaver:
    """Saves the text of every streaming answer about once a second, all in one transaction.

    One background task per process wakes each interval, collects the answers whose text grew,
    and writes them with one UPDATE per row in a single unit of work (no ORM objects). A row's
    UPDATE only matches while it is still "streaming", so a late flush can never overwrite
    the final save, and the id and text it writes are taken together on the event loop.
    """

    def __init__(self, db: Db[Any], interval_s: float = PERSIST_INTERVAL_S) -> None:
        self._db = db
        self.interval_s = interval_s
        self._live: dict[int, tuple[int, TurnUpdate]] = {}  # id(update) → (user id, update)
        self._saved: dict[int, tuple[str, int]] = {}  # id(update) → (row id, chars saved)
        self._task: asyncio.Task[None] | None = None

    def track(self, user_id: int, update: TurnUpdate) -> None:
        """Start saving this run's text on the timer."""
        self._live[id(update)] = (user_id, update)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="partial-saver")

    def forget(self, update: TurnUpdate) -> None:
        """Stop saving this run's text (its final save follows)."""
        self._live.pop(id(update), None)
        self._saved.pop(id(update), None)

    async def _loop(self) -> None:
        while self._live:
            await asyncio.sleep(self.interval_s)  # the timer itself, not a wait for an event
            rows = self._due()
            if rows:
                try:
                    await self._db(functools.partial(_save_partials, rows=rows))
                except Exception:
                    log.warning("saving streaming answers' text failed", exc_info=True)

    def _due(self) -> list[tuple[int, str, str, str]]:
        """(user id, row id, content, reasoning) of every answer whose text grew."""
        rows = []
        for key, (user_id, update) in list(self._live.items()):
            choice = update.progress.choices[0]
            row_id, size = update.assistant_ids[0], len(choice.content) + len(choice.reasoning)
            if self._saved.get(key) == (row_id, size) or not size:
                continue
            self._saved[key] = (row_id, size)
            rows.append((user_id, row_id, _storable(choice.content), _storable(choice.reasoning)))
        return rows


def _save_partials(session: Session, *, rows: list[tuple[int, str, str, str]]) -> int:
    return message_rows.save_partials(session=session, rows=rows)


def _storable(text: str) -> str:
    """Provider text as storage keeps it: capped at the longest text a row may hold."""
    return text if len(text) <= TEXT_MAX else text[:TEXT_MAX]


def _round_fields(progress: TurnProgress) -> dict[str, Any]:
    choice = progress.choices[0]
    return {
        "content": _storable(choice.content),
        "reasoning": _storable(choice.reasoning),
        "state": "complete",
        "usage": progress.stored_usage(),
        "timings": progress.timings(),
        "finish_reason": choice.finish_reason or "tool_calls",
        "tool_calls": stored_calls(choice.tool_calls),
    }


def finish(session: Session, user_id: int, update: TurnUpdate) -> None:
    """Save the final state of every answer row of a run (one unit of work)."""
    progress = update.progress
    if (
        update.state == "error"
        and len(update.assistant_ids) > 1
        and not any(
            c.content or c.reasoning or c.tool_calls or c.finish_reason for c in progress.choices
        )
    ):
        # One refused request (say, n too large) is one error, not n identical ones.
        keep, *drop = update.assistant_ids
        message_rows.drop_unstarted_choices(
            session=session, user_id=user_id, keep_id=keep, drop_ids=drop
        )
        update.assistant_ids = [keep]
    timings = progress.timings() if update.model else None
    usage = progress.stored_usage()
    for index, message_id in enumerate(update.assistant_ids):
        choice = progress.choices[index]
        state = update.state
        error = stored_error(update.error)
        if state == "complete" and choice.finish_reason == "length":
            error = LENGTH_NOTE
        elif (
            state == "complete"
            and index > 0
            and not (choice.content or choice.reasoning or choice.finish_reason)
        ):
            state = "error"
            error = ErrorInfo("fewer_choices", number=len(update.assistant_ids)).to_json()
        calls = stored_calls(choice.tool_calls)
        message_rows.complete_message(
            session=session,
            user_id=user_id,
            message_id=message_id,
            content=_storable(choice.content),
            reasoning=_storable(choice.reasoning),
            state=state,
            usage=usage if index == 0 else None,
            timings=timings,
            finish_reason=choice.finish_reason,
            error=error,
            tool_calls=calls,
        )
        if calls and update.record_missing_results:
            # Every call gets a stored result, so the history replays as the provider
            # expects: cancelled by Stop, or not run (round limit, no tools offered).
            missing = "cancelled" if update.state in ("stopped", "interrupted") else "not_run"
            message_rows.record_tool_round(
                session=session,
                user_id=user_id,
                assistant_id=message_id,
                results=tool_rows(progress.tools, calls, missing),
            )


async def until_done(future: asyncio.Future[Any]) -> None:
    """Wait for a shielded save to finish, even through repeated cancellation."""
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(future)
    if not future.cancelled() and future.exception() is not None:
        log.warning("a save failed: %s", future.exception())
