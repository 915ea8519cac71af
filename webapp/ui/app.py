"""The Gradio Blocks layout and its event wiring."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import gradio as gr
from gradio.events import Dependency

from webapp.params import PARAMS
from webapp.safe_markup import chatbot_latex
from webapp.ui import controls, presentation, translate
from webapp.ui.api import ChatAPI
from webapp.ui.compare_tab import CompareUI, build_compare_tab, wire_compare
from webapp.ui.handlers import ChatUI
from webapp.ui.keys_ui import KeysUI, build_keys_panel
from webapp.ui.message_box import uploads_only
from webapp.ui.presets_ui import PresetsUI, build_presets_row, wire_presets
from webapp.ui.session import SessionState
from webapp.ui.team import PERIODS, USAGE_COLUMNS, TeamUI

PRIVATE: Literal["private"] = "private"  # UI events: callable by the page, not listed as API
# No progress overlay or "•••" bubble on what an event only refills: it flashes for the
# fraction of a second the event takes, after every answer and on every conversation opened.
HIDDEN: Literal["hidden"] = "hidden"
CSS = (Path(__file__).parent / "style.css").read_text(encoding="utf-8")
LATEX = chatbot_latex()  # every Chatbot showing chat text uses these (see safe_markup)


def build_credential_boxes(ui: ChatUI, state: gr.State) -> None:
    """One password box per {{user.NAME}} that MCP servers' headers ask for (session only)."""
    fields = ui.mcp_credential_fields()
    if not fields:
        return
    status = gr.Markdown(elem_id="mcp-credential-status")
    for name, servers in fields:
        box = gr.Textbox(
            label=f"{name} for {', '.join(servers)} (this browser session only)",
            type="password",
            max_lines=1,
            placeholder="Paste your value and press Enter",
            elem_id=f"mcp-credential-{name}",
        )
        box.submit(
            ui.credential_setter(name), [box, state], [box, status, state], api_visibility=PRIVATE
        )


