"""The Chat tab's settings column: presets, provider and model, the pasted API key and the
user's own API keys, the system prompt, tools, and one control per request parameter (built
from the PARAMS table by webapp/ui/controls.py)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from webapp.core.params import PARAMS
from webapp.ui import controls
from webapp.ui.handlers import events as h
from webapp.ui.handlers.chat import ChatUI
from webapp.ui.keys_ui import KeysUI, build_keys_panel
from webapp.ui.outputs import HIDDEN, PRIVATE, QUIET, Outputs
from webapp.ui.presets_ui import PresetsUI, build_presets_row


@dataclass
class SettingsPanel:
    """The settings column's components."""

    presets: PresetsUI
    preset_row: Any  # webapp/ui/presets_ui.py's row of components
    provider: gr.Dropdown
    model: gr.Dropdown
    refresh_btn: gr.Button
    models_note: gr.Markdown
    key_box: gr.Textbox
    key_status: gr.Markdown
    system: gr.Textbox
    tools_box: gr.CheckboxGroup
    tool_choice: gr.Dropdown
    mcp_status: gr.Markdown | None  # the MCP servers' state, only when some are configured
    params: list[Any]  # one control per parameter, in PARAMS order (handlers.PARAM_CONTROLS)


def build_settings_panel(ui: ChatUI, state: gr.State, keys: KeysUI | None) -> SettingsPanel:
    """Lay out the column; call inside the Chat tab's row.

    Long: layout, one component after another in the order the page shows them."""
    settings = ui.settings
    gr.Markdown("#### Settings")
    presets = PresetsUI(ui.page)
    preset_row = build_presets_row(presets)
    provider = gr.Dropdown(
        [(p.label, p.name) for p in settings.providers],
        value=settings.default_provider,
        label="Provider",
        elem_id="provider",
    )
    with gr.Row(elem_id="model-row"):
        model = gr.Dropdown(
            [], label="Model", allow_custom_value=True, elem_id="model", scale=4, filterable=True
        )
        refresh_btn = gr.Button("⟳", size="sm", scale=0, min_width=40, elem_id="refresh-models")
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
        if settings.mcp_servers:  # nothing at all without MCP servers
            mcp_status = gr.Markdown(ui.mcp_panel(), elem_id="mcp-status")
        build_credential_boxes(ui, state)
    params = controls.build_controls(PARAMS, id_prefix="param", accordion_id="advanced")
    return SettingsPanel(
        presets=presets,
        preset_row=preset_row,
        provider=provider,
        model=model,
        refresh_btn=refresh_btn,
        models_note=models_note,
        key_box=key_box,
        key_status=key_status,
        system=system,
        tools_box=tools_box,
        tool_choice=tool_choice,
        mcp_status=mcp_status,
        params=params,
    )


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


def wire_settings(ui: ChatUI, panel: SettingsPanel, *others: object) -> None:
    """Hook the column's own events (model lists, capabilities, the pasted key). `others`
    (the page, the chat column) hold the other components they update, by name."""

    def names(outputs: Outputs) -> list[Any]:
        return outputs.components(panel, *others)

    state = next(p.state for p in others if hasattr(p, "state"))
    demo = next(p.demo for p in others if hasattr(p, "demo"))
    if panel.mcp_status is not None:
        # Read again at each page load: MCP servers come and go while Parley runs, and their
        # tool lists change (a page loaded later lists them).
        demo.load(ui.mcp_panel, None, [panel.mcp_status], **QUIET)
        demo.load(ui.tool_options, None, names(h.TOOL_OPTIONS), **QUIET)
    # .select, not .change: opening a conversation sets provider and model together (and
    # Gradio 6.31 fires a Dropdown's .input twice per pick).
    panel.provider.select(
        ui.models_for,
        [panel.provider, state],
        names(h.MODELS),
        api_visibility=PRIVATE,
        show_progress=HIDDEN,
    )
    panel.refresh_btn.click(  # asked for: a small spinner says the list is being fetched
        partial(ui.models_for, refresh=True),
        [panel.provider, state],
        names(h.MODELS),
        api_visibility=PRIVATE,
        show_progress="minimal",
    )
    panel.model.change(
        ui.gauge,
        [state, panel.provider, panel.model, panel.system],
        names(h.GAUGE),
        api_visibility=PRIVATE,
        show_progress=HIDDEN,
    )
    panel.model.change(
        ui.capabilities_for,
        [panel.provider, panel.model],
        panel.params,
        api_visibility=PRIVATE,
        show_progress=HIDDEN,
    )
    panel.key_box.submit(
        ui.set_key, [panel.key_box, panel.provider, state], names(h.KEY), api_visibility=PRIVATE
    )
