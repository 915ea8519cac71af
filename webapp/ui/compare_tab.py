"""The Compare tab's layout and wiring: one prompt to 2–4 models side by side, figures under
each column, a vote for the best answer, blind mode, and continuing with all columns or one.

Handlers live in webapp/ui/handlers/compare.py (CompareUI); `wire_compare` hooks the tab to the
rest of the page (model lists on load, the sidebar after a comparison, opening from the sidebar).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import gradio as gr
from gradio.events import Dependency

from webapp.app.compare_rounds import MAX_COLUMNS, MIN_COLUMNS
from webapp.ui import controls
from webapp.ui.handlers.compare import (
    ALL,
    COMPARE_PARAMS,
    COUNT,
    PICKERS,
    RUN,
    VIEW,
    CompareState,
    CompareUI,
)
from webapp.ui.outputs import HIDDEN, PRIVATE
from webapp.ui.safe_markup import chatbot_latex
from webapp.ui.session import SessionState

__all__ = ["CompareState", "CompareTab", "CompareUI", "build_compare_tab", "wire_compare"]


@dataclass
class CompareTab:
    """The tab's components, and the events other parts of the page hook onto."""

    cstate: gr.State
    session: gr.State
    blind: gr.Checkbox
    providers: list[gr.Dropdown]
    models: list[gr.Dropdown]
    view_outputs: list[Any]  # what CompareUI.open returns, in order
    finished: list[Dependency]  # after these a comparison is saved: refresh the sidebar
    refresh_inputs: list[Any]  # CompareUI.refresh's inputs (its outputs are view_outputs)
    prompt: gr.Textbox
    run_outputs: list[Any]  # what CompareUI.run and follow_live return: the view, the prompt


def build_compare_tab(compare: CompareUI, *, state: gr.State | None = None) -> CompareTab:
    """Create the Compare tab's content inside the current Blocks context and wire its events.

    `state` is the page's SessionState (pasted API keys, identity); a new one is made if absent.

    Long: layout, one component after another in the order the page shows them."""
    settings = compare.settings
    provider_choices = [(p.label, p.name) for p in settings.providers]
    session = state if state is not None else gr.State(SessionState())
    cstate = gr.State(CompareState())
    with gr.Column(elem_id="compare"):
        with gr.Group(elem_id="compare-pickers") as pickers_group:
            count = gr.Radio(
                [str(n) for n in range(MIN_COLUMNS, MAX_COLUMNS + 1)],
                value=str(MIN_COLUMNS),
                label="Models to compare",
                elem_id="compare-count",
            )
            rows, providers, models = [], [], []
            for i in range(MAX_COLUMNS):
                with gr.Row(visible=i < MIN_COLUMNS, elem_id=f"compare-picker-{i}") as row:
                    providers.append(
                        gr.Dropdown(
                            provider_choices,
                            value=settings.default_provider,
                            label=f"Provider {i + 1}",
                            elem_id=f"compare-provider-{i}",
                            scale=1,
                        )
                    )
                    models.append(
                        gr.Dropdown(
                            [],
                            label=f"Model {i + 1}",
                            allow_custom_value=True,
                            filterable=True,
                            elem_id=f"compare-model-{i}",
                            scale=2,
                        )
                    )
                rows.append(row)
        with gr.Row():
            blind = gr.Checkbox(
                label="Blind mode (hide model names until you vote)", elem_id="compare-blind"
            )
            new_btn = gr.Button(
                "New comparison", size="sm", scale=0, min_width=160, elem_id="compare-new"
            )
        with gr.Accordion("System prompt and parameters", open=False, elem_id="compare-settings"):
            system = gr.Textbox(label="System prompt", lines=2, elem_id="compare-system")
            gr.Markdown(
                "Each column's model is sent only the parameters it accepts.",
                elem_id="compare-params-note",
            )
            params = controls.build_controls(
                COMPARE_PARAMS, id_prefix="compare-param", accordion_id="compare-advanced"
            )
        continue_radio = gr.Radio(
            [("All columns", ALL)],
            value=ALL,
            label="Continue with",
            interactive=False,
            elem_id="compare-continue",
        )
        prompt = gr.Textbox(
            placeholder="One prompt for every model (Enter sends, Shift+Enter adds a line)",
            show_label=False,
            lines=1,
            max_lines=12,
            elem_id="compare-prompt",
        )
        with gr.Row():
            send_btn = gr.Button("Compare", variant="primary", elem_id="compare-send")
            stop_btn = gr.Button("Stop", variant="stop", elem_id="compare-stop")
            export_btn = gr.Button("Export Markdown", elem_id="compare-export")
        note = gr.Markdown(elem_id="compare-note")
        # A link to Parley's own download route (webapp/app/downloads.py), not a gr.File: Gradio
        # would serve its cached copy to anyone signed in who has the URL.
        download = gr.Markdown(visible=False, elem_id="compare-download")
        columns, headers, chatbots, stats, bests = [], [], [], [], []
        with gr.Row(equal_height=False, elem_id="compare-columns"):
            for i in range(MAX_COLUMNS):
                with gr.Column(
                    visible=i < MIN_COLUMNS, min_width=240, elem_id=f"compare-column-{i}"
                ) as column:
                    headers.append(gr.Markdown(elem_id=f"compare-header-{i}"))
                    chatbots.append(
                        gr.Chatbot(
                            elem_id=f"compare-col-{i}",
                            show_label=False,
                            height="52vh",
                            buttons=["copy"],
                            sanitize_html=True,
                            render_markdown=True,
                            latex_delimiters=chatbot_latex(),
                        )
                    )
                    stats.append(gr.Markdown(elem_id=f"compare-stats-{i}"))
                    bests.append(
                        gr.Button("Best", size="sm", visible=False, elem_id=f"compare-best-{i}")
                    )
                columns.append(column)

    parts = SimpleNamespace(  # the components the handlers' outputs name (VIEW, RUN, COUNT)
        cstate=cstate,
        pickers_group=pickers_group,
        continue_radio=continue_radio,
        note=note,
        columns=columns,
        headers=headers,
        chatbots=chatbots,
        stats=stats,
        bests=bests,
        prompt=prompt,
        rows=rows,
    )
    view_outputs = VIEW.components(parts)
    pickers = [c for pair in zip(providers, models, strict=True) for c in pair]
    assert len(pickers) == PICKERS and len(params) == len(COMPARE_PARAMS)
    run_inputs = [
        prompt,
        session,
        cstate,
        blind,
        count,
        system,
        continue_radio,
        *pickers,  # PICKERS of them: provider, model, provider, model, ...
        *params,  # one control per row of COMPARE_PARAMS
    ]
    run_event = gr.on(
        [send_btn.click, prompt.submit],
        compare.run,
        run_inputs,
        RUN.components(parts),
        api_visibility=PRIVATE,
    )
    refresh_inputs = [session, cstate, blind, count]
    finished = [
        run_event.then(compare.refresh, refresh_inputs, view_outputs, api_visibility=PRIVATE),
        # Stop ends the round's runs (in every tab that shows it); the run event then ends.
        stop_btn.click(compare.stop_round, [session, cstate], None, api_visibility=PRIVATE).then(
            compare.refresh, refresh_inputs, view_outputs, api_visibility=PRIVATE
        ),
    ]
    for i, button in enumerate(bests):
        button.click(
            compare.best_handler(i), [session, cstate, blind], view_outputs, api_visibility=PRIVATE
        )
    blind.change(compare.refresh, refresh_inputs, view_outputs, api_visibility=PRIVATE)
    for trigger in (new_btn.click, *(chatbot.clear for chatbot in chatbots)):
        trigger(compare.new, [session, cstate, blind, count], view_outputs, api_visibility=PRIVATE)
    count.change(compare.set_count, [count], COUNT.components(parts), api_visibility=PRIVATE)
    for provider, model in zip(providers, models, strict=True):
        provider.select(compare.models_for, [provider, session], [model], api_visibility=PRIVATE)
    export_btn.click(compare.export, [session, cstate], [download], api_visibility=PRIVATE)
    return CompareTab(
        cstate=cstate,
        session=session,
        blind=blind,
        providers=providers,
        models=models,
        view_outputs=view_outputs,
        finished=finished,
        refresh_inputs=refresh_inputs,
        prompt=prompt,
        run_outputs=RUN.components(parts),
    )


