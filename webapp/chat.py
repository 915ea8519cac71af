"""One chat turn with its persistence: save the user message, stream the answer, save it.

This is the seam the UI and the /chat API share. Database work runs in threads in short
sessions at message boundaries (never per token); no session is held across a `yield`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from sqlmodel import Session

from storage import repository as repo
from storage.db import one_transaction, storable_text
from storage.field_limits import (
    MODEL,
    PROVIDER,
    TOOL_CHOICE,
    TOOL_NAME,
    FieldLimit,
    FieldTooLong,
    check,
    message_limit,
)
from storage.models import Conversation, Message
from webapp.attachments import (
    Attachment,
    AttachmentError,
    Limits,
    check_count,
    has_images,
    has_video,
)
from webapp.capabilities import Capabilities, CapabilityTable
from webapp.config import ProviderConfig, Settings
from webapp.engine import StreamingClient, TurnRequest, run_turn
from webapp.error_text import describe_error
from webapp.history import auto_title, to_provider_messages
from webapp.limits import LimitReached, check_limits
from webapp.messages import RoundStarted, ToolCallFinished, ToolRoundLimit
from webapp.observability import Metrics, TurnRecord, log_turn
from webapp.params import normalize, request_params
from webapp.provider import ProviderError
from webapp.streaming import batched
from webapp.tool_turns import ToolTurns, stored_calls, tool_rows
from webapp.tools.execute import ToolExecutor
from webapp.tools.registry import ToolRegistry
from webapp.tools.selection import ToolSelectionError
from webapp.turn import TurnProgress

log = logging.getLogger(__name__)
T = TypeVar("T")
UPDATE_INTERVAL_S = 0.1  # coalesce streamed updates: at most 10 per second per stream
MAX_UPDATE_INTERVAL_S = 0.4  # ... and at least 2.5 per second, however long the chat


def update_interval(messages: int, per_message_s: float) -> float:
    """Seconds between streamed updates for a conversation of `messages` stored messages."""
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


def _first_name(attached: tuple[Attachment, ...]) -> str:
    """A title for a message of pictures only: the first file's name, or its link."""
    first = attached[0] if attached else {}
    return str(first.get("name") or first.get("url") or "")


IMAGES_REFUSED = ("{model} does not accept images. Pick a vision model (their names have -VL, V "
                  "or Omni, such as Qwen/Qwen2.5-VL-72B-Instruct), or send the question without "
                  "its image.")
VIDEO_REFUSED = ("{model} does not accept video. Pick a video model (such as "
                 "Qwen/Qwen2.5-VL-72B-Instruct), or send the question without the video link.")


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """The user's choices for one turn."""

    provider: str
    model: str
    system_prompt: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)  # raw values; validated here
    api_keys: Mapping[str, str] = field(default_factory=dict, repr=False)  # pasted this session
    tools: tuple[str, ...] = ()  # names of the tools offered
    tool_choice: str = "auto"  # auto | none | required | an offered tool's name
    interactive: bool = True  # a person can approve tool calls (False through the API)
    # Seconds added to the update interval per message already in the conversation: a page
    # re-sends its whole chat with every update, so long chats are updated less often.
    interval_per_message_s: float = 0.0


@dataclass(frozen=True, slots=True)
class NewMessage:
    text: str
    attachments: tuple[Attachment, ...] = ()  # checked images and links (webapp.attachments)


@dataclass(frozen=True, slots=True)
class Regenerate:
    pass


@dataclass(frozen=True, slots=True)
class EditMessage:
    message_id: str
    text: str


Action = NewMessage | Regenerate | EditMessage


@dataclass(slots=True)
class TurnUpdate:
    """A snapshot of a running turn for the UI or the API to render."""

    conversation_id: str
    path: list[Message]  # the active path up to and including the user message
    assistant_ids: list[str]
    progress: TurnProgress
    provider_label: str
    model: str
    state: str = "streaming"  # streaming | complete | stopped | error
    error: str = ""
    notes: list[str] = field(default_factory=list)  # things the user should know (warnings)


@dataclass(slots=True)
class _Prepared:
    conversation: Conversation
    path: list[Message]
    assistant_ids: list[str]


