"""Compare view: one prompt sent to 2–4 models at once, answers streamed side by side.

A comparison is a conversation with mode "compare" (see webapp/app/compare_rounds.py for how its
rounds are stored). The columns run concurrently, one task each; a column that fails keeps its
error and the others go on. Database work runs in short sessions in threads, never across a
`yield`; the final state of every column is saved under asyncio.shield, also after Stop.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from storage import message_rows
from storage import repository as repo
from storage.models import Message, new_id
from webapp.app.chat import ChatService
from webapp.app.compare_rounds import (
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
from webapp.app.limits import LimitReached, check_limits
from webapp.app.runs import Run
from webapp.app.turn_runs import (
    UPDATE_INTERVAL_S,
    ModelPlan,
    RateLimitRefused,
    RunSpec,
    TurnRefused,
    TurnUpdate,
    plan_model,
    user_text,
)
from webapp.core.engine import TurnRequest
from webapp.core.history import auto_title, to_provider_messages
from webapp.core.turn import TurnProgress
from webapp.provider.pricing import Cost, PriceTable


@dataclass(slots=True)
class ColumnRun(TurnUpdate):
    """One column of the round being streamed: its run's snapshot, and where it belongs."""

    index: int = 0  # the column (stored as choice_index)
    provider: str = ""
    history: list[Message] = field(default_factory=list)  # earlier rounds, as it saw them
    cost: Cost | None = None  # known once usage arrived and a price applies
    batch_id: str | None = None  # the round's batch (None when one column continues)

    @property
    def message_id(self) -> str:
        return self.assistant_ids[0]

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
    runs: list[Run] = field(default_factory=list, repr=False)  # one per column

    @property
    def done(self) -> bool:
        return all(column.state != "streaming" for column in self.columns)


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

    def cost(self, provider: str, model: str, usage: Mapping[str, Any] | None) -> Cost | None:
        return self.prices.cost(provider, model, usage)

    # ---- one round -------------------------------------------------------------------------
    def _plan(
        self,
        columns: Sequence[ColumnSpec],
        params: Mapping[str, Any],
        api_keys: Mapping[str, str],
        notes: list[str],
    ) -> list[ModelPlan]:
        plans = []
        for number, spec in enumerate(columns, 1):
            plans.append(
                plan_model(
                    self.settings,
                    self.service.capabilities,
                    provider_name=spec.provider,
                    model=spec.model,
                    params=params,
                    api_keys=api_keys,
                    what=f"in column {number}",
                )
            )
        if plans and plans[0].clean.get("n", 1) != 1:
            notes.append("Choices (n) is not used in Compare: each column makes one answer.")
        pairs = [(p.provider.name, p.model) for p in plans]
        if len(set(pairs)) != len(pairs):
            raise TurnRefused("Pick a different model for each column.")
        return plans

    async def start_compare(
        self,
        *,
        user_id: int,
        conversation_id: str | None,
        text: str,
        columns: Sequence[ColumnSpec],
        system_prompt: str = "",
        params: Mapping[str, Any] | None = None,
        api_keys: Mapping[str, str] | None = None,
        username: str = "",
    ) -> CompareUpdate:
        """Start one round in every column at once, each column a run of its own; one column
        continues a comparison "with one model". TurnRefused if it cannot start.

        Long: like ChatService.start_turn, checks first (every column's model and limits), then
        one write-ahead unit for all the columns and one run per column."""
        low = 1 if conversation_id else MIN_COLUMNS
        if not low <= len(columns) <= MAX_COLUMNS:
            raise TurnRefused(
                f"Compare {MIN_COLUMNS} to {MAX_COLUMNS} models at once (got {len(columns)})."
            )
        limit = self.settings.max_message_chars
        text = user_text("The prompt", text, limit, fix="Shorten it.")
        system_prompt = user_text("The system prompt", system_prompt, limit, fix="Shorten it.")
        if not text.strip():
            raise TurnRefused("Type a prompt first.")
        notes: list[str] = []
        plans = self._plan(columns, params or {}, api_keys or {}, notes)
        clean = {k: v for k, v in plans[0].clean.items() if k != "n"}
        reservation = await self.service.reserve(user_id, len(plans))
        try:
            # One writer with the chat turns: the limit check counts both.
            prepare = self.service.write_ahead(
                lambda s: self._prepare(
                    s, user_id, conversation_id, text, plans, system_prompt, clean
                )
            )
        except BaseException:
            reservation.release()
            raise
        update: list[CompareUpdate] = []

        def start(prepared: _Prepared) -> list[Run]:
            runs, snapshots = [], []
            for plan, index, message_id, history in zip(
                plans, prepared.columns, prepared.message_ids, prepared.histories, strict=True
            ):
                messages = to_provider_messages(
                    system_prompt,
                    [*history, prepared.user_message],
                    reasoning_passback=plan.caps.reasoning_passback,
                )
                sent = {k: v for k, v in plan.request_params().items() if k != "n"}
                spec = RunSpec(
                    client=self.service.clients[plan.provider.name],
                    request=TurnRequest(
                        model=plan.model, messages=messages, params=sent, api_key=plan.api_key
                    ),
                    provider=plan.provider.name,
                    username=username or f"#{user_id}",
                )
                column = ColumnRun(
                    prepared.conversation_id,
                    [*history, prepared.user_message],
                    [message_id],
                    TurnProgress(),
                    plan.provider.label,
                    plan.model,
                    index=index,
                    provider=plan.provider.name,
                    history=history,
                    batch_id=prepared.batch_id,
                )
                snapshots.append(column)
                runs.append(
                    self.service.runs.launch(
                        reservation,
                        prepared.conversation_id,
                        column,
                        functools.partial(self._run_column, spec=spec),
                        kind="compare",
                    )
                )
            update.append(
                CompareUpdate(
                    prepared.conversation_id,
                    prepared.user_message,
                    snapshots,
                    prepared.batch_id,
                    notes=notes,
                    runs=runs,
                )
            )
            return runs

        await self.service.launch_when_prepared(reservation, prepare, start)
        return update[0]

    async def _run_column(self, run: Run, *, spec: RunSpec) -> None:
        column: ColumnRun = run.snapshot
        try:
            await self.service.recorder.execute(run, spec)
        finally:
            column.cost = self.cost(column.provider, column.model, column.progress.usage_dict())

    def live(self, user_id: int, conversation_id: str | None) -> CompareUpdate | None:
        """The round streaming in a comparison now (for a page that opens it), if any."""
        runs = sorted(
            self.service.runs.live(user_id, conversation_id, "compare"),
            key=lambda run: run.snapshot.index,
        )
        if not runs:
            return None
        columns: list[ColumnRun] = [run.snapshot for run in runs]
        first = columns[0]
        return CompareUpdate(
            first.conversation_id, first.path[-1], columns, first.batch_id, runs=runs
        )

    async def stream_compare(
        self,
        *,
        user_id: int,
        conversation_id: str | None,
        text: str,
        columns: Sequence[ColumnSpec],
        system_prompt: str = "",
        params: Mapping[str, Any] | None = None,
        api_keys: Mapping[str, str] | None = None,
        username: str = "",
    ) -> AsyncGenerator[CompareUpdate, None]:
        """Start a round and watch it: coalesced snapshots, the last one final. Closing this
        generator only stops watching; `stop` ends the round."""
        update = await self.start_compare(
            user_id=user_id,
            conversation_id=conversation_id,
            text=text,
            columns=columns,
            system_prompt=system_prompt,
            params=params,
            api_keys=api_keys,
            username=username,
        )
        async for _ in self.watch(update):
            yield update

    async def watch(self, update: CompareUpdate) -> AsyncGenerator[bool, None]:
        """Wake whenever a viewer should render `update` (True on the last frame)."""
        async for last in self.service.runs.watch(update.runs, UPDATE_INTERVAL_S):
            if last:
                update.state = (
                    "stopped"
                    if any(c.state in ("stopped", "interrupted") for c in update.columns)
                    else "complete"
                )
            yield last

    async def stop(self, user_id: int, conversation_id: str | None) -> int:
        """Stop every column of the round streaming in a comparison."""
        return await self.service.stop(user_id, conversation_id)

    # ---- database work (each a unit of work in one short session) ---------------------------
    def _prepare(
        self,
        session: Session,
        user_id: int,
        conversation_id: str | None,
        text: str,
        plans: list[ModelPlan],
        system_prompt: str,
        clean: dict[str, Any],
    ) -> _Prepared:
        """The first rows of a Compare round, in one unit of work: the comparison, the prompt
        and one answer placeholder per column. Long: a new comparison, a continued one and
        one continued with a single column write different parents."""
        try:
            check_limits(session=session, user_id=user_id)
        except LimitReached as exc:
            raise RateLimitRefused(str(exc)) from None
        specs = [ColumnSpec(p.provider.name, p.model) for p in plans]
        rounds: list[Round] = []
        parent_id = None
        if conversation_id:
            thread = repo.load_thread(
                session=session, user_id=user_id, conversation_id=conversation_id
            )
            conversation, path = thread.conversation, thread.path
            if conversation.mode != "compare":
                raise TurnRefused(
                    "That conversation is a chat, not a comparison: start a new "
                    "comparison in the Compare tab."
                )
            rounds = compare_rounds(path, thread.messages)
            columns = continuation_columns(rounds, specs)
            parent_id = path[-1].id if path else None
        else:
            conversation = repo.create_conversation(
                session=session, user_id=user_id, title=auto_title(text), mode="compare"
            )
            columns = list(range(len(specs)))
        user_message = message_rows.add_message(
            session=session,
            user_id=user_id,
            conversation_id=conversation.id,
            parent_id=parent_id,
            role="user",
            content=text,
        )
        repo.update_conversation_settings(
            session=session,
            user_id=user_id,
            conversation_id=conversation.id,
            system_prompt=system_prompt,
            provider=specs[0].provider,
            model=specs[0].model,
            parameters=clean,
        )
        batch_id = new_id() if len(plans) > 1 else None
        message_ids = []
        for position, (plan, column) in enumerate(zip(plans, columns, strict=True)):
            row = message_rows.add_message(
                session=session,
                user_id=user_id,
                conversation_id=conversation.id,
                parent_id=user_message.id,
                role="assistant",
                state="streaming",
                owner=self.service.runs.cluster.process_id,
                provider=plan.provider.name,
                model=plan.model,
                parameters={k: v for k, v in plan.request_params().items() if k != "n"},
                choice_index=column if batch_id else 0,
                batch_id=batch_id,
                make_current=position == 0,
            )
            message_ids.append(row.id)
        histories = [column_history(rounds, column) for column in columns]
        return _Prepared(conversation.id, user_message, message_ids, columns, histories, batch_id)

    # ---- votes and continuing ---------------------------------------------------------------
    async def load(self, *, user_id: int, conversation_id: str) -> repo.Thread:
        """A conversation, all its messages and its active path (any mode)."""

        def work(session: Session) -> repo.Thread:
            return repo.load_thread(
                session=session, user_id=user_id, conversation_id=conversation_id
            )

        return await self.service.db(work)

    async def mark_best(self, *, user_id: int, conversation_id: str, message_id: str) -> None:
        """Mark one answer of a round best (and the others of its round not); the conversation
        continues from it when that round is the latest."""

        def work(session: Session) -> None:
            thread, target = _compare_answer(session, user_id, conversation_id, message_id)
            conversation, messages = thread.conversation, thread.messages
            message_rows.set_preferred(session=session, user_id=user_id, message_id=target.id)
            leaf = next((m for m in messages if m.id == conversation.current_leaf_id), None)
            if leaf is not None and leaf.batch_id == target.batch_id:
                message_rows.set_current_leaf(
                    session=session,
                    user_id=user_id,
                    conversation_id=conversation.id,
                    message_id=target.id,
                )

        await self.service.db(work)

    async def continue_with(
        self, *, user_id: int, conversation_id: str, message_id: str
    ) -> ColumnSpec:
        """From this answer on, the comparison goes on with its model alone."""

        def work(session: Session) -> ColumnSpec:
            thread, target = _compare_answer(session, user_id, conversation_id, message_id)
            conversation = thread.conversation
            rounds = compare_rounds(thread.path, thread.messages)
            latest = last_compare(rounds)
            if latest is None or target.id not in {m.id for m in latest.answers.values()}:
                raise TurnRefused("Continue from an answer of the latest round.")
            followed = following(rounds)
            if followed is not None and followed != target.choice_index:
                raise TurnRefused("This comparison already continues with another model.")
            if followed is None:
                message_rows.set_current_leaf(
                    session=session,
                    user_id=user_id,
                    conversation_id=conversation.id,
                    message_id=target.id,
                )
            repo.update_conversation_settings(
                session=session,
                user_id=user_id,
                conversation_id=conversation.id,
                provider=target.provider,
                model=target.model,
            )
            return ColumnSpec(target.provider, target.model)

        return await self.service.db(work)


def _compare_answer(
    session: Session, user_id: int, conversation_id: str, message_id: str
) -> tuple[repo.Thread, Message]:
    """The conversation's thread and one answer of a compare round in it; refuse others."""
    thread = repo.load_thread(session=session, user_id=user_id, conversation_id=conversation_id)
    messages = thread.messages
    target = next((m for m in messages if m.id == message_id), None)
    if target is None:
        raise repo.NotFound(f"Message {message_id} not found in this conversation")
    batch = [
        m
        for m in messages
        if m.role == "assistant" and target.batch_id and m.batch_id == target.batch_id
    ]
    if target.role != "assistant" or not is_compare_batch(batch):
        raise TurnRefused("That message is not an answer of a comparison.")
    return thread, target
