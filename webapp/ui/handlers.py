"""Event handlers: thin adapters between Gradio events and the services (chat, conversations)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import gradio as gr

from storage import repository as repo
from storage import tree
from storage.db import StorageUnavailable
from storage.field_limits import TITLE, FieldTooLong, check
from storage.models import Message
from webapp.app.auth import Identity, Person
from webapp.app.chat import (
    Action,
    ChatService,
    ContextFull,
    EditMessage,
    NewMessage,
    Regenerate,
    TurnRefused,
    TurnSettings,
    TurnUpdate,
    update_interval,
)
from webapp.app.conversations import Conversations
from webapp.app.error_text import refusal_message, user_message
from webapp.app.summary import SUMMARY_REQUEST, SummaryMissing, start_from_summary
from webapp.app.versions import NavigationRefused, Versions, version_info
from webapp.core.attachments import (
    Attachment,
    AttachmentError,
    Limits,
    check_count,
    image_from_file,
    link,
)
from webapp.core.context import used_tokens
from webapp.core.markdown_text import fenced
from webapp.core.params import PARAMS, ParamError, normalize, warnings_for
from webapp.i18n import t
from webapp.provider.catalog import ModelCatalog
from webapp.ui import controls
from webapp.ui.account import signed_in_text
from webapp.ui.context import PageContext, refusal, refused_if_missing
from webapp.ui.outputs import Group, Outputs
from webapp.ui.render import (
    View,
    feedback_values,
    pretty_arguments,
    render_live,
    render_path,
    render_waiting,
    settled,
)
from webapp.ui.safe_markup import LATEX_MARKDOWN, safe_markdown, unescape_for_edit
from webapp.ui.session import SHOWN_MESSAGES, SessionState

Updates = tuple[Any, ...]
# What each event updates, by name (webapp/ui/outputs.py): the wiring binds the names to the
# page's components, the handlers below return values by the same names.
SWITCHER = Group("switcher", 4)  # the version switcher: label, ◀, ▶, "Use this version"
PARAM_CONTROLS = Group("params", len(PARAMS))  # one control per parameter, in PARAMS order
TURN = Outputs("chatbot", "box", "state", "approval_panel", "approval_text", "conversations")
SEND = TURN + "links"  # the links box is cleared with the message box
AFTER = Outputs("chatbot", "state", SWITCHER, "conversations")
AFTER_FOLLOWING = AFTER + "box"
OPEN = Outputs(
    "chatbot",
    "state",
    "title_box",
    "system",
    "provider",
    "model",
    "models_note",
    "tools_box",
    "tool_choice",
    SWITCHER,
    PARAM_CONTROLS,
)
NEW_CHAT = Outputs("chatbot", "state", "title_box", "conversations", SWITCHER)
DELETE = NEW_CHAT + "confirm_row"
UNDO = Outputs("chatbot", "box", "state")
FOCUS = Outputs("state", SWITCHER)
VERSION = Outputs("chatbot", "state", SWITCHER)
RERENDER = Outputs("chatbot", SWITCHER)
MODELS = Outputs("model", "models_note")
GAUGE = Outputs("gauge", "context_offer")
DROP = Outputs("state", "context_offer")
TOOL_OPTIONS = Outputs("tools_box", "tool_choice")
KEY = Outputs("key_box", "key_status", "state", "banner", "model", "models_note")
T = TypeVar("T")
# Every update re-sends the whole chat to the page (Gradio diffs it after postprocessing all
# of it): 0.1 s between updates in a new chat, 0.3 s with 40 turns above (bench/load.py).
INTERVAL_PER_MESSAGE_S = 0.0025
EMPTY_BOX: dict[str, Any] = {"text": "", "files": []}  # the message box, cleared
LIVE_MARK = "● "  # a sidebar title's prefix while its conversation has an answer streaming
STREAMING_BOX: dict[str, Any] = {"submit_btn": False, "stop_btn": True}  # Stop instead of Send


def box_value(value: Any) -> tuple[str, list[str]]:
    """The message box's text and the paths of the files attached to it."""
    if isinstance(value, str):
        return value, []
    if not isinstance(value, dict):
        return "", []
    files = []
    for item in value.get("files") or []:
        path = item.get("path") if isinstance(item, dict) else item
        if isinstance(path, str) and path:
            files.append(path)
    return str(value.get("text") or ""), files


