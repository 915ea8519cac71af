"""Chat-tab turns: send, regenerate, edit, summarize; following a live answer; Stop and
tool approvals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from storage import repository as repo
from storage.db import StorageUnavailable
from webapp.app.chat import ContextFull, TurnRefused, TurnUpdate, update_interval
from webapp.app.chat_request import Action, EditMessage, NewMessage, Regenerate, TurnSettings
from webapp.app.error_text import refusal_message, user_message
from webapp.app.summary import SUMMARY_REQUEST
from webapp.core.attachments import (
    Attachment,
    AttachmentError,
    Limits,
    check_count,
    image_from_file,
    link,
)
from webapp.core.markdown_text import fenced
from webapp.core.params import ParamError, normalize, warnings_for
from webapp.i18n import t
from webapp.ui import controls
from webapp.ui.handlers.base import ChatBase
from webapp.ui.handlers.events import (
    AFTER,
    AFTER_FOLLOWING,
    EMPTY_BOX,
    INTERVAL_PER_MESSAGE_S,
    SEND,
    STREAMING_BOX,
    TURN,
    Updates,
    box_value,
)
from webapp.ui.render import (
    View,
    pretty_arguments,
    render_live,
    render_path,
    render_waiting,
    settled,
)
from webapp.ui.safe_markup import LATEX_MARKDOWN, safe_markdown, unescape_for_edit
from webapp.ui.session import SessionState


class TurnEvents(ChatBase):
    """Start, show and stop the answers of the Chat tab."""

    async def _run(
        self,
        state: SessionState,
        request: gr.Request,
        action: Action,
        provider: str,
        model: str,
        system: str,
        tools: Any,
        tool_choice: Any,
        params: tuple[Any, ...],
        clear_box: bool,
        fit_context: bool = False,
    ) -> AsyncIterator[dict[str, Any]]:
        """Start a turn and show it: the TURN outputs, frame by frame.

        Long: refusals as toasts (nothing sent, the box kept), then the first frame with the
        sidebar's mark, then the frames; one generator, since Gradio streams what it yields."""
        user_id = await self.user_id(state, request)
        fit_context = fit_context or bool(
            state.conversation_id and state.fit_context_for == state.conversation_id
        )
        turn = TurnSettings(
            provider=provider,
            model=model or "",
            system_prompt=system or "",
            params=controls.collect(params),
            api_keys=state.api_keys,
            mcp_credentials=state.mcp_credentials,
            tools=tuple(tools or ()),
            tool_choice=tool_choice or "auto",
            interval_per_message_s=INTERVAL_PER_MESSAGE_S,
            fit_context=fit_context,
        )
        try:
            for note in warnings_for(normalize(dict(turn.params))):
                gr.Warning(t(note, state.lang))
            state.stop_pending = False
            stream = self.service.stream_turn(
                user_id=user_id,
                conversation_id=state.conversation_id,
                action=action,
                turn=turn,
                username=state.username,
            )
            first = await anext(stream)
        except (TurnRefused, ParamError, repo.NotFound, repo.InvalidId, StorageUnavailable) as exc:
            # A warning toast, not an error: nothing was sent, the message stays in the box.
            # Over the context, the gauge (after this event) offers what to do about it.
            state.context_full = isinstance(exc, ContextFull)
            title, message = refusal_message(exc, state.lang)
            gr.Warning(message, title=title)
            yield {}
            return
        for note in first.notes:
            gr.Warning(t(note, state.lang))
        state.context_full = False
        state.conversation_id = first.conversation_id
        if state.stop_pending:  # Stop came while the turn's rows were being written
            await self.service.stop(user_id, state.conversation_id)
        box: Any = EMPTY_BOX if clear_box else gr.skip()
        # The chat, marked live: a new one needs the list again; a listed one only its mark (a
        # search over a large history costs the database a scan, before the answer's first frame).
        if any(cid == state.conversation_id for _, cid in state.listing):
            sidebar = self._marked(state, user_id)
        else:
            sidebar = await self.sidebar(state, state.query, request)
        # Closing the page only stops watching: the answer goes on and is saved (Stop ends it).
        async with contextlib.aclosing(stream):
            async for frame in self._frames(state, first, stream):
                yield {**frame, "box": box, "conversations": sidebar}
                box = sidebar = gr.skip()

    async def _frames(
        self, state: SessionState, first: TurnUpdate, updates: AsyncIterator[Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """The chat, the state and the approval panel (TURN names) for a run's snapshots."""
        prior = settled(render_path(first.path, lang=state.lang, window=state.window, note=False))
        shown: list[str] = []  # ids of the calls the approval panel shows

        def frame(update: TurnUpdate) -> View:
            view = render_live(
                prior,
                update.progress,
                update.assistant_ids,
                state=update.state,
                error=user_message(update.error, state.lang),
                model=update.model,
                lang=state.lang,
            )
            state.message_ids = view.message_ids
            return view

        def approval(update: TurnUpdate) -> dict[str, Any]:
            """The approval panel, when the calls waiting for a decision changed."""
            waiting = update.progress.awaiting_approval if update.state == "streaming" else []
            ids = [call.id for call in waiting]
            if ids == shown:
                return {}
            shown[:] = ids
            if not waiting:
                return {"approval_panel": gr.update(visible=False)}
            call = waiting[0]
            more = f" ({len(waiting) - 1} more waiting)" if len(waiting) > 1 else ""
            text = f"✋ **{call.name}** wants to run{more}. Approve it?\n\n" + fenced(
                pretty_arguments(call.arguments), "json"
            )
            return {
                "approval_panel": gr.update(visible=True),
                "approval_text": safe_markdown(text, latex=LATEX_MARKDOWN),
            }

        # The chat is written twice per turn: here the settled history with a placeholder
        # that the page fills from the live feed (webapp/live_view.py), and after the run the
        # stored view (`after_turn`, which every turn and follow chains to). In between only
        # the approval panel changes here, and the end leaves the chat to `after_turn`: the
        # placeholder holds the whole answer by then.
        waiting = render_waiting(prior, first.conversation_id, first.assistant_ids, state.lang)
        state.message_ids = waiting.message_ids
        state.viewing = True
        try:
            shown_first = waiting if first.state == "streaming" else frame(first)
            yield {"chatbot": shown_first.messages, "state": state, **approval(first)}
            async for update in updates:
                panel = approval(update)
                if panel:
                    yield panel
        finally:
            state.viewing = False

    async def follow_live(self, state: SessionState, request: gr.Request) -> AsyncIterator[Updates]:
        """If the open conversation has an answer streaming (started in another tab, or
        before a reload), show it so far and follow it live to its end."""
        state.attached = False
        user_id = await self.user_id(state, request)
        run = await self.service.find_turn(user_id, state.conversation_id)
        if run is None or state.viewing:  # nothing live, or this tab already shows it
            yield TURN.skip()
            return
        state.attached = True
        first: TurnUpdate = run.snapshot
        interval = update_interval(len(first.path), INTERVAL_PER_MESSAGE_S)

        async def updates() -> AsyncIterator[TurnUpdate]:
            async for _ in self.service.runs.watch([run], interval):
                yield first

        box: Any = gr.update(**STREAMING_BOX)
        async for frame in self._frames(state, first, updates()):
            yield TURN.pack(**frame, box=box)
            box = gr.skip()

    async def after_following(
        self, state: SessionState, query: str, request: gr.Request
    ) -> Updates:
        """After following a live answer: the stored view, the sidebar, Send back."""
        if not state.attached:
            return AFTER_FOLLOWING.skip()
        state.attached = False
        return AFTER_FOLLOWING.pack(
            **await self._after_turn(state, query, request),
            box=gr.update(submit_btn=True, stop_btn=False),
        )

    async def stop_run(self, state: SessionState, request: gr.Request) -> None:
        """Stop the answer streaming in this tab's conversation (in every tab that shows it)."""
        user_id = await self.user_id(state, request)
        if not await self.service.stop(user_id, state.conversation_id):
            state.stop_pending = True  # the run may not exist yet: its starter stops it

    async def approve(self, state: SessionState, request: gr.Request) -> None:
        await self._decide(state, request, approved=True)

    async def deny(self, state: SessionState, request: gr.Request) -> None:
        await self._decide(state, request, approved=False)

    async def _decide(self, state: SessionState, request: gr.Request, *, approved: bool) -> None:
        """Approve or deny the oldest tool call waiting in this tab's conversation."""
        user_id = await self.user_id(state, request)
        decided = False
        if state.conversation_id:
            call = self.service.approvals.resolve(user_id, state.conversation_id, approved)
            decided = call is not None or await self.service.runs.cluster.decide_elsewhere(
                user_id, state.conversation_id, approved
            )
        if not decided:
            gr.Warning(t("No tool call is waiting for approval.", state.lang))

    # gr.Request and event data come first: Gradio only injects them into positional
    # parameters, and the parameter controls arrive as *params.
    async def send(
        self,
        request: gr.Request,
        value: Any,
        links: str,
        link_kind: str,
        state: SessionState,
        provider: str,
        model: str,
        system: str,
        tools: Any,
        tool_choice: Any,
        *params: Any,
    ) -> AsyncIterator[Updates]:
        """Send the box's text with its images and links; clear both once it is sent."""
        text, files = box_value(value)
        try:
            attached = await asyncio.to_thread(self._attachments, files, links, link_kind)
        except AttachmentError as exc:
            # Nothing is sent and the box keeps the message and its files.
            # Gradio 6.31 toasts show no title: the cause goes in the message itself.
            gr.Warning(f"{t('Attachment refused', state.lang)}: {exc}")
            yield SEND.skip()
            return
        async for item in self._run(
            state,
            request,
            NewMessage(text, attached),
            provider,
            model,
            system,
            tools,
            tool_choice,
            params,
            clear_box=True,
        ):
            cleared = item.get("box") == EMPTY_BOX  # the links go with the message box
            yield SEND.pack(**item, links="" if cleared else gr.skip())

    def _attachments(self, files: list[str], links: str, link_kind: str) -> tuple[Attachment, ...]:
        """Check uploads and links (in a thread: images are decoded)."""
        limits = Limits.from_mb(self.settings.attach_max_mb, self.settings.attach_max_count)
        kind = "" if link_kind in ("", "auto", None) else link_kind
        lines = [line for line in (links or "").splitlines() if line.strip()]
        check_count([*files, *lines], limits)  # counted before anything is decoded
        items = [image_from_file(path, limits) for path in files]
        items += [link(line, kind) for line in lines]
        return tuple(items)

    async def regenerate(
        self,
        request: gr.Request,
        state: SessionState,
        provider: str,
        model: str,
        system: str,
        tools: Any,
        tool_choice: Any,
        *params: Any,
    ) -> AsyncIterator[Updates]:
        async for item in self._run(
            state,
            request,
            Regenerate(),
            provider,
            model,
            system,
            tools,
            tool_choice,
            params,
            clear_box=False,
        ):
            yield TURN.pack(**item)

    async def edit(
        self,
        data: gr.EditData,
        request: gr.Request,
        state: SessionState,
        provider: str,
        model: str,
        system: str,
        tools: Any,
        tool_choice: Any,
        *params: Any,
    ) -> AsyncIterator[Updates]:
        index = data.index if isinstance(data.index, int) else data.index[0]
        message_id = state.message_ids[index] if index < len(state.message_ids) else None
        # The edit box holds the shown (sanitized) text: "<div>" was shown as "&lt;div>".
        text = unescape_for_edit(data.value if isinstance(data.value, str) else str(data.value))
        if message_id is None or text == unescape_for_edit(str(data.previous_value)):
            # Gradio sends one edit per item of the bubble: a message's pictures are their own
            # item (no message id), and an unchanged item is no edit at all.
            if message_id is None and text != data.previous_value:
                gr.Warning(
                    t(
                        "That item cannot be edited: edit the text of your message (its "
                        "attachments stay as they are).",
                        state.lang,
                    )
                )
            yield TURN.skip()
            return
        async for item in self._run(
            state,
            request,
            EditMessage(message_id, text),
            provider,
            model,
            system,
            tools,
            tool_choice,
            params,
            clear_box=False,
        ):
            yield TURN.pack(**item)

    async def after_turn(self, state: SessionState, query: str, request: gr.Request) -> Updates:
        """Re-render from the database (final marks, versions) and refresh the sidebar."""
        return AFTER.pack(**await self._after_turn(state, query, request))

    async def _after_turn(
        self, state: SessionState, query: str, request: gr.Request
    ) -> dict[str, Any]:
        if state.conversation_id:
            user_id = await self.user_id(state, request)
            await self.service.wait_finished(user_id, state.conversation_id)
        chat, versions = await self._reload(state, request)
        listing = await self.sidebar(state, query, request)
        return {"chatbot": chat, "state": state, "switcher": versions, "conversations": listing}

    async def summarize(
        self,
        request: gr.Request,
        state: SessionState,
        provider: str,
        model: str,
        system: str,
        tools: Any,
        tool_choice: Any,
        *params: Any,
    ) -> AsyncIterator[Updates]:
        """Ask the model for a summary of this conversation (the turns that fit), here, in
        the open chat; `continue_from_summary` then starts the new chat with it."""
        state.context_full = False
        state.summary_of = state.conversation_id
        ask = NewMessage(t(SUMMARY_REQUEST, state.lang))
        async for item in self._run(
            state,
            request,
            ask,
            provider,
            model,
            system,
            (),
            "none",
            params,
            clear_box=False,
            fit_context=True,
        ):
            yield TURN.pack(**item)
