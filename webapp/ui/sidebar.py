"""The sidebar: language and view, the conversation list with its search, rename and delete,
share and export; and the wiring that opens a conversation (from the list or the address) and
follows its answer live."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.events import Dependency

from webapp.ui import presentation, translate
from webapp.ui.handlers import events as h
from webapp.ui.handlers.chat import ChatUI
from webapp.ui.outputs import PRIVATE, QUIET, Outputs
from webapp.ui.team import TeamUI


@dataclass
class Sidebar:
    """The sidebar's components (the admin panel below them is webapp/ui/admin_panel.py)."""

    language: gr.Radio
    new_btn: gr.Button
    search: gr.Textbox
    conversations: gr.Radio
    title_box: gr.Textbox
    rename_btn: gr.Button
    delete_btn: gr.Button
    confirm_row: gr.Row
    confirm_btn: gr.Button
    cancel_btn: gr.Button
    share_btn: gr.Button
    revoke_btn: gr.Button
    share_note: gr.Markdown
    md_btn: gr.Button
    json_btn: gr.Button
    all_btn: gr.Button
    download: gr.Markdown
    import_btn: gr.UploadButton


def build_sidebar() -> Sidebar:
    """Lay out the sidebar's conversation part; call inside `gr.Sidebar`."""
    gr.Markdown("### Parley")
    # Language and view first: a long conversation list must not push them away.
    language = translate.language_picker()
    presentation.build_view_controls()
    new_btn = gr.Button("+ New chat", variant="primary", elem_id="new-chat")
    search = gr.Textbox(
        placeholder="Search titles and messages…", show_label=False, elem_id="search", max_lines=1
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
        # A link to Parley's own download route (webapp/app/downloads.py), not a gr.File:
        # Gradio would serve its cached copy to anyone signed in who has the URL.
        download = gr.Markdown(visible=False, elem_id="download")
        import_btn = gr.UploadButton(
            "Import JSON…", size="sm", file_types=[".json"], elem_id="import"
        )
    return Sidebar(
        language=language,
        new_btn=new_btn,
        search=search,
        conversations=conversations,
        title_box=title_box,
        rename_btn=rename_btn,
        delete_btn=delete_btn,
        confirm_row=confirm_row,
        confirm_btn=confirm_btn,
        cancel_btn=cancel_btn,
        share_btn=share_btn,
        revoke_btn=revoke_btn,
        share_note=share_note,
        md_btn=md_btn,
        json_btn=json_btn,
        all_btn=all_btn,
        download=download,
        import_btn=import_btn,
    )


@dataclass
class OpenEvents:
    """The events that open a conversation (the Compare tab runs after them)."""

    from_list: Dependency
    from_url: Dependency


def wire_sidebar(
    ui: ChatUI,
    side: Sidebar,
    *,
    loaded: Dependency,
    then_gauge: Callable[[Dependency], Dependency],
    summarized: Dependency,
    panels: tuple[object, ...],
) -> OpenEvents:
    """Hook the conversation list to ChatUI. `panels` (the page, the chat column, the
    settings panel) hold the other components the events update, by name. `loaded` is the
    page load's event once the language is known."""

    def names(outputs: Outputs) -> list[Any]:
        return outputs.components(side, *panels)

    state = next(p.state for p in panels if hasattr(p, "state"))
    open_event = side.conversations.input(
        ui.open, [side.conversations, state], names(h.OPEN), **QUIET
    )
    # A conversation opened from its link (?c=…, kept in the address bar), as after a
    # reload: shown in the page's language, selected in the sidebar, and followed live if an
    # answer streams. The model list comes after it, so the conversation keeps its model.
    from_address = loaded.then(ui.open_from_url, [state], names(h.OPEN), **QUIET)
    from_address.then(
        ui.models_on_load, [find(panels, "provider"), state], names(h.MODELS), **QUIET
    )
    url_open = from_address.then(ui.sidebar, [state, side.search], [side.conversations], **QUIET)
    continued = summarized.then(
        ui.continue_from_summary, [state], names(h.OPEN), api_visibility=PRIVATE
    )
    then_gauge(continued.then(ui.sidebar, [state, side.search], [side.conversations], **QUIET))
    for opened in (open_event, url_open):
        then_gauge(opened)
        opened.then(ui.follow_live, [state], names(h.TURN), **QUIET).then(
            ui.after_following, [state, side.search], names(h.AFTER_FOLLOWING), **QUIET
        )
    then_gauge(side.new_btn.click(ui.new_chat, [state], names(h.NEW_CHAT), **QUIET))
    side.search.change(
        ui.sidebar,
        [state, side.search],
        [side.conversations],
        trigger_mode="always_last",
        **QUIET,
    )
    for renamed in (side.rename_btn.click, side.title_box.submit):
        renamed(ui.rename, [side.title_box, state, side.search], [side.conversations], **QUIET)
    side.delete_btn.click(lambda: gr.update(visible=True), None, [side.confirm_row], **QUIET)
    side.cancel_btn.click(lambda: gr.update(visible=False), None, [side.confirm_row], **QUIET)
    side.confirm_btn.click(ui.delete, [state, side.search], names(h.DELETE), **QUIET)
    return OpenEvents(from_list=open_event, from_url=url_open)


def find(panels: tuple[object, ...], name: str) -> Any:
    """The component called `name` in the first panel that has one."""
    return getattr(next(p for p in panels if hasattr(p, name)), name)


def wire_sharing(team: TeamUI, side: Sidebar, state: gr.State) -> None:
    """Share links, exports and the import (TeamUI)."""
    side.share_btn.click(team.share, [state], [side.share_note], api_visibility=PRIVATE)
    side.revoke_btn.click(team.revoke, [state], [side.share_note], api_visibility=PRIVATE)
    side.md_btn.click(team.export_markdown, [state], [side.download], api_visibility=PRIVATE)
    side.json_btn.click(team.export_json, [state], [side.download], api_visibility=PRIVATE)
    side.all_btn.click(team.export_everything, [state], [side.download], api_visibility=PRIVATE)
    side.import_btn.upload(
        team.import_file,
        [side.import_btn, state, side.search],
        [side.conversations],
        **QUIET,
    )