class ChatUI:
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

    def tool_label(self, name: str) -> str:
        """A tool's checkbox label: its name, ✋ when its calls need approval, and "read-only"
        when an MCP server says so (shown only: it does not skip the approval)."""
        tool = self.service.tools.get(name)
        if tool is None:
            return name
        label = f"{name} ✋" if tool.needs_approval else name
        return f"{label} (read-only)" if tool.read_only else label

    def tool_options(self) -> Updates:
        """The Tools panel's choices as the registry has them now (values left as they are)."""
        names = self.service.tools.names()
        return TOOL_OPTIONS.pack(
            tools_box=gr.update(choices=[(self.tool_label(name), name) for name in names]),
            tool_choice=gr.update(choices=["auto", "none", "required", *names]),
        )

    def mcp_credential_fields(self) -> list[tuple[str, list[str]]]:
        """Each {{user.NAME}} the MCP servers' headers ask for, with the servers asking."""
        fields: dict[str, list[str]] = {}
        for server in self.settings.mcp_servers:
            for name in server.user_fields:
                fields.setdefault(name, []).append(server.name)
        return list(fields.items())

    def credential_setter(
        self, name: str
    ) -> Callable[[str, SessionState], tuple[Any, str, SessionState]]:
        """The handler storing this session's value of {{user.NAME}} (in memory, never saved)."""

        def set_credential(value: str, state: SessionState) -> tuple[Any, str, SessionState]:
            if value.strip():
                state.mcp_credentials[name] = value.strip()
                note = f"✓ {name} set for this browser session only."
            else:
                state.mcp_credentials.pop(name, None)
                note = f"{name} cleared."
            return gr.update(value=""), note, state

        return set_credential

    def mcp_panel(self) -> str:
        """The Tools panel's lines about MCP servers: each one's tools, or why it is missing."""
        rows = self.mcp_status() if self.mcp_status is not None else []
        if not rows:
            return ""
        lines = ["**MCP servers**"]
        for row in rows:
            names = [t.name for t in self.service.tools.tools() if t.group == row["name"]]
            if row["state"] == "ready":
                lines.append(f"- {row['name']}: {', '.join(names) or 'no tools'}")
            else:
                reason = row.get("reason") or row["state"]
                lines.append(f"- {row['name']}: not available — {reason}")
        return "\n".join(lines)

    # ---- identity -------------------------------------------------------------------------
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

    # ---- loading and rendering -------------------------------------------------------------
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

    # ---- chat turns ------------------------------------------------------------------------
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
        """Start a turn and show it: the TURN outputs, frame by frame."""
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
        run = self.service.live_turn(user_id, state.conversation_id)
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
        call = None
        if state.conversation_id:
            call = self.service.approvals.resolve(user_id, state.conversation_id, approved)
        if call is None:
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

    async def _reload(self, state: SessionState, request: gr.Request) -> tuple[Any, Updates]:
        if not state.conversation_id:
            state.message_ids, state.focus_id = [], None
            return [], self._versions(state, [])
        user_id = await self.user_id(state, request)
        thread = await self._load(user_id, state.conversation_id)
        view = self._view(state, thread)
        return view.chatbot(), self._versions(state, thread.messages)

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

    # ---- conversations ---------------------------------------------------------------------
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

    # ---- settings --------------------------------------------------------------------------
    async def models_for(
        self, provider: str, state: SessionState, refresh: bool = False, current: str = ""
    ) -> Updates:
        """The model list for a provider and the note under it (MODELS)."""
        models, note = await self.model_choices(provider, state, refresh=refresh, current=current)
        return MODELS.pack(model=models, models_note=note)

    async def model_choices(
        self, provider: str, state: SessionState, refresh: bool = False, current: str = ""
    ) -> tuple[Any, str]:
        """The model Dropdown's update and the note under it (PageContext.model_choices)."""
        return await self.page.model_choices(provider, state, refresh=refresh, current=current)

    async def models_on_load(self, provider: str, state: SessionState) -> Updates:
        """The model list when the page loads, unless a conversation opened from the address
        already filled it (with that conversation's model)."""
        if state.conversation_id:
            return MODELS.skip()
        return await self.models_for(provider, state)

    async def models_note(self, provider: str, model: str, state: SessionState) -> str:
        """The note under the model list, in the page's language (after a language switch)."""
        _, note = await self.model_choices(provider, state, current=model or "")
        return note

    async def rerender(self, state: SessionState, request: gr.Request) -> Updates:
        """The open conversation and its version switcher again (after a language switch)."""
        chat, versions = await self._reload(state, request)
        return RERENDER.pack(chatbot=chat, switcher=versions)

    # ---- long conversations ----------------------------------------------------------------
    def earlier_button(self, state: SessionState) -> Any:
        """ "Show N earlier messages" above the chat, while some are not shown."""
        label = t("Show {count} earlier messages", state.lang).format(count=state.hidden)
        return gr.update(value=label, visible=state.hidden > 0)

    async def show_earlier(self, state: SessionState, request: gr.Request) -> Any:
        """Show another window of earlier messages above the ones on screen."""
        state.window += SHOWN_MESSAGES
        chat, _ = await self._reload(state, request)
        return chat

    async def gauge(
        self, state: SessionState, provider: str, model: str, system: str, request: gr.Request
    ) -> Updates:
        """The context gauge under the box, and the offer shown when a send would not fit."""
        user_id = await self.user_id(state, request)
        known = state.context_used
        if state.conversation_id and known and known[0] == state.conversation_id:
            gauge = self.service.gauge(provider, model or "", used=known[1], estimated=known[2])
        else:
            with refused_if_missing(state.lang):
                gauge = await self.service.context_gauge(
                    user_id=user_id,
                    conversation_id=state.conversation_id,
                    provider=provider,
                    model=model or "",
                    system_prompt=system or "",
                )
        offer = gr.update(visible=state.context_full)
        if gauge is None:
            return GAUGE.pack(gauge=gr.update(value="", visible=False), context_offer=offer)
        shown = gr.update(
            value=gauge.text(state.lang), visible=True, elem_classes=[f"context-{gauge.level}"]
        )
        return GAUGE.pack(gauge=shown, context_offer=offer)

    def drop_oldest(self, state: SessionState) -> Updates:
        """From now on this conversation's requests leave out the turns that do not fit."""
        state.fit_context_for, state.context_full = state.conversation_id, False
        return DROP.pack(state=state, context_offer=gr.update(visible=False))

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

    def capabilities_for(self, provider: str, model: str) -> list[Any]:
        config = self.settings.provider(provider)
        caps = self.service.capabilities.lookup(model or "", config.kind, config.name)
        return controls.visibility(caps, config.kind)

    def key_banner(self, state: SessionState) -> str:
        missing = [
            p
            for p in self.settings.providers
            if p.kind != "openai" and not p.api_key and not state.api_keys.get(p.name)
        ]
        if len(missing) < len([p for p in self.settings.providers if p.kind != "openai"]):
            return ""
        names = " / ".join(f"`{p.key_env}`" for p in missing)
        return t(
            "⚠ **No API key configured.** Set {names} in `.env` and restart, or paste a key "
            "under **Settings → API key** (kept in server memory for this browser session "
            "only, never saved).",
            state.lang,
        ).format(names=names)

    async def set_key(self, key: str, provider: str, state: SessionState) -> Updates:
        config = self.settings.provider(provider)
        if key.strip():
            state.api_keys[provider] = key.strip()
            status = f"✓ Using your key for {config.label} in this browser session only."
        else:
            state.api_keys.pop(provider, None)
            status = f"Using the server's {config.key_env}." if config.api_key else ""
        models, note = await self.model_choices(provider, state, refresh=True)
        return KEY.pack(
            key_box=gr.update(value=""),
            key_status=gr.update(value=status, visible=bool(status)),
            state=state,
            banner=self.key_banner(state),
            model=models,
            models_note=note,
        )
