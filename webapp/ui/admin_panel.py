"""The admin panel under the sidebar: usage by user and period, and per-user limits (TeamUI).
It shows only to admins (`TeamUI.admin_visible` on load)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from webapp.ui.outputs import HIDDEN, PRIVATE
from webapp.ui.team import PERIODS, USAGE_COLUMNS, TeamUI


@dataclass
class AdminPanel:
    """The admin panel's components."""

    admin: gr.Accordion
    period: gr.Dropdown
    usage_table: gr.Dataframe
    limit_user: gr.Textbox
    limit_rpm: gr.Textbox
    limit_tokens: gr.Textbox
    limits_btn: gr.Button
    limits_note: gr.Markdown


def build_admin_panel() -> AdminPanel:
    """Lay out the panel (hidden until an admin is seen); call inside `gr.Sidebar`."""
    with gr.Accordion("Admin", open=False, visible=False, elem_id="admin") as admin:
        period = gr.Dropdown(
            list(PERIODS), value="Last 24 hours", label="Usage", elem_id="usage-period"
        )
        usage_table = gr.Dataframe(headers=USAGE_COLUMNS, interactive=False, elem_id="usage")
        limit_user = gr.Textbox(label="User", max_lines=1, elem_id="limit-user")
        with gr.Row():
            limit_rpm = gr.Textbox(
                label="Requests/min", max_lines=1, placeholder="no limit", elem_id="limit-rpm"
            )
            limit_tokens = gr.Textbox(
                label="Tokens/day", max_lines=1, placeholder="no limit", elem_id="limit-tokens"
            )
        limits_btn = gr.Button("Set limits", size="sm", elem_id="set-limits")
        limits_note = gr.Markdown(elem_id="limits-note")
    return AdminPanel(
        admin=admin,
        period=period,
        usage_table=usage_table,
        limit_user=limit_user,
        limit_rpm=limit_rpm,
        limit_tokens=limit_tokens,
        limits_btn=limits_btn,
        limits_note=limits_note,
    )


def wire_admin(team: TeamUI, panel: AdminPanel, *, demo: gr.Blocks, state: gr.State) -> None:
    """Show the panel to admins on load; usage when opened or its period changes; limits."""
    demo.load(
        team.admin_visible, [state], [panel.admin], api_visibility=PRIVATE, show_progress=HIDDEN
    )
    usage_inputs = [panel.period, state]
    panel.period.change(team.usage, usage_inputs, [panel.usage_table], api_visibility=PRIVATE)
    panel.admin.expand(team.usage, usage_inputs, [panel.usage_table], api_visibility=PRIVATE)
    panel.limits_btn.click(
        team.set_limits,
        [panel.limit_user, panel.limit_rpm, panel.limit_tokens, state],
        [panel.limits_note],
        api_visibility=PRIVATE,
    )
