"""The first rows of a Chat turn, written in the write-ahead unit of work: the conversation,
the question (new, regenerated or edited) and the answer's streaming placeholders; the
refusals that must come before anything is stored."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from storage import message_rows
from storage import repository as repo
from storage.models import Conversation, Message
from webapp.app.chat_request import Action, EditMessage, NewMessage, TurnSettings
from webapp.app.limits import LimitReached, check_limits
from webapp.app.turn_runs import (
    CONTEXT_FULL,
    ContextFull,
    RateLimitRefused,
    TurnRefused,
)
from webapp.core.attachments import (
    Attachment,
    has_images,
    has_video,
)
from webapp.core.capabilities import Capabilities
from webapp.core.context import (
    ContextLimit,
    used_tokens,
    would_exceed,
)
from webapp.core.history import auto_title


def _first_name(attached: tuple[Attachment, ...]) -> str:
    """A title for a message of pictures only: the first file's name, or its link."""
    first = attached[0] if attached else {}
    return str(first.get("name") or first.get("url") or "")


IMAGES_REFUSED = (
    "{model} does not accept images. Pick a vision model (their names have -VL, V "
    "or Omni, such as Qwen/Qwen2.5-VL-72B-Instruct), or send the question without "
    "its image."
)


VIDEO_REFUSED = (
    "{model} does not accept video. Pick a video model (such as "
    "Qwen/Qwen2.5-VL-72B-Instruct), or send the question without the video link."
)


@dataclass(slots=True)
class Prepared:
    """The rows a turn starts from: its conversation, the request's path and the answers' ids."""

    conversation: Conversation
    path: list[Message]
    assistant_ids: list[str]
    used: int  # tokens of the request's history (the provider's count where known)


@dataclass(frozen=True, slots=True)
class ContextCheck:
    """The model's window, the tokens kept for the answer, and whether to refuse a turn
    that would not fit (False: the oldest turns are left out of the request instead)."""

    limit: ContextLimit
    reserve: int
    refuse: bool


def check_attachments(attached: tuple[Attachment, ...], caps: Capabilities, model: str) -> None:
    """Refuse attachments the model is known not to take, before anything is stored."""
    if has_images(attached) and caps.vision is False:
        raise TurnRefused(IMAGES_REFUSED, model=model)
    if has_video(attached) and caps.video is False:
        raise TurnRefused(VIDEO_REFUSED, model=model)


def first_rows(
    session: Session,
    provider: str,
    owner: str,
    user_id: int,
    conversation_id: str | None,
    action: Action,
    turn: TurnSettings,
    model: str,
    clean: dict[str, Any],
    n: int,
    sent_params: dict[str, Any],
    caps: Capabilities,
    context: ContextCheck,
) -> Prepared:
    """The first rows of a Chat turn, in the write-ahead unit of work: the conversation, the
    question (new, regenerated or edited) and the answer's placeholders. Long: each of
    the three actions writes a different part of the tree, in one transaction."""
    try:
        check_limits(session=session, user_id=user_id)
    except LimitReached as exc:
        raise RateLimitRefused(str(exc)) from None
    if conversation_id:
        thread = repo.load_thread(session=session, user_id=user_id, conversation_id=conversation_id)
        conversation, path = thread.conversation, thread.path
    elif isinstance(action, NewMessage):
        conversation = repo.create_conversation(session=session, user_id=user_id, title="New chat")
        path = []
    else:
        raise TurnRefused("There is no conversation to regenerate or edit yet.")
    if isinstance(action, NewMessage):
        parent_id = path[-1].id if path else None
        user_message = message_rows.add_message(
            session=session,
            user_id=user_id,
            conversation_id=conversation.id,
            parent_id=parent_id,
            role="user",
            content=action.text,
            attachments=list(action.attachments) or None,
        )
        if not any(m.role == "user" for m in path):
            repo.set_title_if_default(
                session=session,
                user_id=user_id,
                conversation_id=conversation.id,
                title=auto_title(action.text or _first_name(action.attachments)),
            )
    elif isinstance(action, EditMessage):
        original = next((m for m in path if m.id == action.message_id), None)
        if original is None or original.role != "user":
            raise TurnRefused("That message can no longer be edited: reload the conversation.")
        # The question's own pictures go with it: a model that takes none cannot answer.
        check_attachments(tuple(original.attachments or ()), caps, model)
        user_message = message_rows.add_message(
            session=session,
            user_id=user_id,
            conversation_id=conversation.id,
            parent_id=original.parent_id,
            role="user",
            content=action.text,
            attachments=original.attachments,
        )
    else:
        users = [m for m in path if m.role == "user"]
        if not users:
            raise TurnRefused("There is no question to regenerate an answer for.")
        user_message = users[-1]
        check_attachments(tuple(user_message.attachments or ()), caps, model)
    path = [m for m in path if m.id != user_message.id]
    cut = next((i for i, m in enumerate(path) if m.id == user_message.parent_id), -1)
    path = path[: cut + 1] + [user_message]
    used, _ = used_tokens(path, turn.system_prompt)
    if context.refuse and would_exceed(used, context.reserve, context.limit):
        raise ContextFull(
            CONTEXT_FULL, used=f"{used:,}", model=model, limit=f"{context.limit.tokens:,}"
        )
    # Settings are saved only once the action is known to be valid.
    repo.update_conversation_settings(
        session=session,
        user_id=user_id,
        conversation_id=conversation.id,
        system_prompt=turn.system_prompt,
        provider=turn.provider,
        model=model,
        parameters=clean,
    )
    assistant_ids = []
    batch_id = uuid.uuid4().hex if n > 1 else None
    for index in range(n):
        row = message_rows.add_message(
            session=session,
            user_id=user_id,
            conversation_id=conversation.id,
            parent_id=user_message.id,
            role="assistant",
            state="streaming",
            owner=owner,
            provider=provider,
            model=model,
            parameters=sent_params,
            choice_index=index,
            batch_id=batch_id,
            make_current=index == 0,
        )
        assistant_ids.append(row.id)
    return Prepared(conversation, path, assistant_ids, used)
