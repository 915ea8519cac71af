"""What the Chat tab's handlers share: collaborators, who is asking, loading and
rendering the open conversation, the sidebar."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from storage import repository as repo
from storage import tree
from storage.models import Message
from webapp.app.auth import Identity, Person
from webapp.app.chat import ChatService
from webapp.app.conversations import Conversations
from webapp.app.versions import Versions, version_info
from webapp.core.context import used_tokens
from webapp.i18n import t
from webapp.provider.catalog import ModelCatalog
from webapp.ui.account import signed_in_text
from webapp.ui.context import PageContext, refused_if_missing
from webapp.ui.handlers.events import LIVE_MARK, SWITCHER, T, Updates
from webapp.ui.render import View, feedback_values, render_path, settled
from webapp.ui.session import SessionState


class ChatBase:
    """Holds the app's collaborators; every handler gets per-user data from its arguments."""

    def __init__(
        self,
        service: ChatService,
        catalog: ModelCatalog,
        versions: Versions,
        identity: Identity,
        default_tools: tuple[str, ...] = (),
        mcp_status: Callable[[], list[dict[str, Any]]] | None = None,
        page: PageContext | None = None,
    ) -> None:
        self.page = page or PageContext(service, catalog, identity)
        self.service = service
        self.conversations = Conversations(service.db)
        self.mcp_status = mcp_status
        self.identity = identity
        self.versions = versions
        self.catalog = catalog
        self.settings = service.settings
        self.default_tools = default_tools

    async def person(self, state: SessionState, request: gr.Request | None) -> Person:
        """The signed-in user for this event (PageContext.person)."""
        return await self.page.person(state, request)

    async def signed_in(self, state: SessionState, request: gr.Request) -> str:
        """The header line: who is signed in, in the page's language."""
        return signed_in_text((await self.person(state, request)).username, state.lang)

    async def user_id(self, state: SessionState, request: gr.Request | None) -> int:
        return await self.page.user_id(state, request)

    async def db(self, work: Callable[[Any], T]) -> T:
        """One unit of database work (PageContext.db)."""
        return await self.page.db(work)

    async def _load(self, user_id: int, conversation_id: str) -> repo.Thread:
        with refused_if_missing():
            return await self.conversations.thread(user_id, conversation_id)

    def _view(self, state: SessionState, thread: repo.Thread) -> View:
        conversation, messages, path = thread.conversation, thread.messages, thread.path
        groups: dict[str, list[Message]] = {}
        if path and path[-1].role == "assistant" and path[-1].batch_id:
            last = path[-1]
            groups[last.id] = [
                m for m in tree.siblings(messages, last.id) if m.batch_id == last.batch_id
            ]
        view = render_path(path, groups, state.lang, window=state.window, note=False)
        state.hidden = view.hidden
        # What the context gauge shows next (it reads this instead of loading the chat again).
        state.context_used = (conversation.id, *used_tokens(path, conversation.system_prompt))
        view.feedback = feedback_values(view, {m.id: m.feedback for m in messages})
        view = settled(view)  # converted once per stored item, not on every open and turn
        state.message_ids = view.message_ids
        state.active_ids = {m.id for m in path}
        # The last answer's versions are those of its first message (a tool-using answer is
        # a chain: assistant, tool results, assistant, ...).
        head = None
        for message in path:
            if message.role == "user":
                head = None
            elif message.role == "assistant" and head is None:
                head = message.id
        state.focus_id = head or next((m.id for m in reversed(path) if m.role == "assistant"), None)
        return view

    def _versions(self, state: SessionState, messages: list[Message]) -> Updates:
        """The version switcher for the focused message: label, ◀, ▶, "Use this version"."""
        info = version_info(messages, state.focus_id, state.active_ids) if state.focus_id else None
        if info is None:
            return tuple(gr.update(visible=False) for _ in range(SWITCHER.size))
        kind = "Answer" if info.role == "assistant" else "Question"
        label = t(kind + " version {index} of {count}", state.lang).format(
            index=info.index + 1, count=info.count
        )
        if not info.on_active_path:
            label += t(" (not in use)", state.lang)
        return (
            gr.update(value=label, visible=True),
            gr.update(visible=info.index > 0),
            gr.update(visible=info.index < info.count - 1),
            gr.update(visible=not info.on_active_path),
        )

    async def sidebar(self, state: SessionState, query: str, request: gr.Request) -> Any:
        """The conversation list (newest first, filtered by the search); ● marks a live run."""
        user_id = await self.user_id(state, request)
        state.query = query or ""
        with refused_if_missing(state.lang):
            state.listing = await self.conversations.listing(user_id, query or "")
        return self._marked(state, user_id)

    def _marked(self, state: SessionState, user_id: int) -> Any:
        """The sidebar as last listed, ● marking the conversations with a live run."""
        live = self.service.runs.live_conversations(user_id)
        return gr.update(
            choices=[
                (f"{LIVE_MARK}{title}" if cid in live else title, cid)
                for title, cid in state.listing
            ],
            value=state.conversation_id,
        )

    async def _reload(self, state: SessionState, request: gr.Request) -> tuple[Any, Updates]:
        if not state.conversation_id:
            state.message_ids, state.focus_id = [], None
            return [], self._versions(state, [])
        user_id = await self.user_id(state, request)
        thread = await self._load(user_id, state.conversation_id)
        view = self._view(state, thread)
        return view.chatbot(), self._versions(state, thread.messages)

    async def model_choices(
        self, provider: str, state: SessionState, refresh: bool = False, current: str = ""
    ) -> tuple[Any, str]:
        """The model Dropdown's update and the note under it (PageContext.model_choices)."""
        return await self.page.model_choices(provider, state, refresh=refresh, current=current)
