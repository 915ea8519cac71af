"""Chat-tab conversations: open, new, rename, delete, undo, feedback and moving between
versions."""

from __future__ import annotations

from typing import Any

import gradio as gr

from storage import repository as repo
from storage.field_limits import TITLE, FieldTooLong, check
from webapp.app.summary import SummaryMissing, start_from_summary
from webapp.app.versions import NavigationRefused
from webapp.i18n import t
from webapp.ui import controls
from webapp.ui.context import refusal, refused_if_missing
from webapp.ui.handlers.base import ChatBase
from webapp.ui.handlers.events import (
    DELETE,
    FOCUS,
    NEW_CHAT,
    OPEN,
    RERENDER,
    SWITCHER,
    UNDO,
    VERSION,
    Updates,
)
from webapp.ui.session import SHOWN_MESSAGES, SessionState


class ConversationEvents(ChatBase):
    """Open and change the conversations of the sidebar, and their versions."""

    async def open(
        self, conversation_id: str | None, state: SessionState, request: gr.Request
    ) -> Updates:
        """Open a conversation from the sidebar: messages and its saved settings."""
        if not conversation_id or conversation_id == state.conversation_id:
            return OPEN.skip()
        user_id = await self.user_id(state, request)
        try:
            thread = await self._load(user_id, conversation_id)
        except (repo.NotFound, repo.InvalidId) as exc:
            raise refusal(exc, state.lang) from None
        conversation, messages = thread.conversation, thread.messages
        state.conversation_id = conversation.id
        state.window, state.context_full = SHOWN_MESSAGES, False
        view = self._view(state, thread)
        provider = conversation.provider or self.settings.default_provider
        if provider not in {p.name for p in self.settings.providers}:
            gr.Warning(
                t(
                    "This conversation used provider {provider}, which is no longer "
                    "configured; pick another provider to continue it.",
                    state.lang,
                ).format(provider=repr(provider))
            )
            provider = self.settings.default_provider
        # The note under the model list goes with the provider: "5 models from jiekou.ai."
        model, note = await self.model_choices(provider, state, current=conversation.model)
        stored = conversation.parameters or {}
        known = self.service.tools.names()
        tools = [n for n in stored.get("tools", self.default_tools) if n in known]
        choice = stored.get("tool_choice") or "auto"
        return OPEN.pack(
            chatbot=view.chatbot(),
            state=state,
            title_box=conversation.title,
            system=conversation.system_prompt,
            provider=provider,
            model=model,
            models_note=note,
            tools_box=tools,
            tool_choice=choice if choice in (*known, "auto", "none", "required") else "auto",
            switcher=self._versions(state, messages),
            params=controls.show(conversation.parameters),
        )

    async def open_from_url(self, state: SessionState, request: gr.Request) -> Updates:
        """Open the conversation named in the page's address (?c=…), e.g. after a reload."""
        params = getattr(request, "query_params", None) or {}
        conversation_id = str(params.get("c", "") or "").strip()
        if not conversation_id:
            return OPEN.skip()
        try:
            return await self.open(conversation_id, state, request)
        except gr.Error:
            gr.Warning(
                t("The conversation in the address does not exist or is not yours.", state.lang)
            )
            return OPEN.skip()

    def new_chat(self, state: SessionState) -> Updates:
        return NEW_CHAT.pack(**self._new_chat(state))

    def _new_chat(self, state: SessionState) -> dict[str, Any]:
        """An empty chat: nothing selected in the sidebar, no title, no version switcher."""
        state.conversation_id, state.message_ids, state.focus_id = None, [], None
        state.window, state.hidden, state.context_full = SHOWN_MESSAGES, 0, False
        hidden = tuple(gr.update(visible=False) for _ in range(SWITCHER.size))
        return {
            "chatbot": [],
            "state": state,
            "title_box": "",
            "conversations": gr.update(value=None),
            "switcher": hidden,
        }

    async def rename(self, title: str, state: SessionState, query: str, request: gr.Request) -> Any:
        if not state.conversation_id:
            raise gr.Error(t("Open a conversation to rename it.", state.lang))
        try:  # refused, not cut: the box keeps the title to shorten
            check(TITLE, " ".join((title or "").split()))
        except FieldTooLong as exc:
            raise gr.Error(str(exc), title=t("Not renamed", state.lang)) from None
        user_id = await self.user_id(state, request)
        conversation_id = state.conversation_id
        with refused_if_missing(state.lang):
            await self.conversations.rename(user_id, conversation_id, title)
        gr.Info(t("Renamed.", state.lang))
        return await self.sidebar(state, query, request)

    async def delete(self, state: SessionState, query: str, request: gr.Request) -> Updates:
        if not state.conversation_id:
            raise gr.Error(t("Open a conversation to delete it.", state.lang))
        user_id = await self.user_id(state, request)
        conversation_id = state.conversation_id
        with refused_if_missing(state.lang):
            await self.conversations.delete(user_id, conversation_id)
        values = self._new_chat(state)
        values["conversations"] = await self.sidebar(state, query, request)
        gr.Info(t("Conversation deleted.", state.lang))
        return DELETE.pack(**values, confirm_row=gr.update(visible=False))

    async def undo(self, state: SessionState, request: gr.Request) -> Updates:
        """Step back before the last question; it stays reachable as an earlier version."""
        user_id = await self.user_id(state, request)
        if not state.conversation_id:
            return UNDO.pack(state=state)
        try:
            with refused_if_missing(state.lang):
                text = await self.versions.undo(
                    user_id=user_id, conversation_id=state.conversation_id
                )
        except NavigationRefused as exc:
            gr.Warning(t(str(exc), state.lang), title=t("Cannot undo", state.lang))
            return UNDO.pack(state=state)
        chat, _ = await self._reload(state, request)
        return UNDO.pack(chatbot=chat, box={"text": text, "files": []}, state=state)

    async def feedback(self, state: SessionState, data: gr.LikeData, request: gr.Request) -> None:
        user_id = await self.user_id(state, request)
        index = data.index if isinstance(data.index, int) else data.index[0]
        message_id = state.message_ids[index] if index < len(state.message_ids) else None
        if message_id is None:
            return
        value = None if data.liked is None or data.liked == "" else (1 if data.liked else -1)
        with refused_if_missing(state.lang):
            await self.conversations.set_feedback(user_id, message_id, value)

    async def focus(self, state: SessionState, data: gr.SelectData, request: gr.Request) -> Updates:
        index = data.index if isinstance(data.index, int) else data.index[0]
        if index < len(state.message_ids) and state.message_ids[index] and state.conversation_id:
            state.focus_id = state.message_ids[index]
            user_id = await self.user_id(state, request)
            thread = await self._load(user_id, state.conversation_id)
            return FOCUS.pack(state=state, switcher=self._versions(state, thread.messages))
        return FOCUS.pack(state=state)

    # Bound methods, not functools.partial(switch_version, step=...): a partial makes `request`
    # keyword-only and hides the type hints, so Gradio never injected gr.Request (TypeError).
    async def previous_version(self, state: SessionState, request: gr.Request) -> Updates:
        return await self.switch_version(state, -1, request)

    async def next_version(self, state: SessionState, request: gr.Request) -> Updates:
        return await self.switch_version(state, 1, request)

    async def use_version(self, state: SessionState, request: gr.Request) -> Updates:
        return await self.switch_version(state, 0, request)

    async def switch_version(self, state: SessionState, step: int, request: gr.Request) -> Updates:
        """Continue the conversation from another version of the focused message."""
        user_id = await self.user_id(state, request)
        conversation_id, focus_id = state.conversation_id, state.focus_id
        if not conversation_id or not focus_id:
            return VERSION.pack(state=state)
        try:
            with refused_if_missing(state.lang):
                target = await self.versions.switch(
                    user_id=user_id, conversation_id=conversation_id, message_id=focus_id, step=step
                )
        except NavigationRefused as exc:
            gr.Warning(t(str(exc), state.lang))
            return VERSION.pack(state=state)
        thread = await self._load(user_id, conversation_id)
        view = self._view(state, thread)
        state.focus_id = target
        return VERSION.pack(
            chatbot=view.chatbot(), state=state, switcher=self._versions(state, thread.messages)
        )

    async def rerender(self, state: SessionState, request: gr.Request) -> Updates:
        """The open conversation and its version switcher again (after a language switch)."""
        chat, versions = await self._reload(state, request)
        return RERENDER.pack(chatbot=chat, switcher=versions)

    def earlier_button(self, state: SessionState) -> Any:
        """ "Show N earlier messages" above the chat, while some are not shown."""
        label = t("Show {count} earlier messages", state.lang).format(count=state.hidden)
        return gr.update(value=label, visible=state.hidden > 0)

    async def show_earlier(self, state: SessionState, request: gr.Request) -> Any:
        """Show another window of earlier messages above the ones on screen."""
        state.window += SHOWN_MESSAGES
        chat, _ = await self._reload(state, request)
        return chat

    async def continue_from_summary(self, state: SessionState, request: gr.Request) -> Updates:
        """A new chat whose system prompt carries the summary just written; it opens, and the
        message that did not fit is still in the box, ready to send there."""
        source, state.summary_of = state.summary_of, None
        if not source or source != state.conversation_id:
            return OPEN.skip()
        user_id = await self.user_id(state, request)
        try:
            new_id = await self.db(
                lambda s: start_from_summary(
                    s, user_id, source, state.lang, self.settings.max_message_chars
                )
            )
        except SummaryMissing:
            gr.Warning(
                t(
                    "No summary was written, so no new chat was started: try again, or "
                    "drop the oldest turns instead.",
                    state.lang,
                )
            )
            return OPEN.skip()
        return await self.open(new_id, state, request)
