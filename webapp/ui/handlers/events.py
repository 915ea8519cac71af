"""What each Chat-tab event updates, by name (webapp/ui/outputs.py), and the small
values the handlers share.

The wiring binds the names to the page's components; the handlers return values by the
same names."""

from __future__ import annotations

from typing import Any, TypeVar

from webapp.core.params import PARAMS
from webapp.ui.outputs import Group, Outputs

Updates = tuple[Any, ...]
# What each event updates, by name (webapp/ui/outputs.py): the wiring binds the names to the
# page's components, the handlers below return values by the same names.
SWITCHER = Group("switcher", 4)  # the version switcher: label, ◀, ▶, "Use this version"
PARAM_CONTROLS = Group("params", len(PARAMS))  # one control per parameter, in PARAMS order
TURN = Outputs("chatbot", "box", "state", "approval_panel", "approval_text", "conversations")
SEND = TURN + "links"  # the links box is cleared with the message box
AFTER = Outputs("chatbot", "state", SWITCHER, "conversations")
AFTER_FOLLOWING = AFTER + "box"
OPEN = Outputs(
    "chatbot",
    "state",
    "title_box",
    "system",
    "provider",
    "model",
    "models_note",
    "tools_box",
    "tool_choice",
    SWITCHER,
    PARAM_CONTROLS,
)
NEW_CHAT = Outputs("chatbot", "state", "title_box", "conversations", SWITCHER)
DELETE = NEW_CHAT + "confirm_row"
UNDO = Outputs("chatbot", "box", "state")
FOCUS = Outputs("state", SWITCHER)
VERSION = Outputs("chatbot", "state", SWITCHER)
RERENDER = Outputs("chatbot", SWITCHER)
MODELS = Outputs("model", "models_note")
GAUGE = Outputs("gauge", "context_offer")
DROP = Outputs("state", "context_offer")
TOOL_OPTIONS = Outputs("tools_box", "tool_choice")
KEY = Outputs("key_box", "key_status", "state", "banner", "model", "models_note")
T = TypeVar("T")
# Every update re-sends the whole chat to the page (Gradio diffs it after postprocessing all
# of it): 0.1 s between updates in a new chat, 0.3 s with 40 turns above (bench/load.py).
INTERVAL_PER_MESSAGE_S = 0.0025
EMPTY_BOX: dict[str, Any] = {"text": "", "files": []}  # the message box, cleared
LIVE_MARK = "● "  # a sidebar title's prefix while its conversation has an answer streaming
STREAMING_BOX: dict[str, Any] = {"submit_btn": False, "stop_btn": True}  # Stop instead of Send


def box_value(value: Any) -> tuple[str, list[str]]:
    """The message box's text and the paths of the files attached to it."""
    if isinstance(value, str):
        return value, []
    if not isinstance(value, dict):
        return "", []
    files = []
    for item in value.get("files") or []:
        path = item.get("path") if isinstance(item, dict) else item
        if isinstance(path, str) and path:
            files.append(path)
    return str(value.get("text") or ""), files
