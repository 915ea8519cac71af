"""Parameter controls come from the one parameter table, in the Chat tab and in Compare."""

from __future__ import annotations

import gradio as gr
import pytest

from webapp.core.params import PARAMS
from webapp.ui import controls
from webapp.ui.handlers.compare import COMPARE_PARAMS


def test_every_row_of_the_table_gets_one_control_with_its_label_in_table_order() -> None:
    with gr.Blocks():
        chat = controls.build_controls(PARAMS, id_prefix="param", accordion_id="advanced")
        compare = controls.build_controls(
            COMPARE_PARAMS, id_prefix="compare-param", accordion_id="compare-advanced"
        )
    assert [c.elem_id for c in chat] == [f"param-{p.name}" for p in PARAMS]
    assert [getattr(c, "label", None) for c in chat] == [p.label for p in PARAMS]
    assert [c.elem_id for c in compare] == [f"compare-param-{p.name}" for p in COMPARE_PARAMS]
    # Compare asks one answer per column; every other row is there.
    assert {p.name for p in PARAMS} - {p.name for p in COMPARE_PARAMS} == {"n"}
    assert not {c.elem_id for c in chat} & {c.elem_id for c in compare}  # ids stay unique


def test_compare_s_values_are_collected_by_its_own_rows() -> None:
    values = [controls.from_clean(p, None) for p in COMPARE_PARAMS]  # every one "not set"
    values[[p.name for p in COMPARE_PARAMS].index("seed")] = "7"
    assert controls.collect(values, COMPARE_PARAMS) == {"seed": "7"}
    with pytest.raises(ValueError):  # a control missing from the wiring is an error, not a shift
        controls.collect(values[:-1], COMPARE_PARAMS)
