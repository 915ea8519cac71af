"""Chat turns: a question (new, regenerated or edited) answered by one run, with tools.

This is the seam the UI and the /chat API share. It checks the turn, writes its first rows
(the question and the streaming answer rows) in one unit of work, and starts the run, which
`webapp.app.turn_runs` executes and records; the run belongs to the server, not to the asker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from sqlmodel import Session

from storage import repository as repo
from storage.db import unit_of_work
from storage.field_limits import TOOL_CHOICE, TOOL_NAME
from storage.models import Message
from webapp.app.chat_request import Action, EditMessage, NewMessage, TurnSettings
from webapp.app.chat_rows import ContextCheck, Prepared, check_attachments, first_rows
from webapp.app.cluster import Cluster
from webapp.app.group_commit import GroupCommit
from webapp.app.runs import Reservation, Run, RunLimitReached, RunManager
from webapp.app.tool_turns import ToolTurns
from webapp.app.turn_runs import (
    MAX_UPDATE_INTERVAL_S,
    UPDATE_INTERVAL_S,
    ContextFull,
    RateLimitRefused,
    RunSpec,
    TurnRecorder,
    TurnRefused,
    TurnUpdate,
    checked,
    plan_model,
    update_interval,
    user_text,
)
from webapp.config import Settings
from webapp.core.attachments import (
    AttachmentError,
    Limits,
    check_count,
)
from webapp.core.capabilities import CapabilityTable
from webapp.core.context import (
    Gauge,
    answer_room,
    context_limit,
    fit_messages,
    used_tokens,
)
from webapp.core.engine import StreamingClient, TurnRequest
from webapp.core.history import to_provider_messages
from webapp.core.token_estimate import prompt_tokens
from webapp.core.turn import TurnProgress
from webapp.observability import Metrics
from webapp.tools.execute import ToolExecutor
from webapp.tools.registry import ToolRegistry
from webapp.tools.selection import ToolSelectionError

__all__ = [
    "MAX_UPDATE_INTERVAL_S",
    "UPDATE_INTERVAL_S",
    "ChatService",
    "ContextFull",
    "TurnRefused",
    "TurnUpdate",
    "update_interval",
]

T = TypeVar("T")
P = TypeVar("P")


class ChatService:
    """Starts chat turns as runs for any user; holds no per-user data between calls."""

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
        runs: RunManager | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.settings = settings
        self._session_factory = session_factory
        self.clients = clients
        self.capabilities = capabilities
        self.tools = tools if tools is not None else ToolRegistry()
        self.tool_turns = ToolTurns(settings, self.tools, self.db, executor)
        self.approvals = self.tool_turns.approvals
        self.runs = runs or RunManager(
            max_per_user=settings.max_runs_per_user,
            max_total=settings.max_runs,
            unwatched_timeout_s=settings.run_unwatched_timeout_s,
            cluster=cluster,
        )
        self.recorder = TurnRecorder(self.db, self.metrics)
        # Turns that start together write their first rows in one transaction.
        self.group_commit = GroupCommit(session_factory)

    async def db(self, work: Callable[[Session], T]) -> T:
        """Run one unit of database work in a thread, in its own short session."""

        def run() -> T:
            with unit_of_work(self._session_factory) as session:
                return work(session)

        return await asyncio.to_thread(run)

    async def reserve(self, user_id: int, count: int = 1) -> Reservation:
        """Hold run slots for a new turn (over every process of the cluster); TurnRefused
        names the limit when there are none."""
        try:
            return await self.runs.hold(user_id, count)
        except RunLimitReached as exc:
            raise RateLimitRefused(str(exc)) from None

    def write_ahead(self, work: Callable[[Session], T]) -> asyncio.Future[T]:
        """Start a turn's first unit of work: its limit check and its first rows.

        Units run one at a time in one writer (webapp/app/group_commit.py), those that arrive
        together in one transaction: parallel turns of one user cannot all pass a limit check
        before any of their rows exist, and two tabs sending to one chat see each other's
        question (per process; several instances share a limit only approximately).
        """
        return self.group_commit.submit(work)

    async def launch_when_prepared(
        self,
        reservation: Reservation,
        prepare: asyncio.Future[P],
        start: Callable[[P], list[Run]],
    ) -> list[Run]:
        """Wait for a turn's first rows, then start its runs.

        If the asker goes away meanwhile (a closed tab), the runs start anyway once the rows
        exist: only Stop ends a run. The reservation's unused slots are always given back.
        """

        def started(prepared: P) -> list[Run]:
            try:
                return start(prepared)
            finally:
                reservation.release()

        def later(future: asyncio.Future[P]) -> None:
            if future.cancelled() or future.exception() is not None:
                reservation.release()
            else:
                started(future.result())

        try:
            prepared = await asyncio.shield(prepare)
        except asyncio.CancelledError:
            prepare.add_done_callback(later)
            raise
        except BaseException:
            reservation.release()
            raise
        return started(prepared)

    async def start_turn(
        self,
        *,
        user_id: int,
        conversation_id: str | None,
        action: Action,
        turn: TurnSettings,
        username: str = "",
    ) -> Run:
        """Check a turn, write its first rows and start it as a run (TurnRefused if it cannot
        start: then nothing was stored or sent).

        Long: the refusals come first and in a fixed order (limits, model, attachments,
        context), then one write-ahead unit and the launch; split, the steps would hand a dozen
        values to each other."""
        limit = self.settings.max_message_chars
        if isinstance(action, NewMessage | EditMessage):
            action = replace(action, text=user_text("The message", action.text, limit))
        turn = replace(
            turn, system_prompt=user_text("The system prompt", turn.system_prompt, limit)
        )
        for name in turn.tools:
            checked(TOOL_NAME, name)
        checked(TOOL_CHOICE, turn.tool_choice)
        plan = plan_model(
            self.settings,
            self.capabilities,
            provider_name=turn.provider,
            model=turn.model,
            params=turn.params,
            api_keys=turn.api_keys,
        )
        try:
            selection = self.tool_turns.select(
                turn.tools, turn.tool_choice, plan.model, plan.caps.tools
            )
        except ToolSelectionError as exc:
            raise TurnRefused(str(exc)) from None
        tools_sent = bool(selection.names)
        sent_params, notes = plan.request_params(tools_sent=tools_sent), []
        if tools_sent and sent_params.get("n", 1) > 1:
            sent_params.pop("n")  # the tool loop follows one answer
            notes.append("Choices (n) is ignored while tools are offered: one answer is made.")
        attached = action.attachments if isinstance(action, NewMessage) else ()
        if attached:
            limits = Limits.from_mb(self.settings.attach_max_mb, self.settings.attach_max_count)
            try:
                check_count(attached, limits)
            except AttachmentError as exc:
                raise TurnRefused(str(exc)) from None
            check_attachments(attached, plan.caps, plan.model)
        if (
            isinstance(action, NewMessage | EditMessage)
            and not action.text.strip()
            and (not attached)
        ):
            raise TurnRefused("Type a message first.")
        n = int(sent_params.get("n", 1))
        stored = {**plan.clean, "tools": list(selection.names), "tool_choice": turn.tool_choice}
        recorded = {**sent_params, **({"tools": list(selection.names)} if tools_sent else {})}
        window = context_limit(plan.model, plan.caps, self._listed_contexts(plan.provider.name))
        reserve = answer_room(int(sent_params.get("max_tokens") or 0), window)
        reservation = await self.reserve(user_id)
        try:
            prepare = self.write_ahead(
                lambda s: first_rows(
                    s,
                    self.settings.provider(turn.provider).name,
                    self.runs.cluster.process_id,
                    user_id,
                    conversation_id,
                    action,
                    turn,
                    plan.model,
                    stored,
                    n,
                    recorded,
                    plan.caps,
                    ContextCheck(window, reserve, refuse=not turn.fit_context),
                )
            )
        except BaseException:
            reservation.release()
            raise

        def start(prepared: Prepared) -> list[Run]:
            conversation = prepared.conversation
            images_ok = plan.caps.vision is not False
            history = to_provider_messages(
                turn.system_prompt,
                prepared.path,
                reasoning_passback=plan.caps.reasoning_passback,
                attachments=images_ok,
                tool_images=plan.caps.vision is True,
            )
            if not images_ok and any(m.attachments for m in prepared.path):
                notes.append(
                    f"{plan.model} takes no images, so earlier attachments were left "
                    "out and only their messages' text was sent."
                )
            if turn.fit_context and prepared.used + reserve > window.tokens:
                scale = prepared.used / max(1, prompt_tokens(history))
                history, dropped = fit_messages(history, window, reserve, max(1.0, scale))
                if dropped:
                    notes.append(
                        f"The {dropped} oldest turns were left out of this request to "
                        f"fit {plan.model}'s context (they stay in the conversation)."
                    )
            spec = RunSpec(
                client=self.clients[plan.provider.name],
                request=TurnRequest(
                    model=plan.model, messages=history, params=sent_params, api_key=plan.api_key
                ),
                provider=plan.provider.name,
                username=username or f"#{user_id}",
                tools=self.tool_turns.setup(
                    selection,
                    user_id,
                    conversation.id,
                    interactive=turn.interactive,
                    reasoning_passback=plan.caps.reasoning_passback,
                    credentials=turn.mcp_credentials,
                    images=plan.caps.vision is True,
                ),
                recorded=recorded,
            )
            update = TurnUpdate(
                conversation.id,
                prepared.path,
                prepared.assistant_ids,
                TurnProgress(n=n),
                plan.provider.label,
                plan.model,
                notes=notes,
            )
            return [
                self.runs.launch(
                    reservation,
                    conversation.id,
                    update,
                    lambda run: self.recorder.execute(run, spec),
                )
            ]

        [run] = await self.launch_when_prepared(reservation, prepare, start)
        return run

    async def unattended_turn(
        self,
        *,
        user_id: int,
        conversation_id: str | None,
        provider: str,
        model: str,
        params: Mapping[str, Any],
        tools: list[str] | None,
        tool_choice: str | None,
        default_tools: tuple[str, ...],
    ) -> TurnSettings:
        """A turn asked for by a program (the /chat API, MCP's chat): where the call names no
        tools or tool_choice, the conversation's stored ones (else `default_tools`), with its
        system prompt; no person is there to approve a tool call. NotFound if not theirs."""
        system_prompt, stored = "", {}
        if conversation_id:
            existing = await self.db(
                lambda s: repo.get_conversation(
                    session=s, user_id=user_id, conversation_id=conversation_id
                )
            )
            system_prompt, stored = existing.system_prompt, existing.parameters or {}
        if tools is None:
            tools = stored.get("tools", list(default_tools))
        return TurnSettings(
            provider=provider,
            model=model,
            params=params,
            system_prompt=system_prompt,
            tools=tuple(tools or ()),
            tool_choice=tool_choice or stored.get("tool_choice") or "auto",
            interactive=False,  # such tools are not run
        )

    async def stream_turn(
        self,
        *,
        user_id: int,
        conversation_id: str | None,
        action: Action,
        turn: TurnSettings,
        username: str = "",
    ) -> AsyncGenerator[TurnUpdate, None]:
        """Start a turn and watch it: coalesced snapshots, the last one final. Closing this
        generator only stops watching; the run goes on (`stop` ends it)."""
        run = await self.start_turn(
            user_id=user_id,
            conversation_id=conversation_id,
            action=action,
            turn=turn,
            username=username,
        )
        update: TurnUpdate = run.snapshot
        interval = update_interval(len(update.path), turn.interval_per_message_s)
        async for _ in self.runs.watch([run], interval):
            yield update

    async def stop(self, user_id: int, conversation_id: str | None) -> int:
        """Stop the live runs of one of the user's conversations; returns how many."""
        return await self.runs.stop(user_id, conversation_id)

    def live_turn(self, user_id: int, conversation_id: str | None) -> Run | None:
        """The chat run streaming in one of the user's conversations, if any."""
        runs = self.runs.live(user_id, conversation_id, "chat")
        return runs[0] if runs else None

    async def find_turn(self, user_id: int, conversation_id: str | None) -> Run | None:
        """`live_turn`, or else the chat run streaming in the conversation on another process
        of the cluster; its stand-in's history (up to the question) comes from the database."""
        runs = await self.runs.find(user_id, conversation_id, "chat")
        if not runs or not conversation_id:
            return None
        run = runs[0]
        if not run.snapshot.path:
            thread = await self.db(
                lambda s: repo.load_thread(
                    session=s, user_id=user_id, conversation_id=conversation_id
                )
            )
            asked = [i for i, message in enumerate(thread.path) if message.role == "user"]
            run.snapshot.path = thread.path[: asked[-1] + 1] if asked else []
        return run

    async def wait_finished(
        self, user_id: int, conversation_id: str | None, timeout_s: float = 10.0
    ) -> None:
        """Wait until the runs of a conversation have ended and saved (after a Stop)."""
        await self.runs.wait(self.runs.live(user_id, conversation_id), timeout_s)

    def _listed_contexts(self, provider: str) -> Mapping[str, int]:
        """Context windows the provider's /models listing gave, if it gave any."""
        return getattr(self.clients.get(provider), "context_lengths", None) or {}

    async def context_gauge(
        self,
        *,
        user_id: int,
        conversation_id: str | None,
        provider: str,
        model: str,
        system_prompt: str = "",
    ) -> Gauge | None:
        """How full the model's context is with this conversation (None: nothing to show)."""
        if not conversation_id or provider not in self.clients or not model:
            return None

        def work(session: Session) -> list[Message]:
            return repo.load_thread(
                session=session, user_id=user_id, conversation_id=conversation_id
            ).path

        path = await self.db(work)
        used, estimated = used_tokens(path, system_prompt)
        return self.gauge(provider, model, used=used, estimated=estimated)

    def gauge(self, provider: str, model: str, *, used: int, estimated: bool) -> Gauge | None:
        """The gauge for a conversation of `used` tokens on `model` (None: nothing to show)."""
        if provider not in self.clients or not model:
            return None
        config = self.settings.provider(provider)
        caps = self.capabilities.lookup(model, config.kind, config.name)
        return Gauge(used, estimated, context_limit(model, caps, self._listed_contexts(provider)))
