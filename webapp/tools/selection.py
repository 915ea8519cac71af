"""Which tools a turn offers, and its `tool_choice`, checked against the registry. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

TOOL_CHOICES = ("auto", "none", "required")


class ToolSelectionError(ValueError):
    """The chosen tools or tool_choice cannot be used; the message says why and what to do."""


class ToolNames(Protocol):
    """What selection needs from the registry."""

    def names(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Selection:
    """Tools to offer (in registry order) and the tool_choice to send (None: provider default)."""

    names: tuple[str, ...]
    tool_choice: str | dict[str, Any] | None


def parse_names(setting: str | Iterable[str], registry: ToolNames, what: str) -> tuple[str, ...]:
    """`"all"`, `"none"`, a comma-separated string or a list of names → known tool names."""
    known = registry.names()
    if isinstance(setting, str):
        text = setting.strip().lower()
        if text == "all":
            return tuple(known)
        if text in ("", "none"):
            return ()
        items = [item.strip() for item in setting.split(",") if item.strip()]
    else:
        items = list(setting)
    if not all(isinstance(item, str) for item in items):
        raise ToolSelectionError(f"{what} must be a list of tool names")
    unknown = [item for item in items if item not in known]
    if unknown:
        raise ToolSelectionError(
            f"{what} names unknown tools {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(known) or 'none'}"
        )
    return tuple(name for name in known if name in items)


def select(registry: ToolNames, names: Iterable[str], tool_choice: str) -> Selection:
    """Validate a turn's tools and tool_choice (auto, none, required, or one offered tool)."""
    chosen = parse_names(list(names), registry, "The tool selection")
    choice = (tool_choice or "auto").strip()
    if choice == "auto":
        return Selection(chosen, None)
    if choice in TOOL_CHOICES:
        if choice == "required" and not chosen:
            raise ToolSelectionError(
                'tool_choice is "required" but no tool is offered: pick at least one tool.'
            )
        return Selection(chosen, choice if chosen else None)
    if choice not in chosen:
        raise ToolSelectionError(
            f"tool_choice {choice!r} is not one of the offered tools "
            f"({', '.join(chosen) or 'none offered'}); use auto, none, required or an offered tool."
        )
    return Selection(chosen, {"type": "function", "function": {"name": choice}})
