"""The page: its panels laid out (each built by its own module) and each panel's events wired
to its handlers. Outputs are named once per event (webapp/ui/outputs.py, handlers/events.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.events import Dependency

from webapp.ui import translate
from webapp.ui.admin_panel import build_admin_panel, wire_admin
from webapp.ui.api import ChatAPI
from webapp.ui.chat_tab import LATEX, ChatColumn, build_chat_column, wire_turns
from webapp.ui.compare_tab import CompareTab, CompareUI, build_compare_tab, wire_compare
from webapp.ui.handlers.chat import ChatUI
from webapp.ui.handlers.events import RERENDER
from webapp.ui.keys_ui import KeysUI
from webapp.ui.outputs import HIDDEN, PRIVATE, QUIET
from webapp.ui.presets_ui import wire_presets
from webapp.ui.session import SessionState
from webapp.ui.settings_panel import SettingsPanel, build_settings_panel, wire_settings
from webapp.ui.sidebar import Sidebar, build_sidebar, wire_sharing, wire_sidebar
from webapp.ui.team import TeamUI

__all__ = ["CSS", "LATEX", "build_ui"]

CSS = (Path(__file__).parent / "style.css").read_text(encoding="utf-8")


@dataclass
class Page:
    """What the whole page shares: the tab's state and the language kept in the browser."""

    demo: gr.Blocks
    state: gr.State
    stored_lang: gr.BrowserState


def build_ui(
    ui: ChatUI, api: ChatAPI, team: TeamUI, compare: CompareUI, keys: KeysUI | None = None
) -> gr.Blocks:
    """Lay out the page from its panels and wire each panel's events to its handlers.

    Long: layout, one panel after another in the order the page shows them."""
    # delete_cache: exports and uploads Gradio copied into its cache go after an hour.
    demo: gr.Blocks
    with gr.Blocks(title="Parley", delete_cache=(3600, 3600)) as demo:
        page = Page(
            demo=demo,
            state=gr.State(SessionState()),
            stored_lang=gr.BrowserState("", storage_key="parley-lang"),
        )
        state = page.state
        with gr.Sidebar(open=True, elem_id="sidebar"):
            side = build_sidebar()
            admin = build_admin_panel()
        account_note = account_bar(ui.settings.auth_mode)
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Chat", id="chat"), gr.Row(equal_height=False):
                with gr.Column(scale=4):
                    chat = build_chat_column(ui.settings)
                with gr.Column(scale=2, elem_id="settings"):
                    settings = build_settings_panel(ui, state, keys)
            with gr.Tab("Compare", id="compare"):
                compare_tab = build_compare_tab(compare, state=state)

        wire_presets(
            settings.preset_row, settings.presets, state=state, settings_panel=settings, demo=demo
        )
        wire_settings(ui, settings, page, chat)
        turns = wire_turns(ui, chat, page, settings, side)
        api_components = wire_chat_api(api)
        # The page's language first: what the server writes on load (the chat opened from the
        # address, the model note) waits for it.
        language_known = wire_page_language(
            ui, compare, compare_tab, page, side, chat, settings, account_note, api_components
        )
        opened = wire_sidebar(
            ui,
            side,
            loaded=language_known,
            then_gauge=turns.then_gauge,
            summarized=turns.summarized,
            panels=(page, chat, settings),
        )
        wire_sharing(team, side, state)
        wire_admin(team, admin, demo=demo, state=state)
        wire_compare(
            compare,
            compare_tab,
            demo=demo,
            sidebar_refresh=lambda event: event.then(
                ui.sidebar,
                [state, side.search],
                [side.conversations],
                api_visibility=PRIVATE,
                show_progress=HIDDEN,
            ),
            conversations=side.conversations,
            tabs=tabs,
            after_open=[opened.from_list, opened.from_url],
        )
    return demo


def wire_page_language(
    ui: ChatUI,
    compare: CompareUI,
    compare_tab: CompareTab,
    page: Page,
    side: Sidebar,
    chat: ChatColumn,
    settings: SettingsPanel,
    account_note: gr.Markdown | None,
    skip: list[Any],
) -> Dependency:
    """Translate the page on load and on a switch, then write again in the new language
    what the server wrote (the banner, the signed-in line, the chat, the model note).
    Returns the load's event, once the language is known."""
    demo = page.demo
    state = page.state
    # Text the server writes on load follows the language, so it waits for it.
    language_known, switched = wire_language(demo, state, page.stored_lang, side.language, skip)
    for event in (language_known, switched):
        event.then(ui.key_banner, [state], [chat.banner], **QUIET)
        if account_note is not None:
            event.then(ui.signed_in, [state], [account_note], **QUIET)
    # What is already on screen is written again in the new language.
    switched.then(ui.rerender, [state], RERENDER.components(chat), **QUIET)
    switched.then(
        ui.models_note, [settings.provider, settings.model, state], [settings.models_note], **QUIET
    )
    switched.then(compare.refresh, compare_tab.refresh_inputs, compare_tab.view_outputs, **QUIET)
    return language_known


def account_bar(auth_mode: str) -> gr.Markdown | None:
    """The header line: who is signed in and, with accounts, Sign out (none without login)."""
    if auth_mode not in ("accounts", "header"):
        return None
    with gr.Row(elem_id="account"):
        note = gr.Markdown(elem_id="signed-in")
        if auth_mode == "accounts":  # behind a sign-in proxy, signing out is the proxy's
            # page.js signs out with a POST: GET /logout is refused (webapp/edge/web_security.py).
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
