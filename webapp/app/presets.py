"""Presets as data: the shipped ones, validation of a preset's values, and Dropdown choices.

A preset fills every chat control: system prompt, provider and model (empty means "keep the
current one"), the parameters of webapp/core/params.py (unset ones are cleared), tools and
tool_choice. Pure: no Gradio, no database sessions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, Protocol

from storage import field_limits
from storage.field_limits import MODEL, PROVIDER, TOOL_CHOICE, FieldTooLong, message_limit
from storage.presets import NAME_MAX, PresetError
from webapp.core.params import ParamError, normalize
from webapp.tools.selection import ToolNames, ToolSelectionError, parse_names, select

__all__ = [
    "SHIPPED",
    "PresetChoice",
    "PresetError",
    "PresetValues",
    "ShippedPreset",
    "check",
    "choices",
    "db_value",
    "find_shipped",
    "parse_choice",
    "shipped_value",
]

SHIPPED_PREFIX = "shipped:"
DB_PREFIX = "db:"


@dataclass(frozen=True, slots=True)
class PresetValues:
    """What a preset sets. Empty provider or model: keep the current one."""

    name: str = ""
    system_prompt: str = ""
    provider: str = ""
    model: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    tool_choice: str = "auto"


@dataclass(frozen=True, slots=True)
class ShippedPreset:
    """A preset that comes with Parley; `slug` makes its Dropdown value stable."""

    slug: str
    values: PresetValues


def _shipped(
    slug: str,
    name: str,
    *,
    system_prompt: str = "",
    tools: tuple[str, ...] = (),
    tool_choice: str = "auto",
    **parameters: Any,
) -> ShippedPreset:
    return ShippedPreset(
        slug,
        PresetValues(
            name=name,
            system_prompt=system_prompt,
            parameters=MappingProxyType(parameters),
            tools=tools,
            tool_choice=tool_choice,
        ),
    )


SHIPPED: tuple[ShippedPreset, ...] = (
    _shipped(
        "precise",
        "Precise answers",
        temperature=0.2,
        system_prompt="Answer accurately and concisely. Say so when you are not sure.",
    ),
    _shipped(
        "creative",
        "Creative writing",
        temperature=1.0,
        top_p=0.95,
        system_prompt="You are an imaginative writer: vivid, varied and original.",
    ),
    _shipped(
        "reasoning",
        "Step-by-step reasoning",
        enable_thinking=True,
        system_prompt="Think the problem through step by step, check each step, then "
        "give the final answer clearly at the end.",
    ),
    _shipped(
        "code-review",
        "Code reviewer",
        temperature=0.3,
        system_prompt="You are a careful senior code reviewer. Point out bugs, security "
        "problems and unclear code first, then smaller style issues; suggest concrete "
        "fixes with short code snippets.",
    ),
    _shipped(
        "calculator-clock",
        "Calculator and clock",
        tools=("calculator", "current_time"),
        tool_choice="auto",
        system_prompt="Use the calculator for arithmetic and current_time for anything "
        "that depends on today's date or time.",
    ),
)


class StoredPreset(Protocol):
    """What the choices need from a stored preset (storage.models.Preset)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def team(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class PresetChoice:
    """One Dropdown entry: what it shows and its stable value."""

    label: str
    value: str

    def pair(self) -> tuple[str, str]:
        return self.label, self.value


def shipped_value(slug: str) -> str:
    return SHIPPED_PREFIX + slug


def db_value(preset_id: str) -> str:
    return DB_PREFIX + preset_id


def choices(stored: Iterable[StoredPreset]) -> list[PresetChoice]:
    """Team presets, then the shipped ones, then the user's own."""
    items = list(stored)
    team = [PresetChoice(f"★ Team: {p.name}", db_value(p.id)) for p in items if p.team]
    shipped = [PresetChoice(f"Shipped: {s.values.name}", shipped_value(s.slug)) for s in SHIPPED]
    mine = [PresetChoice(f"Mine: {p.name}", db_value(p.id)) for p in items if not p.team]
    return [*team, *shipped, *mine]


def parse_choice(value: str) -> tuple[Literal["shipped", "db"], str]:
    """A Dropdown value → ("shipped", slug) or ("db", preset id); PresetError otherwise."""
    if value.startswith(SHIPPED_PREFIX) and value[len(SHIPPED_PREFIX) :]:
        return "shipped", value[len(SHIPPED_PREFIX) :]
    if value.startswith(DB_PREFIX) and value[len(DB_PREFIX) :]:
        return "db", value[len(DB_PREFIX) :]
    raise PresetError(f"Unknown preset {value!r}: pick one from the list.")


def find_shipped(slug: str) -> ShippedPreset:
    for preset in SHIPPED:
        if preset.slug == slug:
            return preset
    raise PresetError(f"There is no shipped preset {slug!r}.")


def check(
    values: PresetValues, registry: ToolNames, max_message_chars: int = 100_000
) -> PresetValues:
    """Validate a preset's values; return them cleaned, or raise PresetError with the reasons.

    Parameters go through webapp.core.params.normalize; tools must be registered, and tool_choice
    must be auto, none, required or one of the preset's tools. Texts have the limits of
    storage.field_limits; the system prompt has MAX_MESSAGE_CHARS (`max_message_chars`).
    """
    name = " ".join(values.name.split())
    if len(name) > NAME_MAX:
        raise PresetError(f"A preset name is 1–{NAME_MAX} characters (got {len(name)}).")
    try:
        field_limits.check(
            message_limit(max_message_chars, "The system prompt"), values.system_prompt or ""
        )
        field_limits.check(PROVIDER, (values.provider or "").strip())
        field_limits.check(MODEL, (values.model or "").strip())
        field_limits.check(TOOL_CHOICE, (values.tool_choice or "").strip())
    except FieldTooLong as exc:
        raise PresetError(str(exc)) from None
    try:
        parameters = normalize(values.parameters)
    except ParamError as exc:
        raise PresetError("; ".join(exc.errors)) from None
    choice = (values.tool_choice or "auto").strip() or "auto"
    try:
        tools = parse_names(list(values.tools), registry, "The preset")
        select(registry, tools, choice)
    except ToolSelectionError as exc:
        raise PresetError(str(exc)) from None
    return replace(
        values,
        name=name,
        system_prompt=values.system_prompt or "",
        provider=(values.provider or "").strip(),
        model=(values.model or "").strip(),
        parameters=parameters,
        tools=tools,
        tool_choice=choice,
    )
