"""Compare tab handlers: thin adapters between Gradio events and CompareService.

Every handler resolves the user from the request (PageContext.person) and works only on that user's
comparisons; per-tab data lives in CompareState (gr.State), never in module globals. The layout
is in webapp/ui/compare_tab.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from storage import repository as repo
from storage.db import StorageUnavailable
from storage.models import Message
from webapp.app.chat import TurnRefused
from webapp.app.compare import CompareService, CompareUpdate
from webapp.app.compare_export import compare_markdown
from webapp.app.compare_rounds import (
    MAX_COLUMNS,
    MIN_COLUMNS,
    ColumnSpec,
    column_history,
    column_labels,
    compare_rounds,
    figures_line,
    following,
    last_compare,
)
from webapp.app.downloads import Downloads, base_url, download_url, link_html
from webapp.app.error_text import refusal_message
from webapp.core.params import PARAMS, ParamError
from webapp.i18n import t
from webapp.provider.pricing import format_cost
from webapp.ui import compare_render, controls
from webapp.ui.context import PageContext, refused_if_missing
from webapp.ui.outputs import Group, Outputs
from webapp.ui.render import ChatbotMessage, text_item
from webapp.ui.session import SessionState
from webapp.ui.team import export_filename

ALL = "all"
PICKERS = 2 * MAX_COLUMNS  # the run's column pickers: provider, model, provider, model, ...
# Compare's parameter controls: the table's, but one answer per column (no `n`).
COMPARE_PARAMS = tuple(p for p in PARAMS if p.name != "n")
Updates = tuple[Any, ...]
# What the tab's events update, by name (webapp/ui/outputs.py); compare_tab.py binds the names.
VIEW = Outputs(
    "cstate",
    "pickers_group",
    "continue_radio",
    "note",
    Group("columns", MAX_COLUMNS),
    Group("headers", MAX_COLUMNS),
    Group("chatbots", MAX_COLUMNS),
    Group("stats", MAX_COLUMNS),
    Group("bests", MAX_COLUMNS),
)
RUN = VIEW + "prompt"  # a round also clears the prompt box
COUNT = Outputs(Group("rows", MAX_COLUMNS), Group("columns", MAX_COLUMNS))


@dataclass
class CompareState:
    """What one browser tab's Compare view shows; kept server-side in gr.State."""

    user_id: int | None = None
    conversation_id: str | None = None
    columns: list[ColumnSpec] = field(default_factory=list)  # the comparison's, in order
    latest_ids: list[str] = field(default_factory=list)  # the latest compared round's answers
    follow: int | None = None  # the column the comparison continues with alone
    voted: bool = False  # an answer was marked best (blind mode then shows the names)
    lang: str = "en"  # the page's language (copied from the tab's SessionState)
    viewing: bool = False  # this tab is showing a live round now
    attached: bool = False  # ... one it did not start (set by attach)


