"""The Chat tab's conversation column (the chat, the message box, the version switcher, the
context gauge, the approval panel) and the wiring of its turns.

`build_chat_column` lays it out and returns its components by name; `wire_turns` hooks every
event that starts, follows, stops or steps through a turn to ChatUI (webapp/ui/handlers/),
with each event's outputs named once in handlers/events.py (TURN, AFTER, VERSION, …).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.events import Dependency

from webapp.config import Settings
from webapp.ui.handlers import events as h
from webapp.ui.handlers.chat import ChatUI
from webapp.ui.message_box import uploads_only
from webapp.ui.outputs import HIDDEN, PRIVATE, Outputs
from webapp.ui.safe_markup import chatbot_latex

LATEX = chatbot_latex()  # every Chatbot showing chat text uses these (see safe_markup)


@dataclass
class ChatColumn:
    """The conversation column's components."""

    banner: gr.Markdown
    earlier_btn: gr.Button
    chatbot: gr.Chatbot
    version_label: gr.Markdown
    prev_btn: gr.Button
    next_btn: gr.Button
    use_btn: gr.Button
    box: gr.MultimodalTextbox
    gauge: gr.Markdown
    context_offer: gr.Row
    drop_btn: gr.Button
    summary_btn: gr.Button
    links: gr.Textbox
    link_kind: gr.Radio
    approval_panel: gr.Group
    approval_text: gr.Markdown
    approve_btn: gr.Button
    deny_btn: gr.Button

    @property
    def switcher(self) -> list[Any]:
        """The version switcher (handlers.SWITCHER): label, ◀, ▶, "Use this version"."""
        return [self.version_label, self.prev_btn, self.next_btn, self.use_btn]


def build_chat_column(settings: Settings) -> ChatColumn:
    """Lay out the column; call inside the Chat tab's column.

    Long: layout, one component after another in the order the page shows them."""
    banner = gr.Markdown(elem_id="banner")
    earlier_btn = gr.Button(
        "Show earlier messages", size="sm", visible=False, elem_id="show-earlier"
    )
    chatbot = gr.Chatbot(
        elem_id="chatbot",
        show_label=False,
        height="68vh",
        editable="user",
        latex_delimiters=LATEX,
        buttons=["copy", "copy_all"],
        sanitize_html=True,
        render_markdown=True,
        placeholder="Ask anything. Answers stream here; reasoning shows in a Thinking block.",
    )
    with gr.Row(elem_id="versions"):
        prev_btn = gr.Button(
            "◀", size="sm", visible=False, scale=0, min_width=40, elem_id="prev-version"
        )
        version_label = gr.Markdown(visible=False, elem_id="version-label")
        next_btn = gr.Button(
            "▶", size="sm", visible=False, scale=0, min_width=40, elem_id="next-version"
        )
        use_btn = gr.Button(
            "Use this version",
            size="sm",
            visible=False,
            scale=0,
            min_width=140,
            elem_id="use-version",
        )
    box = uploads_only(
        gr.MultimodalTextbox(
            placeholder=(
                "Message (Enter sends, Shift+Enter adds a line; paste, drop or attach images)"
            ),
            show_label=False,
            lines=1,
            max_lines=12,
            elem_id="message",
            submit_btn=True,
            stop_btn=True,
            autofocus=True,
            sources=["upload"],
            file_types=["image"],
            file_count="multiple",
            # Long pasted text stays text (Gradio would turn it into a file).
            max_plain_text_length=settings.max_message_chars,
        )
    )
    box.stop_btn = False  # the stop button shows only while an answer streams
    gauge = gr.Markdown(visible=False, elem_id="context-gauge")
    with gr.Row(visible=False, elem_id="context-full") as context_offer:
        drop_btn = gr.Button("Drop the oldest turns and send", size="sm", elem_id="drop-oldest")
        summary_btn = gr.Button("New chat with a summary", size="sm", elem_id="summary-chat")
    with gr.Accordion("Attach a link (image or video)", open=False, elem_id="attach-links"):
        links = gr.Textbox(
            placeholder="https://… one link per line",
            show_label=False,
            lines=1,
            max_lines=4,
            elem_id="attach-url",
        )
        link_kind = gr.Radio(
            [
                ("Auto (.mp4, .webm, .mov are video)", "auto"),
                ("Image", "image"),
                ("Video", "video"),
            ],
            value="auto",
            label="Links are",
            elem_id="attach-kind",
        )
    with gr.Group(visible=False, elem_id="approval") as approval_panel:
        approval_text = gr.Markdown(elem_id="approval-text")
        with gr.Row():
            approve_btn = gr.Button("Approve", variant="primary", size="sm", elem_id="approve-tool")
            deny_btn = gr.Button("Deny", variant="stop", size="sm", elem_id="deny-tool")
    return ChatColumn(
        banner=banner,
        earlier_btn=earlier_btn,
        chatbot=chatbot,
        version_label=version_label,
        prev_btn=prev_btn,
        next_btn=next_btn,
        use_btn=use_btn,
        box=box,
        gauge=gauge,
        context_offer=context_offer,
        drop_btn=drop_btn,
        summary_btn=summary_btn,
        links=links,
        link_kind=link_kind,
        approval_panel=approval_panel,
        approval_text=approval_text,
        approve_btn=approve_btn,
        deny_btn=deny_btn,
    )


@dataclass
class TurnEvents:
    """Events other parts of the page chain onto."""

    summarized: Dependency  # after "New chat with a summary" wrote the summary
    then_gauge: Callable[[Dependency], Dependency]  # the context gauge after an event


