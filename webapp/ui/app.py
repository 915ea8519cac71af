"""The Gradio Blocks layout and its event wiring."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import gradio as gr

from webapp.params import PARAMS
from webapp.ui import controls
from webapp.ui.api import ChatAPI
from webapp.ui.handlers import ChatUI
from webapp.ui.session import SessionState

CSS = (Path(__file__).parent / "style.css").read_text(encoding="utf-8")
LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "\\[", "right": "\\]", "display": True},
    {"left": "\\(", "right": "\\)", "display": False},
    {"left": "$", "right": "$", "display": False},
]


def build_ui(ui: ChatUI, api: ChatAPI) -> gr.Blocks:
    """Lay out the page and wire every event. Handlers live in ChatUI."""
    settings = ui.settings
    provider_choices = [(p.label, p.name) for p in settings.providers]
    with gr.Blocks(title="Parley", fill_height=True) as demo:
        state = gr.State(SessionState())
        with gr.Sidebar(open=True, elem_id="sidebar"):
            gr.Markdown("### Parley")
            new_btn = gr.Button("＋ New chat", variant="primary", elem_id="new-chat")
            search = gr.Textbox(placeholder="Search titles and messages…", show_label=False,
                                elem_id="search", max_lines=1)
            conversations = gr.Radio(choices=[], label="Conversations", elem_id="conversations")
            with gr.Accordion("Rename or delete", open=False, elem_id="manage"):
                title_box = gr.Textbox(label="Title", max_lines=1, elem_id="title")
                rename_btn = gr.Button("Rename", size="sm", elem_id="rename")
                delete_btn = gr.Button("Delete…", size="sm", variant="stop", elem_id="delete")
                with gr.Row(visible=False) as confirm_row:
                    confirm_btn = gr.Button("Really delete", size="sm", variant="stop",
                                            elem_id="confirm-delete")
                    cancel_btn = gr.Button("Keep it", size="sm", elem_id="cancel-delete")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4):
                banner = gr.Markdown(elem_id="banner")
                chatbot = gr.Chatbot(
                    elem_id="chatbot", height="68vh", editable="user", latex_delimiters=LATEX,
                    buttons=["copy", "copy_all"], sanitize_html=True, render_markdown=True,
                    placeholder="Ask anything. Answers stream here; reasoning shows in "
                                "a Thinking block.",
                )
                with gr.Row(elem_id="versions"):
                    prev_btn = gr.Button("◀", size="sm", visible=False, elem_id="prev-version",
                                         scale=0, min_width=40)
                    version_label = gr.Markdown(visible=False, elem_id="version-label")
                    next_btn = gr.Button("▶", size="sm", visible=False, elem_id="next-version",
                                         scale=0, min_width=40)
                box = gr.Textbox(placeholder="Message (Enter sends, Shift+Enter adds a line)",
                                 show_label=False, lines=1, max_lines=12, elem_id="message",
                                 submit_btn=True, stop_btn=True, autofocus=True)
            with gr.Column(scale=2, elem_id="settings"):
                gr.Markdown("#### Settings")
                provider = gr.Dropdown(provider_choices, value=settings.default_provider,
                                       label="Provider", elem_id="provider")
                with gr.Row():
                    model = gr.Dropdown([], label="Model", allow_custom_value=True,
                                        elem_id="model", scale=4, filterable=True)
                    refresh_btn = gr.Button("⟳", size="sm", scale=0, min_width=40,
                                            elem_id="refresh-models")
                models_note = gr.Markdown(elem_id="models-note")
                key_box = gr.Textbox(label="API key (this browser session only)",
                                     type="password", max_lines=1, elem_id="api-key",
                                     placeholder="Paste a key and press Enter")
                key_status = gr.Markdown(elem_id="key-status")
                system = gr.Textbox(label="System prompt", lines=3, elem_id="system-prompt")
                param_controls = []
                for p in PARAMS:
                    if not p.advanced:
                        param_controls.append(controls.make_control(p))
                with gr.Accordion("Advanced parameters", open=False, elem_id="advanced"):
                    for p in PARAMS:
                        if p.advanced:
                            param_controls.append(controls.make_control(p))
        # Put controls back in PARAMS order (basic ones were created first).
        by_id = {c.elem_id: c for c in param_controls}
        params = [by_id[f"param-{p.name}"] for p in PARAMS]

        turn_inputs = [state, provider, model, system, *params]
        turn_outputs = [chatbot, box, state]
        after = dict(fn=ui.after_turn, inputs=[state, search],
                     outputs=[chatbot, state, version_label, prev_btn, next_btn, conversations],
                     api_visibility="private")
        private = {"api_visibility": "private"}

        send_event = box.submit(ui.send, [box, *turn_inputs], turn_outputs, **private)
        send_event.then(**after)
        retry_event = chatbot.retry(ui.regenerate, turn_inputs, turn_outputs, **private)
        retry_event.then(**after)
        edit_event = chatbot.edit(ui.edit, turn_inputs, turn_outputs, **private)
        edit_event.then(**after)
        box.stop(None, None, None, cancels=[send_event, retry_event, edit_event], **private).then(
            **after)
        chatbot.undo(ui.undo, [state], [chatbot, box, state], **private).then(**after)
        chatbot.like(ui.feedback, [state], None, **private)
        chatbot.clear(ui.new_chat, [state],
                      [chatbot, state, title_box, conversations, version_label, prev_btn,
                       next_btn], **private)
        chatbot.select(ui.focus, [state], [state, version_label, prev_btn, next_btn], **private)
        version_outputs = [chatbot, state, version_label, prev_btn, next_btn]
        prev_btn.click(partial(ui.switch_version, step=-1), [state], version_outputs, **private)
        next_btn.click(partial(ui.switch_version, step=1), [state], version_outputs, **private)

        open_outputs = [chatbot, state, title_box, system, provider, model, version_label,
                        prev_btn, next_btn, *params]
        conversations.input(ui.open, [conversations, state], open_outputs, **private)
        new_btn.click(ui.new_chat, [state],
                      [chatbot, state, title_box, conversations, version_label, prev_btn,
                       next_btn], **private)
        search.change(ui.sidebar, [state, search], [conversations], **private,
                      trigger_mode="always_last")
        rename_btn.click(ui.rename, [title_box, state, search], [conversations], **private)
        title_box.submit(ui.rename, [title_box, state, search], [conversations], **private)
        delete_btn.click(lambda: gr.update(visible=True), None, [confirm_row], **private)
        cancel_btn.click(lambda: gr.update(visible=False), None, [confirm_row], **private)
        confirm_btn.click(ui.delete, [state, search],
                          [chatbot, state, title_box, conversations, version_label, prev_btn,
                           next_btn, conversations, confirm_row], **private)

        provider.change(ui.models_for, [provider, state], [model, models_note], **private)
        refresh_btn.click(partial(ui.models_for, refresh=True), [provider, state],
                          [model, models_note], **private)
        model.change(ui.capabilities_for, [provider, model], params, **private)
        key_box.submit(ui.set_key, [key_box, provider, state],
                       [key_box, key_status, state, banner, model, models_note], **private)

        demo.load(ui.key_banner, [state], [banner], **private)
        demo.load(ui.sidebar, [state, search], [conversations], **private)
        demo.load(ui.models_for, [provider, state], [model, models_note], **private)

        gr.api(api.chat, api_name="chat", api_description=api.chat.__doc__)
    return demo