def build_ui(
    ui: ChatUI, api: ChatAPI, team: TeamUI, compare: CompareUI, keys: KeysUI | None = None
) -> gr.Blocks:
    """Lay out the page and wire every event. Handlers live in ChatUI and TeamUI."""
    settings = ui.settings
    provider_choices = [(p.label, p.name) for p in settings.providers]
    # delete_cache: exports and uploads Gradio copied into its cache go after an hour.
    demo: gr.Blocks
    with gr.Blocks(title="Parley", delete_cache=(3600, 3600)) as demo:
        state = gr.State(SessionState())
        stored_lang = gr.BrowserState("", storage_key="parley-lang")
        with gr.Sidebar(open=True, elem_id="sidebar"):
            gr.Markdown("### Parley")
            # Language and view first: a long conversation list must not push them away.
            language = translate.language_picker()
            presentation.build_view_controls()
            new_btn = gr.Button("+ New chat", variant="primary", elem_id="new-chat")
            search = gr.Textbox(
                placeholder="Search titles and messages…",
                show_label=False,
                elem_id="search",
                max_lines=1,
            )
            conversations = gr.Radio(choices=[], label="Conversations", elem_id="conversations")
            with gr.Accordion("Rename or delete", open=False, elem_id="manage"):
                title_box = gr.Textbox(label="Title", max_lines=1, elem_id="title")
                rename_btn = gr.Button("Rename", size="sm", elem_id="rename")
                delete_btn = gr.Button("Delete…", size="sm", variant="stop", elem_id="delete")
                with gr.Row(visible=False) as confirm_row:
                    confirm_btn = gr.Button(
                        "Really delete", size="sm", variant="stop", elem_id="confirm-delete"
                    )
                    cancel_btn = gr.Button("Keep it", size="sm", elem_id="cancel-delete")
            with gr.Accordion("Share and export", open=False, elem_id="share-export"):
                share_btn = gr.Button("Create share link", size="sm", elem_id="share")
                revoke_btn = gr.Button("Revoke links", size="sm", elem_id="revoke-shares")
                share_note = gr.Markdown(elem_id="share-note")
                with gr.Row():
                    md_btn = gr.Button("Markdown", size="sm", elem_id="export-md")
                    json_btn = gr.Button("JSON", size="sm", elem_id="export-json")
                all_btn = gr.Button("All my data (JSON)", size="sm", elem_id="export-all")
                # A link to Parley's own download route (webapp/downloads.py), not a gr.File:
                # Gradio would serve its cached copy to anyone signed in who has the URL.
                download = gr.Markdown(visible=False, elem_id="download")
                import_btn = gr.UploadButton(
                    "Import JSON…", size="sm", file_types=[".json"], elem_id="import"
                )
            with gr.Accordion("Admin", open=False, visible=False, elem_id="admin") as admin:
                period = gr.Dropdown(
                    list(PERIODS), value="Last 24 hours", label="Usage", elem_id="usage-period"
                )
                usage_table = gr.Dataframe(
                    headers=USAGE_COLUMNS, interactive=False, elem_id="usage"
                )
                limit_user = gr.Textbox(label="User", max_lines=1, elem_id="limit-user")
                with gr.Row():
                    limit_rpm = gr.Textbox(
                        label="Requests/min",
                        max_lines=1,
                        placeholder="no limit",
                        elem_id="limit-rpm",
                    )
                    limit_tokens = gr.Textbox(
                        label="Tokens/day",
                        max_lines=1,
                        placeholder="no limit",
                        elem_id="limit-tokens",
                    )
                limits_btn = gr.Button("Set limits", size="sm", elem_id="set-limits")
                limits_note = gr.Markdown(elem_id="limits-note")
        account_note = account_bar(ui.settings.auth_mode)
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Chat", id="chat"), gr.Row(equal_height=False):
                with gr.Column(scale=4):
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
                        placeholder="Ask anything. Answers stream here; reasoning shows in "
                        "a Thinking block.",
                    )
                    with gr.Row(elem_id="versions"):
                        prev_btn = gr.Button(
                            "◀",
                            size="sm",
                            visible=False,
                            elem_id="prev-version",
                            scale=0,
                            min_width=40,
                        )
                        version_label = gr.Markdown(visible=False, elem_id="version-label")
                        next_btn = gr.Button(
                            "▶",
                            size="sm",
                            visible=False,
                            elem_id="next-version",
                            scale=0,
                            min_width=40,
                        )
                        use_btn = gr.Button(
                            "Use this version",
                            size="sm",
                            visible=False,
                            elem_id="use-version",
                            scale=0,
                            min_width=140,
                        )
                    box = uploads_only(
                        gr.MultimodalTextbox(
                            placeholder=(
                                "Message (Enter sends, Shift+Enter adds a line; paste, drop "
                                "or attach images)"
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
                            max_plain_text_length=ui.settings.max_message_chars,
                        )
                    )
                    box.stop_btn = False  # the stop button shows only while an answer streams
                    gauge = gr.Markdown(visible=False, elem_id="context-gauge")
                    with gr.Row(visible=False, elem_id="context-full") as context_offer:
                        drop_btn = gr.Button(
                            "Drop the oldest turns and send", size="sm", elem_id="drop-oldest"
                        )
                        summary_btn = gr.Button(
                            "New chat with a summary", size="sm", elem_id="summary-chat"
                        )
                    with gr.Accordion(
                        "Attach a link (image or video)", open=False, elem_id="attach-links"
                    ):
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
                            approve_btn = gr.Button(
                                "Approve", variant="primary", size="sm", elem_id="approve-tool"
                            )
                            deny_btn = gr.Button(
                                "Deny", variant="stop", size="sm", elem_id="deny-tool"
                            )
                with gr.Column(scale=2, elem_id="settings"):
                    gr.Markdown("#### Settings")
                    presets = PresetsUI(ui)
                    preset_row = build_presets_row(presets)
                    provider = gr.Dropdown(
                        provider_choices,
                        value=settings.default_provider,
                        label="Provider",
                        elem_id="provider",
                    )
                    with gr.Row(elem_id="model-row"):
                        model = gr.Dropdown(
                            [],
                            label="Model",
                            allow_custom_value=True,
                            elem_id="model",
                            scale=4,
                            filterable=True,
                        )
                        refresh_btn = gr.Button(
                            "⟳", size="sm", scale=0, min_width=40, elem_id="refresh-models"
                        )
                    models_note = gr.Markdown(elem_id="models-note")
                    key_box = gr.Textbox(
                        label="API key (this browser session only)",
                        type="password",
                        max_lines=1,
                        elem_id="api-key",
                        placeholder="Paste a key and press Enter",
                    )
                    key_status = gr.Markdown(elem_id="key-status", visible=False)
                    if keys is not None:
                        build_keys_panel(keys, state)
                    system = gr.Textbox(label="System prompt", lines=3, elem_id="system-prompt")
                    tool_names = ui.service.tools.names()
                    with gr.Accordion("Tools", open=bool(ui.default_tools), elem_id="tools-panel"):
                        tools_box = gr.CheckboxGroup(
                            [(ui.tool_label(name), name) for name in tool_names],
                            value=list(ui.default_tools),
                            label="Offered to the model",
                            info="The model may call these; each call and its result show in the "
                            "chat. Calls marked ✋ wait for your approval.",
                            elem_id="tools",
                        )
                        tool_choice = gr.Dropdown(
                            ["auto", "none", "required", *tool_names],
                            value="auto",
                            label="Tool choice",
                            info="auto: the model decides · none: no calls · required: at least "
                            "one call · a name: that tool.",
                            elem_id="tool-choice",
                        )
                        mcp_status = None
                        if ui.settings.mcp_servers:  # nothing at all without MCP servers
                            mcp_status = gr.Markdown(ui.mcp_panel(), elem_id="mcp-status")
                        build_credential_boxes(ui, state)
                    param_controls = []
                    for p in PARAMS:
                        if not p.advanced:
                            param_controls.append(controls.make_control(p))
                    with gr.Accordion("Advanced parameters", open=False, elem_id="advanced"):
                        for p in PARAMS:
                            if p.advanced:
                                param_controls.append(controls.make_control(p))
            with gr.Tab("Compare", id="compare"):
                compare_tab = build_compare_tab(compare, state=state)
        # Put controls back in PARAMS order (basic ones were created first).
        by_id = {c.elem_id: c for c in param_controls}
        params = [by_id[f"param-{p.name}"] for p in PARAMS]
        wire_presets(
            preset_row,
            presets,
            state=state,
            system=system,
            provider=provider,
            model=model,
            tools_box=tools_box,
            tool_choice=tool_choice,
            params=params,
            demo=demo,
        )

        switcher = [version_label, prev_btn, next_btn, use_btn]
        turn_inputs = [state, provider, model, system, tools_box, tool_choice, *params]
        turn_outputs = [chatbot, box, state, approval_panel, approval_text, conversations]
        after_outputs = [chatbot, state, *switcher, conversations]

        gauge_inputs = [state, provider, model, system]

        def then_gauge(event: Dependency) -> Dependency:
            """The context gauge again (and the offer, after a send that would not fit)."""
            followed: Dependency = event.then(
                ui.gauge,
                gauge_inputs,
                [gauge, context_offer],
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
                after_outputs,
                api_visibility=PRIVATE,
                show_progress=HIDDEN,
            )
            refreshed.then(
                lambda: (gr.update(submit_btn=True, stop_btn=False), gr.update(visible=False)),
                None,
                [box, approval_panel],
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
                    *(gr.update(visible=False) for _ in switcher),
                ),
                None,
                [box, *switcher],
                queue=False,
                api_visibility=PRIVATE,
                show_progress=HIDDEN,
                **options,
            )

        for trigger in (box.submit, chatbot.retry, chatbot.edit):
            show_stop(trigger)
        # Only the chat shows that a turn is waiting for its first words, not the sidebar or the
        # message box it also updates.
        send_event = box.submit(
            ui.send,
            [box, links, link_kind, *turn_inputs],
            [*turn_outputs, links],
            api_visibility=PRIVATE,
            show_progress_on=chatbot,
        )
        then_refresh(send_event)
        retry_event = chatbot.retry(
            ui.regenerate,
            turn_inputs,
            turn_outputs,
            api_visibility=PRIVATE,
            show_progress_on=chatbot,
        )
        then_refresh(retry_event)
        edit_event = chatbot.edit(
            ui.edit, turn_inputs, turn_outputs, api_visibility=PRIVATE, show_progress_on=chatbot
        )
        then_refresh(edit_event)
        # Stop ends the run (in every tab that shows it); the turn's own event then ends too.
        # Closing or reloading the page does not: the answer goes on, and reopening the
        # conversation follows it live (attach below).
        then_refresh(box.stop(ui.stop_run, [state], None, api_visibility=PRIVATE))
        then_refresh(
            chatbot.undo(
                ui.undo,
                [state],
                [chatbot, box, state],
                api_visibility=PRIVATE,
                show_progress=HIDDEN,
            )
        )
        chatbot.like(ui.feedback, [state], None, api_visibility=PRIVATE)
        approve_btn.click(ui.approve, [state], None, api_visibility=PRIVATE)
        deny_btn.click(ui.deny, [state], None, api_visibility=PRIVATE)
        new_chat_outputs = [
            chatbot,
            state,
            title_box,
            conversations,
            *switcher,
        ]
        then_gauge(
            chatbot.clear(
                ui.new_chat, [state], new_chat_outputs, api_visibility=PRIVATE, show_progress=HIDDEN
            )
        )
        # "Show N earlier messages" while a long conversation shows only its last ones.
        chatbot.change(
            ui.earlier_button,
            [state],
            [earlier_btn],
            queue=False,
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        earlier_btn.click(ui.show_earlier, [state], [chatbot], api_visibility=PRIVATE)
        # A send that would not fit the model's context: drop the oldest turns and send, or
        # summarize this chat and continue in a new one (the message stays in the box).
        show_stop(drop_btn.click)
        then_refresh(
            drop_btn.click(
                ui.drop_oldest,
                [state],
                [state, context_offer],
                api_visibility=PRIVATE,
                show_progress=HIDDEN,
            ).then(
                ui.send,
                [box, links, link_kind, *turn_inputs],
                [*turn_outputs, links],
                api_visibility=PRIVATE,
            )
        )
        show_stop(summary_btn.click)
        summarized = then_refresh(
            summary_btn.click(ui.summarize, turn_inputs, turn_outputs, api_visibility=PRIVATE)
        )
        chatbot.select(
            ui.focus, [state], [state, *switcher], api_visibility=PRIVATE, show_progress=HIDDEN
        )
        version_outputs = [chatbot, state, *switcher]
        for button, switch in (
            (prev_btn, ui.previous_version),
            (next_btn, ui.next_version),
            (use_btn, ui.use_version),
        ):
            button.click(
                switch, [state], version_outputs, api_visibility=PRIVATE, show_progress=HIDDEN
            )

        open_outputs = [
            chatbot,
            state,
            title_box,
            system,
            provider,
            model,
            models_note,
            tools_box,
            tool_choice,
            *switcher,
            *params,
        ]
        open_event = conversations.input(
            ui.open,
            [conversations, state],
            open_outputs,
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        # A conversation opened from its link (?c=…, kept in the address bar), as after a
        # reload: shown, selected in the sidebar, and followed live if an answer streams.
        # Read again at each page load: MCP servers come and go while Parley runs.
        if mcp_status is not None:
            demo.load(
                ui.mcp_panel, None, [mcp_status], api_visibility=PRIVATE, show_progress=HIDDEN
            )
            # MCP servers' tool lists change while Parley runs: a page loaded later lists them.
            demo.load(
                ui.tool_options,
                None,
                [tools_box, tool_choice],
                api_visibility=PRIVATE,
                show_progress=HIDDEN,
            )
        url_open = demo.load(
            ui.open_from_url, [state], open_outputs, api_visibility=PRIVATE, show_progress="hidden"
        ).then(
            ui.sidebar,
            [state, search],
            [conversations],
            api_visibility=PRIVATE,
            show_progress="hidden",
        )
        continued = summarized.then(
            ui.continue_from_summary, [state], open_outputs, api_visibility=PRIVATE
        )
        then_gauge(
            continued.then(
                ui.sidebar,
                [state, search],
                [conversations],
                api_visibility=PRIVATE,
                show_progress="hidden",
            )
        )
        model.change(
            ui.gauge,
            gauge_inputs,
            [gauge, context_offer],
            api_visibility=PRIVATE,
            show_progress="hidden",
        )
        for opened in (open_event, url_open):
            then_gauge(opened)
            opened.then(
                ui.follow_live, [state], turn_outputs, api_visibility=PRIVATE, show_progress=HIDDEN
            ).then(
                ui.after_following,
                [state, search],
                [*after_outputs, box],
                api_visibility=PRIVATE,
                show_progress=HIDDEN,
            )

        then_gauge(
            new_btn.click(
                ui.new_chat, [state], new_chat_outputs, api_visibility=PRIVATE, show_progress=HIDDEN
            )
        )
        search.change(
            ui.sidebar,
            [state, search],
            [conversations],
            api_visibility=PRIVATE,
            trigger_mode="always_last",
            show_progress=HIDDEN,
        )
        for renamed in (rename_btn.click, title_box.submit):
            renamed(
                ui.rename,
                [title_box, state, search],
                [conversations],
                api_visibility=PRIVATE,
                show_progress=HIDDEN,
            )
        delete_btn.click(
            lambda: gr.update(visible=True),
            None,
            [confirm_row],
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        cancel_btn.click(
            lambda: gr.update(visible=False),
            None,
            [confirm_row],
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        confirm_btn.click(
            ui.delete,
            [state, search],
            [*new_chat_outputs, confirm_row],
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )

        # .select, not .change: opening a conversation sets provider and model together (and
        # Gradio 6.31 fires a Dropdown's .input twice per pick).
        provider.select(
            ui.models_for,
            [provider, state],
            [model, models_note],
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        refresh_btn.click(  # asked for: a small spinner says the list is being fetched
            partial(ui.models_for, refresh=True),
            [provider, state],
            [model, models_note],
            api_visibility=PRIVATE,
            show_progress="minimal",
        )
        model.change(
            ui.capabilities_for,
            [provider, model],
            params,
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        key_box.submit(
            ui.set_key,
            [key_box, provider, state],
            [key_box, key_status, state, banner, model, models_note],
            api_visibility=PRIVATE,
        )

        share_btn.click(team.share, [state], [share_note], api_visibility=PRIVATE)
        revoke_btn.click(team.revoke, [state], [share_note], api_visibility=PRIVATE)
        md_btn.click(team.export_markdown, [state], [download], api_visibility=PRIVATE)
        json_btn.click(team.export_json, [state], [download], api_visibility=PRIVATE)
        all_btn.click(team.export_everything, [state], [download], api_visibility=PRIVATE)
        import_btn.upload(
            team.import_file,
            [import_btn, state, search],
            [conversations],
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        demo.load(
            team.admin_visible, [state], [admin], api_visibility=PRIVATE, show_progress=HIDDEN
        )
        period.change(team.usage, [period, state], [usage_table], api_visibility=PRIVATE)
        admin.expand(team.usage, [period, state], [usage_table], api_visibility=PRIVATE)
        limits_btn.click(
            team.set_limits,
            [limit_user, limit_rpm, limit_tokens, state],
            [limits_note],
            api_visibility=PRIVATE,
        )

        wire_compare(
            compare,
            compare_tab,
            demo=demo,
            sidebar_refresh=lambda event: event.then(
                ui.sidebar,
                [state, search],
                [conversations],
                api_visibility=PRIVATE,
                show_progress=HIDDEN,
            ),
            conversations=conversations,
            tabs=tabs,
            after_open=[open_event, url_open],
        )

        api_components = wire_chat_api(api)
        # Text the server writes on load follows the language, so it waits for it.
        language_known, switched = wire_language(
            demo, state, stored_lang, language, skip=api_components
        )
        for event in (language_known, switched):
            event.then(
                ui.key_banner, [state], [banner], api_visibility=PRIVATE, show_progress=HIDDEN
            )
            if account_note is not None:
                event.then(
                    ui.signed_in,
                    [state],
                    [account_note],
                    api_visibility=PRIVATE,
                    show_progress=HIDDEN,
                )
        # What is already on screen is written again in the new language.
        switched.then(
            ui.rerender, [state], [chatbot, *switcher], api_visibility=PRIVATE, show_progress=HIDDEN
        )
        switched.then(
            ui.models_note,
            [provider, model, state],
            [models_note],
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        switched.then(
            compare.refresh,
            compare_tab.refresh_inputs,
            compare_tab.view_outputs,
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        language_known.then(
            ui.models_for,
            [provider, state],
            [model, models_note],
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
    return demo


def account_bar(auth_mode: str) -> gr.Markdown | None:
    """The header line: who is signed in and, with accounts, Sign out (none without login)."""
    if auth_mode not in ("accounts", "header"):
        return None
    with gr.Row(elem_id="account"):
        note = gr.Markdown(elem_id="signed-in")
        if auth_mode == "accounts":  # behind a sign-in proxy, signing out is the proxy's
            # page.js signs out with a POST: GET /logout is refused (webapp/web_security.py).
            gr.Button("Sign out", size="sm", elem_id="sign-out", scale=0, min_width=90)
    return note


def wire_language(
    demo: gr.Blocks, state: gr.State, stored: gr.BrowserState, language: gr.Radio, skip: list[Any]
) -> tuple[Dependency, Dependency]:
    """Translate the page on load (stored choice or browser language) and on a switch."""
    translations = translate.Translations(translate.collect(demo, skip=skip))
    outputs = translations.components
    loaded = demo.load(
        translations.on_load,
        [state, stored],
        [language, *outputs],
        api_visibility=PRIVATE,
        show_progress="hidden",
    )
    switched = language.input(
        translations.switch,
        [language, state],
        [stored, state, *outputs],
        api_visibility=PRIVATE,
        show_progress="hidden",
    )
    return loaded, switched


def wire_chat_api(api: ChatAPI) -> list[Any]:
    """The public /chat, /attach and /stop endpoints, on hidden components so their inputs
    and outputs are named."""
    with gr.Row(visible=False):
        inputs = (
            [gr.Textbox(label="message")]
            + [gr.Textbox(label=name, value="") for name in ("conversation_id", "model")]
            + [gr.Textbox(label="parameters_json", value="{}")]
        )
        outputs = [gr.Textbox(label=name) for name in ("answer_so_far", "conversation_id")]
        trigger = gr.Button()
        attach_id = gr.Textbox(label="conversation_id", value="")
        attach_trigger = gr.Button()
        stop_id = gr.Textbox(label="conversation_id", value="")
        stop_result = gr.Textbox(label="result")
        stop_trigger = gr.Button()
    trigger.click(
        api.chat,
        inputs,
        outputs,
        api_name="chat",
        api_description=api.chat.__doc__,
        show_progress="hidden",
        # The inputs arrive as sent, so ChatAPI can refuse a number or null instead of
        # Textbox's str() turning 5 into "5" and {"a": 1} into "{'a': 1}".
        preprocess=False,
    )
    attach_trigger.click(
        api.attach,
        [attach_id],
        outputs,
        api_name="attach",
        api_description=api.attach.__doc__,
        show_progress="hidden",
        preprocess=False,
    )
    stop_trigger.click(
        api.stop,
        [stop_id],
        [stop_result],
        api_name="stop",
        api_description=api.stop.__doc__,
        show_progress="hidden",
        preprocess=False,
    )
    return [
        *inputs,
        *outputs,
        trigger,
        attach_id,
        attach_trigger,
        stop_id,
        stop_result,
        stop_trigger,
    ]
