"""Compare view: one prompt sent to 2–4 models at once, answers streamed side by side.

A comparison is a conversation with mode "compare" (see webapp/compare_rounds.py for how its
rounds are stored). The columns run concurrently, one task each; a column that fails keeps its
error and the others go on. Database work runs in short sessions in threads, never across a
`yield`; the final state of every column is saved under asyncio.shield, also after Stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from storage import repository as repo
from storage.models import Conversation, Message, new_id
from webapp.capabilities import Capabilities
from webapp.chat import UPDATE_INTERVAL_S, ChatService, TurnRefused
from webapp.compare_rounds import (
    MAX_COLUMNS,
    MIN_COLUMNS,
    ColumnSpec,
    Round,
    column_history,
    compare_rounds,
    continuation_columns,
    following,
    is_compare_batch,
    last_compare,
)
from webapp.config import ProviderConfig
from webapp.engine import TurnRequest, run_turn
from webapp.error_text import describe_error
from webapp.history import auto_title, to_provider_messages
from webapp.limits import LimitReached, check_limits
from webapp.observability import TurnRecord, log_turn
from webapp.params import normalize, request_params
from webapp.pricing import Cost, PriceTable
from webapp.provider import ProviderError
from webapp.turn import TurnProgress

log = logging.getLogger(__name__)
INTERNAL_ERROR = "Parley hit an internal error in this column; the partial answer is kept."


@dataclass(slots=True)
class ColumnRun:
    """One column of the round being streamed."""

    index: int  # the column (stored as choice_index)
    provider: str
    provider_label: str
    model: str
    message_id: str
    history: list[Message]  # the earlier rounds as this column's model saw them
    progress: TurnProgress = field(default_factory=TurnProgress)
    state: str = "streaming"  # streaming | complete | stopped | error
    error: str = ""
    cost: Cost | None = None  # known once usage arrived and a price applies
    failure: ProviderError | None = None

    @property
    def spec(self) -> ColumnSpec:
        return ColumnSpec(self.provider, self.model)


@dataclass(slots=True)
class CompareUpdate:
    """A snapshot of a running round for the UI to render."""

    conversation_id: str
    user_message: Message
    columns: list[ColumnRun]
    batch_id: str | None
    state: str = "streaming"  # streaming | complete | stopped
    notes: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return all(column.state != "streaming" for column in self.columns)


@dataclass(frozen=True, slots=True)
class _Plan:
    provider: ProviderConfig
    model: str
    caps: Capabilities
    params: dict[str, Any]
    api_key: str = field(repr=False)


@dataclass(slots=True)
class _Prepared:
    conversation_id: str
    user_message: Message
    message_ids: list[str]
    columns: list[int]
    histories: list[list[Message]]
    batch_id: str | None


class CompareService:
    """Runs comparisons for any user; holds no per-user data between calls."""

    def __init__(self, service: ChatService, prices: PriceTable | None = None) -> None:
        self.service = service
        self.settings = service.settings
        self.prices = prices or PriceTable()
        self._saves: dict[str, asyncio.Event] = {}

    async def wait_saved(self, conversation_id: str, timeout: float = 10.0) -> None:
        """Wait until a stopped round in this conversation has written its final state."""
        event = self._saves.get(conversation_id)
        if event is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)

    def cost(self, provider: str, model: str, usage: Mapping[str, Any] | None) -> Cost | None:
        return self.prices.cost(provider, model, usage)

    # ---- one round -------------------------------------------------------------------------
    def _plan(self, columns: Sequence[ColumnSpec], params: Mapping[str, Any],
              api_keys: Mapping[str, str], notes: list[str]) -> tuple[list[_Plan], dict[str, Any]]:
        clean = normalize(dict(params))  # raises ParamError, shown to the user as is
        if clean.pop("n", 1) != 1:
            notes.append("Choices (n) is not used in Compare: each column makes one answer.")
        plans = []
        for number, spec in enumerate(columns, 1):
            provider = self.service.provider_config(spec.provider)
            model = self.service.model_for(provider, spec.model)
            if not model:
                raise TurnRefused(f"Choose a model for column {number} ({provider.label}).")
            caps = self.service.capabilities.lookup(model, provider.kind, provider.name)
            sent = request_params(clean, caps, provider.kind)
            key = self.service.api_key_for(provider, api_keys)
            plans.append(_Plan(provider, model, caps, sent, key))
        pairs = [(p.provider.name, p.model) for p in plans]
        if len(set(pairs)) != len(pairs):
            raise TurnRefused("Pick a different model for each column.")
        return plans, clean

    def _check_size(self, what: str, text: str) -> None:
        limit = self.settings.max_message_chars
        if len(text) > limit:
            raise TurnRefused(f"{what} is {len(text):,} characters; the limit is {limit:,} "
                              "(MAX_MESSAGE_CHARS). Shorten it.")

    async def stream_compare(
        self, *, user_id: int, conversation_id: str | None, text: str,
        columns: Sequence[ColumnSpec], system_prompt: str = "",
        params: Mapping[str, Any] | None = None, api_keys: Mapping[str, str] | None = None,
        username: str = "",
    ) -> AsyncGenerator[CompareUpdate, None]:
        """Run one round in every column at once, yielding coalesced snapshots; the last one
        has the final state. One column continues a comparison "with one model"."""
        low = 1 if conversation_id else MIN_COLUMNS
        if not low <= len(columns) <= MAX_COLUMNS:
            raise TurnRefused(f"Compare {MIN_COLUMNS} to {MAX_COLUMNS} models at once "
                              f"(got {len(columns)}).")
        if not text.strip():
            raise TurnRefused("Type a prompt first.")
        self._check_size("The prompt", text)
        self._check_size("The system prompt", system_prompt)
        notes: list[str] = []
        plans, clean = self._plan(columns, params or {}, api_keys or {}, notes)
        # Shares the chat turns' one-prepare-per-user lock (limits count both).
        prepare = await self.service.start_prepare(user_id, lambda s: self._prepare(
            s, user_id, conversation_id, text, plans, system_prompt, clean))
        try:
            prepared = await asyncio.shield(prepare)
        except asyncio.CancelledError:
            await self._stop_prepared(prepare, user_id)
            raise
        runs = [
            ColumnRun(index, plan.provider.name, plan.provider.label, plan.model, message_id,
                      history)
            for plan, index, message_id, history in zip(
                plans, prepared.columns, prepared.message_ids, prepared.histories, strict=True)
        ]
        update = CompareUpdate(prepared.conversation_id, prepared.user_message, runs,
                               prepared.batch_id, notes=notes)
        saved = asyncio.Event()
        self._saves[update.conversation_id] = saved
        started = time.monotonic()
        changed: asyncio.Queue[int] = asyncio.Queue()
        tasks: list[asyncio.Task[None]] = []
        try:
            for run, plan in zip(runs, plans, strict=True):
                messages = to_provider_messages(
                    system_prompt, [*run.history, prepared.user_message],
                    reasoning_passback=plan.caps.reasoning_passback)
                request = TurnRequest(model=plan.model, messages=messages, params=plan.params,
                                      api_key=plan.api_key)
                run.progress = TurnProgress()  # the clocks start as the requests go out
                self.service.metrics.stream_started()
                tasks.append(asyncio.create_task(self._run_column(run, request, changed)))
            yield update
            last_yield, dirty = time.monotonic(), False
            while not update.done:
                timeout = max(0.0, last_yield + UPDATE_INTERVAL_S - time.monotonic())
                try:
                    # Not asyncio.wait_for: on 3.11 it can swallow a cancellation (Stop).
                    async with asyncio.timeout(timeout if dirty else None):
                        await changed.get()
                    dirty = True
                except TimeoutError:
                    pass
                if dirty and not update.done and (
                        time.monotonic() - last_yield >= UPDATE_INTERVAL_S):
                    yield update
                    last_yield, dirty = time.monotonic(), False
            update.state = "complete"
        except (asyncio.CancelledError, GeneratorExit):
            update.state = "stopped"
            raise
        finally:
            wind_up = asyncio.ensure_future(self._wind_up(tasks, update, user_id))
            # Set when the save is really done, even if a second Stop interrupts the wait.
            wind_up.add_done_callback(lambda _: self._saved(update.conversation_id, saved))
            await asyncio.shield(wind_up)
            self._report(username or f"#{user_id}", update, time.monotonic() - started)
        yield update

    async def _run_column(self, run: ColumnRun, request: TurnRequest,
                          changed: asyncio.Queue[int]) -> None:
        """Stream one column; events are applied here, as they arrive, so timings are exact."""
        client = self.service._clients[run.provider]
        try:
            # A cancelled run_turn closes its provider stream (and so the HTTP response).
            async for event in run_turn(client, request):
                run.progress.apply(event)
                changed.put_nowait(run.index)
            run.state = "complete"
        except asyncio.CancelledError:
            run.state = "stopped"
            raise
        except ProviderError as exc:
            run.state, run.failure = "error", exc
            run.error = describe_error(exc, partial=bool(run.progress.choices[0].content))
        except Exception:
            log.exception("unexpected error in a compare column")
            run.state, run.error = "error", INTERNAL_ERROR
        finally:
            run.cost = self.cost(run.provider, run.model, run.progress.usage_dict())
            self.service.metrics.stream_ended()
            changed.put_nowait(run.index)

    async def _wind_up(self, tasks: list[asyncio.Task[None]], update: CompareUpdate,
                       user_id: int) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for run in update.columns:
            if run.state == "streaming":
                run.state = "stopped"
        await self.service.db(lambda s: self._finish(s, user_id, update.columns))

    def _saved(self, conversation_id: str, saved: asyncio.Event) -> None:
        saved.set()
        if self._saves.get(conversation_id) is saved:
            del self._saves[conversation_id]

    def _report(self, username: str, update: CompareUpdate, duration_s: float) -> None:
        """One metrics observation and one log line per column (never contents)."""
        for run in update.columns:
            usage = run.progress.usage_dict() or {}
            ttft_ms = run.progress.timings().get("ttft_ms")
            record = TurnRecord(
                user=username, provider=run.provider, model=run.model, status=run.state,
                http_status=run.failure.status if run.failure else None,
                error_kind=run.failure.kind if run.failure else None,
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
                reasoning_tokens=usage.get("reasoning_tokens", 0),
                ttft_s=ttft_ms / 1000 if ttft_ms is not None else None, duration_s=duration_s,
                tool_calls=0, conversation_id=update.conversation_id,
            )
            self.service.metrics.observe_turn(record)
            log_turn(log, record)

    async def _stop_prepared(self, prepare: asyncio.Future[_Prepared], user_id: int) -> None:
        """Stopped while the rows were being written: let that finish, then mark them."""
        try:
            prepared = await prepare
        except Exception:  # nothing was left streaming
            return
        runs = [ColumnRun(i, "", "", "", m, [], state="stopped")
                for i, m in zip(prepared.columns, prepared.message_ids, strict=True)]
        await self.service.db(lambda s: self._finish(s, user_id, runs))

    # ---- database work (each a unit of work in one short session) ---------------------------
    def _prepare(self, session: Session, user_id: int, conversation_id: str | None, text: str,
                 plans: list[_Plan], system_prompt: str, clean: dict[str, Any]) -> _Prepared:
        try:
            check_limits(session=session, user_id=user_id)
        except LimitReached as exc:
            raise TurnRefused(str(exc)) from None
        specs = [ColumnSpec(p.provider.name, p.model) for p in plans]
        rounds: list[Round] = []
        parent_id = None
        if conversation_id:
            conversation = repo.get_conversation(session=session, user_id=user_id,
                                                 conversation_id=conversation_id)
            if conversation.mode != "compare":
                raise TurnRefused("That conversation is a chat, not a comparison: start a new "
                                  "comparison in the Compare tab.")
            messages = repo.load_messages(session=session, user_id=user_id,
                                          conversation_id=conversation.id)
            path = repo.active_path(messages, conversation.current_leaf_id)
            rounds = compare_rounds(path, messages)
            columns = continuation_columns(rounds, specs)
            parent_id = path[-1].id if path else None
        else:
            conversation = repo.create_conversation(session=session, user_id=user_id,
                                                    title=auto_title(text))
            conversation.mode = "compare"
            session.commit()
            columns = list(range(len(specs)))
        user_message = repo.add_message(session=session, user_id=user_id,
                                        conversation_id=conversation.id, parent_id=parent_id,
                                        role="user", content=text)
        repo.update_conversation_settings(
            session=session, user_id=user_id, conversation_id=conversation.id,
            system_prompt=system_prompt, provider=specs[0].provider, model=specs[0].model,
            parameters=clean)
        batch_id = new_id() if len(plans) > 1 else None
        message_ids = []
        for position, (plan, column) in enumerate(zip(plans, columns, strict=True)):
            row = repo.add_message(
                session=session, user_id=user_id, conversation_id=conversation.id,
                parent_id=user_message.id, role="assistant", state="streaming",
                provider=plan.provider.name, model=plan.model, parameters=plan.params,
                choice_index=column if batch_id else 0, batch_id=batch_id,
                make_current=position == 0)
            message_ids.append(row.id)
        histories = [column_history(rounds, column) for column in columns]
        return _Prepared(conversation.id, user_message, message_ids, columns, histories,
                         batch_id)

    def _finish(self, session: Session, user_id: int, runs: Sequence[ColumnRun]) -> None:
        for run in runs:
            progress = run.progress
            choice = progress.choices[0]
            error = run.error or None
            if run.state == "complete" and choice.finish_reason == "length":
                error = "The answer hit the max_tokens limit and was cut off."
            repo.complete_message(
                session=session, user_id=user_id, message_id=run.message_id,
                content=choice.content, reasoning=choice.reasoning, state=run.state,
                usage=progress.stored_usage(), timings=progress.timings() if run.model else None,
                finish_reason=choice.finish_reason, error=error)

    # ---- votes and continuing ---------------------------------------------------------------
    async def load(self, *, user_id: int, conversation_id: str
                   ) -> tuple[Conversation, list[Message]]:
        """A conversation and all its messages (any mode)."""
        def work(session: Session) -> tuple[Conversation, list[Message]]:
            conversation = repo.get_conversation(session=session, user_id=user_id,
                                                 conversation_id=conversation_id)
            return conversation, repo.load_messages(session=session, user_id=user_id,
                                                    conversation_id=conversation_id)
        return await self.service.db(work)

    async def mark_best(self, *, user_id: int, conversation_id: str, message_id: str) -> None:
        """Mark one answer of a round best (and the others of its round not); the conversation
        continues from it when that round is the latest."""
        def work(session: Session) -> None:
            conversation, messages, target = _compare_answer(session, user_id, conversation_id,
                                                             message_id)
            for row in messages:
                if row.role == "assistant" and row.batch_id == target.batch_id:
                    row.preferred = row.id == target.id
            leaf = next((m for m in messages if m.id == conversation.current_leaf_id), None)
            if leaf is not None and leaf.batch_id == target.batch_id:
                conversation.current_leaf_id = target.id
            session.commit()
        await self.service.db(work)

    async def continue_with(self, *, user_id: int, conversation_id: str,
                            message_id: str) -> ColumnSpec:
        """From this answer on, the comparison goes on with its model alone."""
        def work(session: Session) -> ColumnSpec:
            conversation, messages, target = _compare_answer(session, user_id, conversation_id,
                                                             message_id)
            path = repo.active_path(messages, conversation.current_leaf_id)
            rounds = compare_rounds(path, messages)
            latest = last_compare(rounds)
            if latest is None or target.id not in {m.id for m in latest.answers.values()}:
                raise TurnRefused("Continue from an answer of the latest round.")
            followed = following(rounds)
            if followed is not None and followed != target.choice_index:
                raise TurnRefused("This comparison already continues with another model.")
            if followed is None:
                conversation.current_leaf_id = target.id
            conversation.provider, conversation.model = target.provider, target.model
            session.commit()
            return ColumnSpec(target.provider, target.model)
        return await self.service.db(work)


def _compare_answer(session: Session, user_id: int, conversation_id: str, message_id: str
                    ) -> tuple[Conversation, list[Message], Message]:
    """The conversation, its messages and one answer of a compare round in it; refuse others."""
    conversation = repo.get_conversation(session=session, user_id=user_id,
                                         conversation_id=conversation_id)
    messages = repo.load_messages(session=session, user_id=user_id,
                                  conversation_id=conversation.id)
    target = next((m for m in messages if m.id == message_id), None)
    if target is None:
        raise repo.NotFound(f"Message {message_id} not found in this conversation")
    batch = [m for m in messages if m.role == "assistant" and target.batch_id
             and m.batch_id == target.batch_id]
    if target.role != "assistant" or not is_compare_batch(batch):
        raise TurnRefused("That message is not an answer of a comparison.")
    return conversation, messages, target

