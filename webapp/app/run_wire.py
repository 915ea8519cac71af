"""A live run's snapshot as JSON, for a viewer on another process (webapp/app/redis_cluster.py).

What travels is what a remote viewer shows: the state, each choice's text and reasoning so far,
the earlier tool rounds' text, this round's tool calls with their status (so a call waiting
for approval can be approved from there), the model and the error (as data, worded by the
viewer). Timings, usage and tool results stay with the owning process; a viewer that needs
them reads the stored answer once the run has ended.
"""

from __future__ import annotations

import json
from typing import Any

from webapp.app.turn_runs import TurnUpdate
from webapp.core.messages import ChoiceState, ToolCall
from webapp.core.turn import RoundView, ToolCallView, TurnProgress
from webapp.provider.error_info import parse_error, stored_error


def to_wire(update: TurnUpdate) -> str:
    """The snapshot as one JSON text."""
    progress = update.progress
    return json.dumps(
        {
            "conversation_id": update.conversation_id,
            "assistant_ids": update.assistant_ids,
            "provider_label": update.provider_label,
            "model": update.model,
            "state": update.state,
            "error": stored_error(update.error),
            "choices": [{"content": c.content, "reasoning": c.reasoning} for c in progress.choices],
            "rounds": [{"content": r.content, "reasoning": r.reasoning} for r in progress.rounds],
            "retry_note": progress.retry_note,
            "tools": [
                {
                    "id": v.call.id,
                    "name": v.call.name,
                    "arguments": v.call.arguments,
                    "status": v.status,
                }
                for v in progress.tools
            ],  # fmt: skip
        },
        ensure_ascii=False,
    )


def signature(update: TurnUpdate) -> tuple[Any, ...]:
    """Changes when what `to_wire` sends changes (cheap: lengths, not texts)."""
    progress = update.progress
    return (
        update.state,
        bool(update.error),
        len(progress.rounds),
        progress.retry_note,
        tuple((view.call.id, view.status) for view in progress.tools),
        *((len(c.content), len(c.reasoning)) for c in progress.choices),
    )


def apply_wire(update: TurnUpdate, text: str) -> None:
    """Bring a viewer's copy of the snapshot up to date, in place (viewers hold on to it)."""
    data = json.loads(text)
    choices = [ChoiceState(content=c["content"], reasoning=c["reasoning"]) for c in data["choices"]]
    rounds = [
        RoundView(r["content"], r["reasoning"], None, [], None, {"duration_ms": 0})
        for r in data["rounds"]
    ]
    progress = TurnProgress(n=max(1, len(choices)))
    progress.choices, progress.rounds = choices or [ChoiceState()], rounds
    progress.retry_note = str(data.get("retry_note") or "")
    progress.tools = [
        ToolCallView(ToolCall(t["id"], t["name"], t["arguments"]), status=t["status"])
        for t in data.get("tools") or []
    ]
    update.progress = progress
    update.assistant_ids = list(data["assistant_ids"])
    update.provider_label, update.model = data["provider_label"], data["model"]
    update.state = data["state"]
    update.error = parse_error(data["error"]) or ""


def blank(conversation_id: str) -> TurnUpdate:
    """A viewer's copy before the first snapshot arrives."""
    return TurnUpdate(conversation_id, [], [], TurnProgress(), "", "")