class ChatService:
    """Runs turns for any user; holds no per-user data between calls."""

    def __init__(
        self,
        *,
        settings: Settings,
        session_factory: Callable[[], Session],
        clients: Mapping[str, StreamingClient],
        capabilities: CapabilityTable,
        tools: ToolRegistry | None = None,
        executor: ToolExecutor | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.settings = settings
        self._session_factory = session_factory
        self._clients = clients
        self.capabilities = capabilities
        self.tools = tools if tools is not None else ToolRegistry()
        self.tool_turns = ToolTurns(settings, self.tools, self.db, executor)
        self.approvals = self.tool_turns.approvals
        self._saves: dict[str, asyncio.Event] = {}
        self._user_locks: dict[int, asyncio.Lock] = {}

    async def db(self, work: Callable[[Session], T]) -> T:
        """Run one unit of database work in a thread, in its own short session."""

        def run() -> T:
            with self._session_factory() as session:
                return work(session)

        return await asyncio.to_thread(run)

    async def start_prepare(self, user_id: int, work: Callable[[Session], T]) -> asyncio.Future[T]:
        """Start a turn's first unit of work (limit check and new rows), one per user at a time.

        Parallel turns of one user must not all pass a limit check before any of their rows
        exist (per process; several instances share a limit only approximately). The lock is
        released when the work is done, even if the caller stops waiting for it.
        """
        lock = self._user_locks.setdefault(user_id, asyncio.Lock())
        await lock.acquire()

        def all_or_nothing(session: Session) -> T:
            with one_transaction(session):
                return work(session)

        prepare = asyncio.ensure_future(self.db(all_or_nothing))
        prepare.add_done_callback(lambda _: lock.release())
        return prepare

    def provider_config(self, name: str) -> ProviderConfig:
        try:
            return self.settings.provider(checked(PROVIDER, name))
        except ValueError as exc:
            raise TurnRefused(str(exc)) from None

    def model_for(self, provider: ProviderConfig, model: str) -> str:
        """The model a turn uses (the provider's default when empty), checked as an id."""
        return checked(MODEL, model.strip() or provider.default_model)

    def api_key_for(self, provider: ProviderConfig, pasted: Mapping[str, str]) -> str:
        """The key to use: one pasted in this browser session wins over the configured one."""
        key = pasted.get(provider.name, "").strip() or provider.api_key.get()
        if not key and provider.kind != "openai":
            raise TurnRefused(
                f"No API key for {provider.label}: set {provider.key_env} in .env (then restart), "
                "or paste a key under Settings → API key (kept for this browser session only)."
            )
        return key

    async def wait_saved(self, conversation_id: str, timeout: float = 10.0) -> None:
        """Wait until a stopped turn in this conversation has written its final state."""
        event = self._saves.get(conversation_id)
        if event is not None:
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except TimeoutError:
                log.warning("final save of a stopped turn took longer than %.0f s", timeout)

    async def stream_turn(
        self, *, user_id: int, conversation_id: str | None, action: Action, turn: TurnSettings,
        username: str = "",
    ) -> AsyncGenerator[TurnUpdate, None]:
        """Run one turn, yielding coalesced snapshots; the last one has the final state."""
        # Text no database can store (NUL, lone surrogates) is replaced before it is stored,
        # sent or shown, so the three agree; a lone surrogate would break the request too.
        if isinstance(action, NewMessage | EditMessage):
            action = replace(action, text=storable_text(action.text))
        turn = replace(turn, system_prompt=storable_text(turn.system_prompt))
        provider = self.provider_config(turn.provider)
        model = self.model_for(provider, turn.model)
        if not model:
            raise TurnRefused(f"Choose a model for {provider.label} (or type a model id).")
        for name in turn.tools:
            checked(TOOL_NAME, name)
        checked(TOOL_CHOICE, turn.tool_choice)
        clean = normalize(dict(turn.params))  # raises ParamError, shown to the user as is
        caps = self.capabilities.lookup(model, provider.kind, provider.name)
        try:
            selection = self.tool_turns.select(turn.tools, turn.tool_choice, model, caps.tools)
        except ToolSelectionError as exc:
            raise TurnRefused(str(exc)) from None
        tools_sent = bool(selection.names)
        sent_params = request_params(clean, caps, provider.kind, tools_sent=tools_sent)
        notes = []
        if tools_sent and sent_params.get("n", 1) > 1:
            sent_params.pop("n")  # the tool loop follows one answer
            notes.append("Choices (n) is ignored while tools are offered: one answer is made.")
        api_key = self.api_key_for(provider, turn.api_keys)
        attached = action.attachments if isinstance(action, NewMessage) else ()
        if attached:
            limits = Limits.from_mb(self.settings.attach_max_mb, self.settings.attach_max_count)
            try:
                check_count(attached, limits)
            except AttachmentError as exc:
                raise TurnRefused(str(exc)) from None
            self._check_attachments(attached, caps, model)
        if isinstance(action, NewMessage | EditMessage):
            if not action.text.strip() and not attached:
                raise TurnRefused("Type a message first.")
            self._check_size("The message", action.text)
        self._check_size("The system prompt", turn.system_prompt)
        n = int(sent_params.get("n", 1))
        stored = {**clean, "tools": list(selection.names), "tool_choice": turn.tool_choice}
        recorded = {**sent_params, **({"tools": list(selection.names)} if tools_sent else {})}
        prepare = await self.start_prepare(user_id, lambda s: self._prepare(
            s, user_id, conversation_id, action, turn, model, stored, n, recorded, caps))
        try:
            prepared = await asyncio.shield(prepare)
        except asyncio.CancelledError:
            # Stopped while the rows were being written: let that finish, then mark them
            # stopped, so no row is left "streaming".
            await self._stop_prepared(prepare, user_id)
            raise
        conversation = prepared.conversation
        images_ok = caps.vision is not False
        history = to_provider_messages(turn.system_prompt, prepared.path,
                                       reasoning_passback=caps.reasoning_passback,
                                       attachments=images_ok)
        if not images_ok and any(m.attachments for m in prepared.path):
            notes.append(f"{model} takes no images, so earlier attachments were left out and "
                         "only their messages' text was sent.")
        request = TurnRequest(model=model, messages=history, params=sent_params, api_key=api_key)
        tool_setup = self.tool_turns.setup(selection, user_id, conversation.id,
                                           interactive=turn.interactive,
                                           reasoning_passback=caps.reasoning_passback)
        progress = TurnProgress(n=n)
        update = TurnUpdate(conversation.id, prepared.path, prepared.assistant_ids, progress,
                            provider.label, model, notes=notes)
        saved = asyncio.Event()
        self._saves[conversation.id] = saved
        started = time.monotonic()
        failure: ProviderError | None = None
        self.metrics.stream_started()
        try:
            yield update
            events = run_turn(self._clients[provider.name], request, tool_setup)
            interval = update_interval(len(prepared.path), turn.interval_per_message_s)
            async with contextlib.aclosing(batched(events, interval)) as batches:
                async for batch in batches:
                    for event in batch:
                        if isinstance(event, RoundStarted):
                            await self._save_round(user_id, update, recorded, event)
                        else:
                            progress.apply(event)
                        if isinstance(event, ToolCallFinished):
                            self.metrics.observe_tool(event.result.name, event.result.status)
                        if isinstance(event, ToolRoundLimit):
                            update.error = (
                                f"Stopped after {event.rounds} rounds of tool calls (the limit, "
                                "TOOL_MAX_ROUNDS): the last calls were not run. Ask the model to "
                                "continue, or raise the limit in .env."
                            )
                    yield update
            update.state = "complete"
        except ProviderError as exc:
            failure = exc
            update.state = "error"
            update.error = describe_error(exc, partial=bool(progress.choices[0].content))
        except (asyncio.CancelledError, GeneratorExit):
            update.state = "stopped"
            raise
        except Exception:
            update.state = "error"
            update.error = "Parley hit an internal error; the partial answer is kept."
            log.exception("unexpected error in a turn")
        finally:
            save = asyncio.ensure_future(self.db(lambda s: self._finish(s, user_id, update)))
            # The event is set when the save is really done, even if a second cancel (a double
            # click on Stop) interrupts the wait below.
            save.add_done_callback(lambda _: self._saved(conversation.id, saved))
            self.metrics.stream_ended()
            await asyncio.shield(save)
            self._report(username or f"#{user_id}", provider.name, update, failure,
                         time.monotonic() - started)
        yield update

    def _check_attachments(self, attached: tuple[Attachment, ...], caps: Capabilities,
                           model: str) -> None:
        """Refuse attachments the model is known not to take, before anything is stored."""
        if has_images(attached) and caps.vision is False:
            raise TurnRefused(IMAGES_REFUSED, model=model)
        if has_video(attached) and caps.video is False:
            raise TurnRefused(VIDEO_REFUSED, model=model)

    def _report(self, username: str, provider: str, update: TurnUpdate,
                failure: ProviderError | None, duration_s: float) -> None:
        """One metrics observation and one structured log line per turn (never contents)."""
        progress = update.progress
        usages = [r.usage for r in progress.rounds] + [progress.usage_dict()]
        first = progress.rounds[0].timings if progress.rounds else progress.timings()
        ttft_ms = first.get("ttft_ms")
        record = TurnRecord(
            user=username, provider=provider, model=update.model, status=update.state,
            http_status=failure.status if failure is not None else None,
            error_kind=failure.kind if failure is not None else None,
            prompt_tokens=sum((u or {}).get("prompt_tokens", 0) for u in usages),
            completion_tokens=sum((u or {}).get("completion_tokens", 0) for u in usages),
            reasoning_tokens=sum((u or {}).get("reasoning_tokens", 0) for u in usages),
            ttft_s=ttft_ms / 1000 if ttft_ms is not None else None, duration_s=duration_s,
            tool_calls=sum(len(r.tools) for r in progress.rounds) + len(progress.tools),
            conversation_id=update.conversation_id,
        )
        self.metrics.observe_turn(record)
        log_turn(log, record)

    async def _save_round(self, user_id: int, update: TurnUpdate,
                          sent_params: dict[str, Any], event: RoundStarted) -> None:
        """A round of tool calls ended: store its answer and results, start the next answer."""
        progress = update.progress
        assistant_id = update.assistant_ids[0]
        first = self._saved_round_fields(progress)
        next_fields = {"provider": "", "model": update.model, "parameters": sent_params}

        def work(session: Session) -> str | None:
            row = repo.complete_message(session=session, user_id=user_id,
                                        message_id=assistant_id, **first)
            next_fields["provider"] = row.provider
            return repo.record_tool_round(
                session=session, user_id=user_id, assistant_id=assistant_id,
                results=tool_rows(progress.tools, first["tool_calls"], "not_run"),
                next_assistant=next_fields)

        save = asyncio.ensure_future(self.db(work))
        try:
            await asyncio.shield(save)
        except asyncio.CancelledError:
            # Stopped while saving: let the save finish, so the final save below completes
            # the new answer row instead of writing this round a second time.
            await _until_done(save)
            raise
        finally:
            if save.done() and not save.cancelled() and save.exception() is None:
                update.assistant_ids = [str(save.result())]
                progress.apply(event)

    def _saved_round_fields(self, progress: TurnProgress) -> dict[str, Any]:
        choice = progress.choices[0]
        return {
            "content": choice.content, "reasoning": choice.reasoning, "state": "complete",
            "usage": progress.stored_usage(), "timings": progress.timings(),
            "finish_reason": choice.finish_reason or "tool_calls",
            "tool_calls": stored_calls(choice.tool_calls),
        }

    def _check_size(self, what: str, text: str) -> None:
        limit = message_limit(self.settings.max_message_chars, what)
        checked(replace(limit, fix="Shorten it, or attach long material as a file later."), text)

    def _saved(self, conversation_id: str, saved: asyncio.Event) -> None:
        saved.set()
        if self._saves.get(conversation_id) is saved:
            del self._saves[conversation_id]

    async def _stop_prepared(self, prepare: asyncio.Future[_Prepared], user_id: int) -> None:
        try:
            prepared = await prepare
        except Exception:  # the prepare itself failed: nothing was left streaming
            return
        update = TurnUpdate(prepared.conversation.id, prepared.path, prepared.assistant_ids,
                            TurnProgress(n=len(prepared.assistant_ids)), "", "", state="stopped")
        await self.db(lambda s: self._finish(s, user_id, update))

    def _prepare(
        self,
        session: Session,
        user_id: int,
        conversation_id: str | None,
        action: Action,
        turn: TurnSettings,
        model: str,
        clean: dict[str, Any],
        n: int,
        sent_params: dict[str, Any],
        caps: Capabilities,
    ) -> _Prepared:
        try:
            check_limits(session=session, user_id=user_id)
        except LimitReached as exc:
            raise TurnRefused(str(exc)) from None
        if conversation_id:
            conversation = repo.get_conversation(
                session=session, user_id=user_id, conversation_id=conversation_id
            )
        elif isinstance(action, NewMessage):
            conversation = repo.create_conversation(
                session=session, user_id=user_id, title="New chat")
        else:
            raise TurnRefused("There is no conversation to regenerate or edit yet.")
        messages = repo.load_messages(session=session, user_id=user_id,
                                      conversation_id=conversation.id)
        path = repo.active_path(messages, conversation.current_leaf_id)
        if isinstance(action, NewMessage):
            parent_id = path[-1].id if path else None
            user_message = repo.add_message(
                session=session, user_id=user_id, conversation_id=conversation.id,
                parent_id=parent_id, role="user", content=action.text,
                attachments=list(action.attachments) or None,
            )
            if not any(m.role == "user" for m in path):
                repo.set_title_if_default(session=session, user_id=user_id,
                                          conversation_id=conversation.id,
                                          title=auto_title(action.text or _first_name(
                                              action.attachments)))
        elif isinstance(action, EditMessage):
            original = next((m for m in path if m.id == action.message_id), None)
            if original is None or original.role != "user":
                raise TurnRefused("That message can no longer be edited: reload the conversation.")
            # The question's own pictures go with it: a model that takes none cannot answer.
            self._check_attachments(tuple(original.attachments or ()), caps, model)
            user_message = repo.add_message(
                session=session, user_id=user_id, conversation_id=conversation.id,
                parent_id=original.parent_id, role="user", content=action.text,
                attachments=original.attachments,
            )
        else:
            users = [m for m in path if m.role == "user"]
            if not users:
                raise TurnRefused("There is no question to regenerate an answer for.")
            user_message = users[-1]
            self._check_attachments(tuple(user_message.attachments or ()), caps, model)
        path = [m for m in path if m.id != user_message.id]
        cut = next((i for i, m in enumerate(path) if m.id == user_message.parent_id), -1)
        path = path[: cut + 1] + [user_message]
        # Settings are saved only once the action is known to be valid.
        repo.update_conversation_settings(
            session=session, user_id=user_id, conversation_id=conversation.id,
            system_prompt=turn.system_prompt, provider=turn.provider, model=model, parameters=clean,
        )
        assistant_ids = []
        provider = self.provider_config(turn.provider)
        batch_id = uuid.uuid4().hex if n > 1 else None
        for index in range(n):
            row = repo.add_message(
                session=session, user_id=user_id, conversation_id=conversation.id,
                parent_id=user_message.id, role="assistant", state="streaming",
                provider=provider.name, model=model, parameters=sent_params,
                choice_index=index, batch_id=batch_id, make_current=index == 0,
            )
            assistant_ids.append(row.id)
        return _Prepared(conversation, path, assistant_ids)

    def _finish(self, session: Session, user_id: int, update: TurnUpdate) -> None:
        progress = update.progress
        if update.state == "error" and len(update.assistant_ids) > 1 and not any(
                c.content or c.reasoning or c.tool_calls or c.finish_reason
                for c in progress.choices):
            # One refused request (say, n too large) is one error, not n identical ones.
            keep, *drop = update.assistant_ids
            repo.drop_unstarted_choices(session=session, user_id=user_id, keep_id=keep,
                                        drop_ids=drop)
            update.assistant_ids = [keep]
        timings = progress.timings()
        usage = progress.stored_usage()
        for index, message_id in enumerate(update.assistant_ids):
            choice = progress.choices[index]
            state = update.state
            error = update.error or None
            if state == "complete" and choice.finish_reason == "length":
                error = "The answer hit the max_tokens limit and was cut off."
            elif state == "complete" and index > 0 and not (choice.content or choice.reasoning
                                                             or choice.finish_reason):
                state = "error"
                error = (f"The provider returned fewer choices than the {len(update.assistant_ids)}"
                         " requested (n); it may not support n > 1.")
            calls = stored_calls(choice.tool_calls)
            repo.complete_message(
                session=session, user_id=user_id, message_id=message_id,
                content=choice.content, reasoning=choice.reasoning, state=state,
                usage=usage if index == 0 else None, timings=timings,
                finish_reason=choice.finish_reason, error=error, tool_calls=calls,
            )
            if calls:
                # Every call gets a stored result, so the history replays as the provider
                # expects: cancelled by Stop, or not run (round limit, no tools offered).
                missing = "cancelled" if update.state == "stopped" else "not_run"
                repo.record_tool_round(session=session, user_id=user_id, assistant_id=message_id,
                                       results=tool_rows(progress.tools, calls, missing))


def checked(limit: FieldLimit, value: str) -> str:
    """`value` if it fits its field (storage.field_limits); TurnRefused otherwise."""
    try:
        return check(limit, value)
    except FieldTooLong as exc:
        raise TurnRefused(str(exc)) from None


async def _until_done(future: asyncio.Future[Any]) -> None:
    """Wait for a shielded save to finish, even through repeated cancellation."""
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(future)
