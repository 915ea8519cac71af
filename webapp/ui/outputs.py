"""An event's outputs by name, so no handler counts tuple positions.

The wiring names the components an event updates once (`TURN.components(page)`), and the
handler returns values by the same names (`TURN.pack(chatbot=..., state=...)`). A name left out
is left as it is on the page (`gr.skip()`), an unknown name is an error at once, and a group
(the four parts of the version switcher, one control per parameter) is checked for its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import gradio as gr


@dataclass(frozen=True)
class Group:
    """Several components under one name (a list attribute of the panel that holds them)."""

    name: str
    size: int


Entry = str | Group


class Outputs:
    """The ordered outputs of one event, by name."""

    def __init__(self, *entries: Entry | Outputs) -> None:
        flat: list[Entry] = []
        for entry in entries:
            flat.extend(entry.entries if isinstance(entry, Outputs) else (entry,))
        names = [e.name if isinstance(e, Group) else e for e in flat]
        repeated = {n for n in names if names.count(n) > 1}
        if repeated:
            raise ValueError(f"outputs named twice: {sorted(repeated)}")
        self.entries: tuple[Entry, ...] = tuple(flat)
        self.names = frozenset(names)

    def __add__(self, other: Entry | Outputs) -> Outputs:
        return Outputs(self, other)

    def __len__(self) -> int:
        return sum(e.size if isinstance(e, Group) else 1 for e in self.entries)

    def pack(self, **values: Any) -> tuple[Any, ...]:
        """The values in wiring order; what is not named stays as it is on the page."""
        unknown = set(values) - self.names
        if unknown:
            raise TypeError(f"not an output of this event: {sorted(unknown)}")
        out: list[Any] = []
        for entry in self.entries:
            if isinstance(entry, Group):
                if entry.name not in values:
                    out.extend(gr.skip() for _ in range(entry.size))
                    continue
                items = tuple(values[entry.name])
                if len(items) != entry.size:
                    raise ValueError(f"{entry.name}: {len(items)} values for {entry.size} outputs")
                out.extend(items)
            else:
                out.append(values[entry] if entry in values else gr.skip())
        return tuple(out)

    def skip(self) -> tuple[Any, ...]:
        """Every output left as it is."""
        return self.pack()

    def components(self, *panels: object) -> list[Any]:
        """The components these names stand for, looked up in the panels that built them."""
        found: list[Any] = []
        for entry in self.entries:
            name = entry.name if isinstance(entry, Group) else entry
            holder = next((p for p in panels if hasattr(p, name)), None)
            if holder is None:
                raise AttributeError(f"no panel has a component named {name!r}")
            value = getattr(holder, name)
            if isinstance(entry, Group):
                items = list(value)
                if len(items) != entry.size:
                    raise ValueError(f"{name}: {len(items)} components for {entry.size} outputs")
                found.extend(items)
            else:
                found.append(value)
        return found


# Event options every module's wiring uses.
PRIVATE: Literal["private"] = "private"  # UI events: callable by the page, not listed as API
# No progress overlay or "•••" bubble on what an event only refills: it flashes for the
# fraction of a second the event takes, after every answer and on every conversation opened.
HIDDEN: Literal["hidden"] = "hidden"


class Quiet(TypedDict):
    """The options of a page event that only refills components: `event(..., **QUIET)`."""

    api_visibility: Literal["private"]
    show_progress: Literal["hidden"]


QUIET: Quiet = {"api_visibility": PRIVATE, "show_progress": HIDDEN}
