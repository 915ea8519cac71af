"""Parameter controls generated from the parameter table (webapp/core/params.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import gradio as gr

from webapp.core.capabilities import Capabilities
from webapp.core.params import PARAMS, RESPONSE_FORMATS, Param, applies

BOOL_CHOICES = ["default", "on", "off"]


def _placeholder(p: Param) -> str:
    parts = ["not set"]
    if p.minimum is not None and p.maximum is not None:
        low = f">{p.minimum:g}" if p.min_exclusive else f"{p.minimum:g}"
        parts.append(f"{low} to {p.maximum:g}")
    if p.provider_default:
        parts.append(f"default {p.provider_default}")
    return " · ".join(parts)


def make_control(p: Param, id_prefix: str = "param") -> gr.components.Component:
    """One component for one parameter; its empty state means "not set"."""
    common: dict[str, Any] = {"label": p.label, "info": p.help, "elem_id": f"{id_prefix}-{p.name}"}
    if p.kind == "bool":
        return gr.Radio(BOOL_CHOICES, value="default", **common)
    if p.kind == "stop":
        return gr.Textbox(lines=2, placeholder=_placeholder(p), **common)
    if p.kind == "response_format":
        return gr.Textbox(
            lines=1,
            placeholder="not set · "
            + " | ".join(RESPONSE_FORMATS[:2])
            + ' | {"name": ..., "schema": {...}}',
            **common,
        )
    if p.kind == "json_object":
        return gr.Textbox(lines=1, placeholder=_placeholder(p), **common)
    # Numbers are text boxes so that "empty" is a real, visible state (not set, not sent);
    # the range is enforced by webapp.core.params.normalize with a message naming it.
    return gr.Textbox(lines=1, max_lines=1, placeholder=_placeholder(p), **common)


def build_controls(
    params: Sequence[Param], *, id_prefix: str, accordion_id: str
) -> list[gr.components.Component]:
    """One control per parameter, laid out where they are called: the everyday ones, then the
    advanced ones in a closed "Advanced parameters" accordion. Returned in `params` order."""
    made = {p.name: make_control(p, id_prefix) for p in params if not p.advanced}
    with gr.Accordion("Advanced parameters", open=False, elem_id=accordion_id):
        made |= {p.name: make_control(p, id_prefix) for p in params if p.advanced}
    return [made[p.name] for p in params]


def to_raw(p: Param, value: Any) -> Any:
    """A control's value → the raw value the parameter table validates."""
    if p.kind == "bool":
        return None if value in (None, "default") else value == "on"
    if isinstance(value, str) and not value.strip():
        return None
    return value


def from_clean(p: Param, value: Any) -> Any:
    """A stored (validated) value → what the control shows."""
    if value is None:
        return "default" if p.kind == "bool" else ""
    if p.kind == "bool":
        return "on" if value else "off"
    if p.kind == "stop":
        return "\n".join(value)
    if p.kind == "response_format":
        if value.get("type") in RESPONSE_FORMATS[:2]:
            return value["type"]
        return json.dumps(value.get("json_schema", value), ensure_ascii=False)
    if p.kind == "json_object":
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def collect(values: Sequence[Any], params: Sequence[Param] = PARAMS) -> dict[str, Any]:
    """Control values, in `params` order → {name: raw value} for the ones that are set."""
    raw = {p.name: to_raw(p, v) for p, v in zip(params, values, strict=True)}
    return {name: value for name, value in raw.items() if value is not None}


def show(stored: Mapping[str, Any] | None) -> list[Any]:
    """Stored parameters → control values, in PARAMS order."""
    stored = stored or {}
    return [from_clean(p, stored.get(p.name)) for p in PARAMS]


def visibility(caps: Capabilities, provider_kind: str) -> list[Any]:
    """Hide the controls a model or provider does not take."""
    return [gr.update(visible=applies(p, caps, provider_kind)) for p in PARAMS]
