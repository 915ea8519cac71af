"""Per-browser-session state, kept server-side in gr.State (never in module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

SHOWN_MESSAGES = 120  # stored messages the chat shows at first (webapp/ui/render.py)


@dataclass
class SessionState:
    """What one browser tab is doing. API keys pasted here live only in server memory."""

    username: str = ""
    user_id: int | None = None
    conversation_id: str | None = None
    api_keys: dict[str, str] = field(default_factory=dict)
    mcp_credentials: dict[str, str] = field(default_factory=dict)  # {{user.NAME}} → value
    message_ids: list[str | None] = field(default_factory=list)  # Chatbot index → message id
    focus_id: str | None = None  # the message whose versions the switcher shows
    active_ids: set[str] = field(default_factory=set)  # the messages on the shown path
    lang: str = "en"  # the page's language: en | zh (webapp.i18n)
    query: str = ""  # the sidebar's search text, as last applied
    listing: list[tuple[str, str]] = field(default_factory=list)  # (title, id) as last listed
    attached: bool = False  # this tab is following a run it did not start (set by attach)
    viewing: bool = False  # this tab's chat is showing a live run now
    stop_pending: bool = False  # Stop was pressed before this tab's new run existed
    window: int = SHOWN_MESSAGES  # how many of the last stored messages the chat shows
    hidden: int = 0  # stored messages above the shown ones
    context_full: bool = False  # the last send was refused: it would not fit the context
    fit_context_for: str | None = None  # the conversation whose oldest turns may be dropped
    # (conversation id, tokens so far, whether estimated), from the last render of the chat
    context_used: tuple[str, int, bool] | None = None
    summary_of: str | None = None  # the conversation being summarized for a new chat

    def __repr__(self) -> str:  # keys must never reach a log line
        return (
            f"SessionState(user={self.username!r}, conversation={self.conversation_id!r}, "
            f"keys={sorted(self.api_keys)})"
        )