def wire_turns(ui: ChatUI, chat: ChatColumn, *panels: object) -> TurnEvents:
    """Hook the column's events to ChatUI. `panels` (the page, the settings panel, the
    sidebar) hold the other components the events read or update, by name.

    Long: wiring, one event chain after another; each chain reads top to bottom as the page runs
    it."""

    def names(outputs: Outputs) -> list[Any]:
        return outputs.components(chat, *panels)

    def find(name: str) -> Any:
        holder = next(p for p in (chat, *panels) if hasattr(p, name))
        return getattr(holder, name)

    state, search = find("state"), find("search")
    turn_inputs = [state, *(find(n) for n in ("provider", "model", "system", "tools_box"))]
    turn_inputs += [find("tool_choice"), *find("params")]
    send_inputs = [chat.box, chat.links, chat.link_kind, *turn_inputs]
    gauge_inputs = [state, find("provider"), find("model"), find("system")]

    def then_gauge(event: Dependency) -> Dependency:
        """The context gauge again (and the offer, after a send that would not fit)."""
        followed: Dependency = event.then(
            ui.gauge,
            gauge_inputs,
            names(h.GAUGE),
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        return followed

    def then_refresh(event: Dependency) -> Dependency:
        """After a turn: re-render from the database and refresh the sidebar, then Send
        comes back (the turn is over once what it shows is final), and the gauge."""
        refreshed: Dependency = event.then(
            ui.after_turn,
            [state, search],
            names(h.AFTER),
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        refreshed.then(
            lambda: (gr.update(submit_btn=True, stop_btn=False), gr.update(visible=False)),
            None,
            [chat.box, chat.approval_panel],
            queue=False,
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        then_gauge(refreshed)
        return refreshed

    def show_stop(trigger: Callable[..., Dependency], **options: Any) -> None:
        """While a turn streams, the box shows Stop instead of Send, and the version
        switcher hides (picking a version then would hide the answer being streamed)."""
        trigger(
            lambda: (
                gr.update(submit_btn=False, stop_btn=True),
                *(gr.update(visible=False) for _ in chat.switcher),
            ),
            None,
            [chat.box, *chat.switcher],
            queue=False,
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
            **options,
        )

    for trigger in (chat.box.submit, chat.chatbot.retry, chat.chatbot.edit):
        show_stop(trigger)
    # Only the chat shows that a turn is waiting for its first words, not the sidebar or the
    # message box it also updates.
    on_chat = chat.chatbot
    for trigger, handler, inputs, outputs in (
        (chat.box.submit, ui.send, send_inputs, h.SEND),
        (chat.chatbot.retry, ui.regenerate, turn_inputs, h.TURN),
        (chat.chatbot.edit, ui.edit, turn_inputs, h.TURN),
    ):
        then_refresh(
            trigger(
                handler, inputs, names(outputs), api_visibility=PRIVATE, show_progress_on=on_chat
            )
        )
    # Stop ends the run (in every tab that shows it); the turn's own event then ends too.
    # Closing or reloading the page does not: the answer goes on, and reopening the
    # conversation follows it live (follow_live, wired with the sidebar).
    then_refresh(chat.box.stop(ui.stop_run, [state], None, api_visibility=PRIVATE))
    then_refresh(
        chat.chatbot.undo(
            ui.undo, [state], names(h.UNDO), api_visibility=PRIVATE, show_progress=HIDDEN
        )
    )
    chat.chatbot.like(ui.feedback, [state], None, api_visibility=PRIVATE)
    chat.approve_btn.click(ui.approve, [state], None, api_visibility=PRIVATE)
    chat.deny_btn.click(ui.deny, [state], None, api_visibility=PRIVATE)
    then_gauge(
        chat.chatbot.clear(
            ui.new_chat, [state], names(h.NEW_CHAT), api_visibility=PRIVATE, show_progress=HIDDEN
        )
    )
    # "Show N earlier messages" while a long conversation shows only its last ones.
    chat.chatbot.change(
        ui.earlier_button,
        [state],
        [chat.earlier_btn],
        queue=False,
        api_visibility=PRIVATE,
        show_progress=HIDDEN,
    )
    chat.earlier_btn.click(ui.show_earlier, [state], [chat.chatbot], api_visibility=PRIVATE)
    # A send that would not fit the model's context: drop the oldest turns and send, or
    # summarize this chat and continue in a new one (the message stays in the box).
    show_stop(chat.drop_btn.click)
    then_refresh(
        chat.drop_btn.click(
            ui.drop_oldest, [state], names(h.DROP), api_visibility=PRIVATE, show_progress=HIDDEN
        ).then(ui.send, send_inputs, names(h.SEND), api_visibility=PRIVATE)
    )
    show_stop(chat.summary_btn.click)
    summarized = then_refresh(
        chat.summary_btn.click(ui.summarize, turn_inputs, names(h.TURN), api_visibility=PRIVATE)
    )
    chat.chatbot.select(
        ui.focus, [state], names(h.FOCUS), api_visibility=PRIVATE, show_progress=HIDDEN
    )
    for button, switch in (
        (chat.prev_btn, ui.previous_version),
        (chat.next_btn, ui.next_version),
        (chat.use_btn, ui.use_version),
    ):
        button.click(
            switch, [state], names(h.VERSION), api_visibility=PRIVATE, show_progress=HIDDEN
        )
    return TurnEvents(summarized=summarized, then_gauge=then_gauge)
