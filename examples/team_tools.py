"""Example team tools for Parley: load with TOOLS_MODULES=examples/team_tools.py."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel

from webapp.tools.registry import tool


class Priority(Enum):
    LOW = "low"
    HIGH = "high"


class Ticket(BaseModel):
    title: str
    priority: Priority = Priority.LOW
    labels: list[str] = []


@tool
def convert_units(value: float, unit: Literal["km", "mi"]) -> str:
    """Convert a distance between kilometres and miles.

    Args:
        value: The distance to convert.
        unit: The unit `value` is in; the answer is in the other one.
    """
    if unit == "km":
        return f"{value / 1.609344:.3f} mi"
    return f"{value * 1.609344:.3f} km"


@tool(needs_approval=True)
async def file_ticket(ticket: Ticket, assignee: str | None = None) -> dict[str, str]:
    """File a ticket in the team tracker. Use only when the user asks for a ticket.

    Args:
        ticket: What the ticket says.
        assignee: Who should take it, if the user named someone.
    """
    # A real tool would call the tracker's API here (with a key read from the environment).
    return {
        "status": "filed",
        "title": ticket.title,
        "priority": ticket.priority.value,
        "assignee": assignee or "unassigned",
    }