def wire_compare(
    compare: CompareUI,
    tab: CompareTab,
    *,
    demo: gr.Blocks,
    sidebar_refresh: Callable[[Dependency], object],
    conversations: gr.components.Component | None = None,
    tabs: gr.Tabs | None = None,
    tab_id: str = "compare",
    after_open: list[Dependency] | None = None,
) -> None:
    """Hook the tab to the page; call inside the Blocks context, after build_compare_tab.

    - fills every column's model list when the page loads;
    - `sidebar_refresh(event)` is called with each event after which a comparison is saved
      (chain the sidebar update on it, e.g. `event.then(ui.sidebar, ...)`);
    - with `conversations` (the sidebar's list), picking a comparison there shows it in this
      tab, and with `tabs` also switches to the tab whose id is `tab_id`. Pass the chat's own
      open events as `after_open` so this runs after them, not at the same time (two events
      writing the page at once let a late one overwrite what the user typed meanwhile).

    Long: wiring, one event chain after another."""

    def show_tab(conversation_id: str | None, cstate: CompareState) -> Any:
        opened_here = bool(conversation_id) and cstate.conversation_id == conversation_id
        return gr.Tabs(selected=tab_id) if opened_here else gr.skip()

    demo.load(
        compare.load_models,
        [tab.session, *tab.providers],
        tab.models,
        api_visibility=PRIVATE,
        show_progress=HIDDEN,
    )
    for event in tab.finished:
        sidebar_refresh(event)
    if conversations is None:
        return
    triggers: list[Any] = [event.then for event in after_open or []]
    for trigger in triggers or [conversations.input]:  # type: ignore[attr-defined]
        # Run on every conversation opened from the sidebar, mostly to find it is no comparison:
        # no progress shown (it would flash over the tab).
        opened = trigger(
            compare.open,
            [conversations, tab.session, tab.cstate, tab.blind],
            tab.view_outputs,
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        # A round still streaming (from another tab, or before a reload) is followed live.
        attached = opened.then(
            compare.follow_live,
            [tab.session, tab.cstate, tab.blind],
            tab.run_outputs,
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        attached.then(
            compare.after_following,
            tab.refresh_inputs,
            tab.view_outputs,
            api_visibility=PRIVATE,
            show_progress=HIDDEN,
        )
        if tabs is not None:
            opened.then(
                show_tab,
                [conversations, tab.cstate],
                [tabs],
                api_visibility=PRIVATE,
                show_progress=HIDDEN,
            )