class CompareUI:
    """Compare handlers; every one resolves the user from the request and is scoped to them."""

    def __init__(self, page: PageContext, service: CompareService, downloads: Downloads) -> None:
        self.page = page
        self.service = service
        self.settings = page.settings
        self.downloads = downloads

    def provider_label(self, name: str) -> str:
        return next((p.label for p in self.settings.providers if p.name == name), name)

    async def _user(
        self, session: SessionState, cstate: CompareState, request: gr.Request | None
    ) -> int:
        person = await self.page.person(session, request)
        cstate.lang = session.lang
        if cstate.user_id != person.user_id:  # another account in this tab: start clean
            self._reset(cstate)
            cstate.user_id = person.user_id
        return person.user_id

    @staticmethod
    def _reset(cstate: CompareState) -> None:
        cstate.conversation_id, cstate.columns, cstate.latest_ids = None, [], []
        cstate.follow, cstate.voted = None, False

    # ---- frames: the view's outputs by name (VIEW) -------------------------------------------
    def _frame(
        self,
        cstate: CompareState,
        columns: dict[int, compare_render.Column],
        blind: bool,
        note: Any = None,
        count: int | None = None,
        layout: bool = True,
    ) -> dict[str, Any]:
        """The view's values by name; a streamed frame (`layout=False`) only the answers."""
        specs = cstate.columns
        shown = not blind or cstate.voted
        lang = cstate.lang
        labels = column_labels(
            [s.model for s in specs], blind=blind, revealed=cstate.voted, lang=lang
        )
        choices = [(t("All columns", lang), ALL)]
        choices += [(label, str(i)) for i, label in enumerate(labels)]
        if cstate.follow is not None:
            radio = gr.update(
                choices=[choices[cstate.follow + 1]], value=str(cstate.follow), interactive=False
            )
        else:
            radio = gr.update(choices=choices, value=ALL, interactive=bool(specs))
        visible = len(specs) if specs else (count or MIN_COLUMNS)
        slots = [columns.get(i) for i in range(MAX_COLUMNS)]
        values: dict[str, Any] = {
            "cstate": cstate,
            "chatbots": [gr.skip() if c is None else c.messages for c in slots],
            "stats": [gr.skip() if c is None else c.stats for c in slots],
            "bests": [gr.skip() if c is None or c.best is None else c.best for c in slots],
        }
        if note is not None:
            values["note"] = note
        if not layout:  # a streamed frame: only the answers and figures change
            return values
        headers = []
        for i, column in enumerate(slots):
            if column is not None and column.header:
                headers.append(column.header)
            elif i < len(specs):
                provider = self.provider_label(specs[i].provider)
                headers.append(
                    compare_render.header(labels[i], provider, shown=shown, best=False, lang=lang)
                )
            else:
                headers.append("")
        values["pickers_group"] = gr.update(visible=not specs)
        values["continue_radio"] = radio
        values["columns"] = [gr.update(visible=i < visible) for i in range(MAX_COLUMNS)]
        values["headers"] = headers
        return values

    def _empty_frame(self, cstate: CompareState, blind: bool, count: int) -> Updates:
        empty = {
            i: compare_render.Column(messages=[], stats="", best=gr.update(visible=False))
            for i in range(MAX_COLUMNS)
        }
        return VIEW.pack(**self._frame(cstate, empty, blind, note="", count=count))

    async def _stored_frame(
        self, user_id: int, cstate: CompareState, blind: bool, count: int = MIN_COLUMNS
    ) -> Updates:
        """Render the open comparison from the database."""
        if not cstate.conversation_id:
            return self._empty_frame(cstate, blind, count)
        with refused_if_missing(cstate.lang):
            thread = await self.service.load(
                user_id=user_id, conversation_id=cstate.conversation_id
            )
        conversation, messages = thread.conversation, thread.messages
        rounds = compare_rounds(thread.path, messages)
        latest = last_compare(rounds)
        if conversation.mode != "compare" or latest is None:
            self._reset(cstate)
            return self._empty_frame(cstate, blind, count)
        cstate.columns = latest.specs()
        cstate.latest_ids = [m.id for _, m in sorted(latest.answers.items())]
        cstate.follow = following(rounds)
        cstate.voted = any(m.preferred for m in messages)
        lang = cstate.lang
        labels = column_labels(
            [s.model for s in cstate.columns], blind=blind, revealed=cstate.voted, lang=lang
        )
        prices = self.service.prices

        def cost(message: Message) -> str:
            return format_cost(prices.cost(message.provider, message.model, message.usage))

        columns = {}
        for i, spec in enumerate(cstate.columns):
            history = column_history(rounds, i)
            answer = history[-1] if history and history[-1].role == "assistant" else None
            stats = ""
            if answer is not None and answer.state != "streaming":
                stats = compare_render.state_prefix(answer.state, lang) + figures_line(
                    answer.usage, answer.timings, cost(answer), lang
                )
            best = latest.answers[i].preferred
            can_vote = cstate.follow is None and latest.answers[i].state not in (
                "streaming",
                "error",
            )
            columns[i] = compare_render.Column(
                compare_render.header(
                    labels[i],
                    self.provider_label(spec.provider),
                    shown=not blind or cstate.voted,
                    best=best,
                    lang=lang,
                ),
                compare_render.history_items(
                    history, cost=cost, lang=lang, hide=self._hidden(cstate, blind)
                ),
                stats,
                gr.update(visible=can_vote, value=t("★ Best" if best else "Best", lang)),
            )
        return VIEW.pack(**self._frame(cstate, columns, blind, note=""))

    # ---- events --------------------------------------------------------------------------
    async def load_models(
        self, request: gr.Request, session: SessionState, *providers: str
    ) -> Updates:
        """Fill each column's model list for its provider (on page load). Each column starts
        on a different model where the lists allow, so Compare works without picking any."""
        await self.page.person(session, request)
        updates, used = [], set()
        for provider in providers:
            update = (await self.page.model_choices(provider, session))[0]
            if update.get("value") in used:
                fresh = [m for m in update.get("choices") or [] if m not in used]
                update["value"] = fresh[0] if fresh else update["value"]
            used.add(update.get("value"))
            updates.append(update)
        return tuple(updates)

    async def models_for(self, provider: str, session: SessionState, request: gr.Request) -> Any:
        await self.page.person(session, request)
        return (await self.page.model_choices(provider, session))[0]

    def set_count(self, count: Any) -> Updates:
        shown = [gr.update(visible=i < _count(count)) for i in range(MAX_COLUMNS)]
        return COUNT.pack(rows=shown, columns=shown)

    async def new(
        self,
        request: gr.Request,
        session: SessionState,
        cstate: CompareState,
        blind: bool,
        count: Any,
    ) -> Updates:
        await self._user(session, cstate, request)
        self._reset(cstate)
        return self._empty_frame(cstate, blind, _count(count))

    async def open(
        self,
        request: gr.Request,
        conversation_id: str | None,
        session: SessionState,
        cstate: CompareState,
        blind: bool,
    ) -> Updates:
        """Show a comparison picked in the sidebar (other conversations are left alone)."""
        user_id = await self._user(session, cstate, request)
        if not conversation_id:
            return VIEW.skip()
        with refused_if_missing(cstate.lang):
            conversation = (
                await self.service.load(user_id=user_id, conversation_id=conversation_id)
            ).conversation
        if conversation.mode != "compare":
            return VIEW.skip()
        cstate.conversation_id = conversation.id
        return await self._stored_frame(user_id, cstate, blind)

    async def refresh(
        self,
        request: gr.Request,
        session: SessionState,
        cstate: CompareState,
        blind: bool,
        count: Any = MIN_COLUMNS,
    ) -> Updates:
        user_id = await self._user(session, cstate, request)
        if cstate.conversation_id:
            await self.service.service.wait_finished(user_id, cstate.conversation_id)
        return await self._stored_frame(user_id, cstate, blind, _count(count))

    async def after_following(
        self,
        request: gr.Request,
        session: SessionState,
        cstate: CompareState,
        blind: bool,
        count: Any = MIN_COLUMNS,
    ) -> Updates:
        """After following a live round: the stored view (marks, Best buttons)."""
        if not cstate.attached:
            return VIEW.skip()
        cstate.attached = False
        return await self.refresh(request, session, cstate, blind, count)

    async def stop_round(
        self, request: gr.Request, session: SessionState, cstate: CompareState
    ) -> None:
        """Stop every column of the round streaming in this tab's comparison."""
        user_id = await self._user(session, cstate, request)
        await self.service.stop(user_id, cstate.conversation_id)

    async def follow_live(
        self, request: gr.Request, session: SessionState, cstate: CompareState, blind: bool
    ) -> AsyncIterator[Updates]:
        """If the open comparison has a round streaming (started in another tab, or before a
        reload), show it so far and follow it to its end."""
        user_id = await self._user(session, cstate, request)
        live = self.service.live(user_id, cstate.conversation_id)
        cstate.attached = live is not None and not cstate.viewing
        if not cstate.attached or live is None:
            yield RUN.skip()
            return
        async for frame in self._stream(
            cstate, live, blind, self.service.watch(live), clear_prompt=False
        ):
            yield frame

    def best_handler(self, slot: int) -> Callable[..., Awaitable[Updates]]:
        """The handler of column `slot`'s Best button (a closure keeps Gradio's type hints)."""

        async def best(
            request: gr.Request, session: SessionState, cstate: CompareState, blind: bool
        ) -> Updates:
            user_id = await self._user(session, cstate, request)
            if not cstate.conversation_id or slot >= len(cstate.latest_ids):
                raise gr.Error(t("Run a comparison first.", cstate.lang))
            try:
                with refused_if_missing(cstate.lang):
                    await self.service.mark_best(
                        user_id=user_id,
                        conversation_id=cstate.conversation_id,
                        message_id=cstate.latest_ids[slot],
                    )
            except TurnRefused as exc:
                raise gr.Error(t(str(exc), cstate.lang)) from None
            return await self._stored_frame(user_id, cstate, blind)

        return best

    async def export(self, request: gr.Request, session: SessionState, cstate: CompareState) -> Any:
        user_id = await self._user(session, cstate, request)
        if not cstate.conversation_id:
            raise gr.Error(t("Run or open a comparison to export it.", cstate.lang))
        with refused_if_missing(cstate.lang):
            thread = await self.service.load(
                user_id=user_id, conversation_id=cstate.conversation_id
            )
        name = export_filename(thread.conversation.title, ".md")
        text = compare_markdown(thread.conversation, thread.messages, self.service.prices)
        token = await asyncio.to_thread(self.downloads.add, user_id, name, text)
        return gr.update(
            value=link_html(download_url(base_url(request), token), name), visible=True
        )

    # gr.Request comes first: Gradio injects it only into positional parameters, and the
    # column pickers and parameter controls arrive as *values.
    async def run(
        self,
        request: gr.Request,
        prompt: str,
        session: SessionState,
        cstate: CompareState,
        blind: bool,
        count: Any,
        system: str,
        continue_with: str | None,
        *values: Any,
    ) -> AsyncIterator[Updates]:
        """Send the prompt to every column (or the one continued with) and stream answers.

        `values` are the column pickers (PICKERS of them) and then the parameter controls."""
        user_id = await self._user(session, cstate, request)
        pickers, params = values[:PICKERS], controls.collect(values[PICKERS:], COMPARE_PARAMS)
        try:
            columns = await self._columns(user_id, cstate, continue_with, pickers, count)
            stream = self.service.stream_compare(
                user_id=user_id,
                conversation_id=cstate.conversation_id,
                text=prompt or "",
                columns=columns,
                system_prompt=system or "",
                params=params,
                api_keys=session.api_keys,
                username=session.username,
            )
            first = await anext(stream)
        except (TurnRefused, ParamError, repo.NotFound, repo.InvalidId, StorageUnavailable) as exc:
            title, message = refusal_message(exc, cstate.lang)
            gr.Warning(message, title=title)
            yield RUN.skip()
            return
        for note in first.notes:
            gr.Warning(t(note, cstate.lang))
        # Closing the page only stops watching: the columns go on and are saved.
        async with contextlib.aclosing(stream):
            async for frame in self._stream(cstate, first, blind, stream):
                yield frame

    async def _stream(
        self,
        cstate: CompareState,
        first: CompareUpdate,
        blind: bool,
        updates: AsyncIterator[Any],
        clear_prompt: bool = True,
    ) -> AsyncIterator[Updates]:
        """Every view output (and the prompt box) for each frame of a streaming round."""
        if cstate.conversation_id is None:
            cstate.conversation_id = first.conversation_id
            cstate.columns = [run.spec for run in first.columns]
        if first.batch_id:
            cstate.latest_ids = [run.message_id for run in first.columns]
        hide = self._hidden(cstate, blind)
        prior = {
            run.index: compare_render.history_items(
                run.history, cost=self._cost_text, lang=cstate.lang, hide=hide
            )
            + [text_item("user", first.user_message.content)]
            for run in first.columns
        }
        cstate.viewing = True
        try:
            opening = self._live(cstate, first, prior, blind, layout=True)
            yield RUN.pack(**opening, prompt="" if clear_prompt else gr.skip())
            async for _ in updates:
                yield RUN.pack(**self._live(cstate, first, prior, blind, layout=False))
        finally:
            cstate.viewing = False

    def _hidden(self, cstate: CompareState, blind: bool) -> list[str]:
        """What blind mode hides until the vote: the columns' providers and models."""
        if not blind or cstate.voted:
            return []
        return [
            name
            for spec in cstate.columns
            for name in (self.provider_label(spec.provider), spec.model)
        ]

    def _cost_text(self, message: Message) -> str:
        return format_cost(self.service.prices.cost(message.provider, message.model, message.usage))

    def _live(
        self,
        cstate: CompareState,
        update: CompareUpdate,
        prior: dict[int, list[ChatbotMessage]],
        blind: bool,
        layout: bool,
    ) -> dict[str, Any]:
        lang = cstate.lang
        hide = self._hidden(cstate, blind)
        columns = {
            run.index: compare_render.Column(
                messages=prior[run.index] + compare_render.live_items(run, lang, hide),
                stats=compare_render.live_stats(run, lang),
                best=gr.update(visible=False),
            )
            for run in update.columns
        }
        return self._frame(cstate, columns, blind, layout=layout)

    async def _columns(
        self,
        user_id: int,
        cstate: CompareState,
        continue_with: str | None,
        pickers: Sequence[str],
        count: Any,
    ) -> list[ColumnSpec]:
        if not cstate.conversation_id:
            pairs = list(zip(pickers[0::2], pickers[1::2], strict=True))[: _count(count)]
            return [ColumnSpec(provider or "", model or "") for provider, model in pairs]
        if cstate.follow is None and continue_with in (None, "", ALL):
            return list(cstate.columns)
        slot = cstate.follow if cstate.follow is not None else int(str(continue_with))
        if not 0 <= slot < min(len(cstate.columns), len(cstate.latest_ids)):
            raise TurnRefused("Pick a column under “Continue with” again.")
        if cstate.follow is None:
            with refused_if_missing(cstate.lang):
                await self.service.continue_with(
                    user_id=user_id,
                    conversation_id=cstate.conversation_id,
                    message_id=cstate.latest_ids[slot],
                )
            cstate.follow = slot
        return [cstate.columns[slot]]


def _count(value: Any) -> int:
    try:
        return min(MAX_COLUMNS, max(MIN_COLUMNS, int(value)))
    except (TypeError, ValueError):
        return MIN_COLUMNS
