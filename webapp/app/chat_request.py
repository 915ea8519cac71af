"""What a Chat turn asks for: the user's settings for it and its action (a new message,
a regeneration, an edit). Plain data, shared by ChatService, the UI and the APIs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webapp.core.attachments import (
    Attachment,
)


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """The user's choices for one turn."""

    provider: str
    model: str
    system_prompt: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)  # raw values; validated here
    api_keys: Mapping[str, str] = field(default_factory=dict, repr=False)  # pasted this session
    tools: tuple[str, ...] = ()  # names of the tools offered
    # {{user.NAME}} values for MCP servers' headers, set this session (never stored or logged)
    mcp_credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    tool_choice: str = "auto"  # auto | none | required | an offered tool's name
    interactive: bool = True  # a person can approve tool calls (False through the API)
    # Seconds added to the update interval per message already in the conversation: a page
    # re-sends its whole chat with every update, so long chats are updated less often.
    interval_per_message_s: float = 0.0
    # Leave out the oldest turns when the request would not fit the model's context (the
    # user chose to); otherwise such a turn is refused with ContextFull before anything is sent.
    fit_context: bool = False


@dataclass(frozen=True, slots=True)
class NewMessage:
    text: str
    attachments: tuple[Attachment, ...] = ()  # checked images and links (webapp.core.attachments)


@dataclass(frozen=True, slots=True)
class Regenerate:
    pass


@dataclass(frozen=True, slots=True)
class EditMessage:
    message_id: str
    text: str


Action = NewMessage | Regenerate | EditMessage
