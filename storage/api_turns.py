"""The first rows of an API turn, written with a few Core statements in one transaction.

An OpenAI-style request carries its whole history. Before its upstream request goes out, the
turn's conversation (new, or one it continues), the request's messages and the streaming
answer rows are written here: a handful of INSERTs, no ORM objects, so the write-ahead that
keeps every answer findable after a crash costs about a millisecond instead of the ORM's ten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlmodel import Session

from storage.models import Conversation, Message, new_id, utc_now
from storage.repository import NotFound, check_id
from storage.schemas import StoredToolCall

CONVERSATIONS = Conversation.__table__  # type: ignore[attr-defined]
MESSAGES = Message.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class StoredRequestMessage:
    """One message of the request, as it is kept in the conversation."""

    role: str  # user | assistant | tool
    content: str
    tool_calls: list[StoredToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    attachments: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class ApiTurnRows:
    """What `write_api_turn` made: the conversation, its new question path and answer rows."""

    conversation_id: str
    question_id: str | None  # the last stored message of the request (the answers' parent)
    answer_ids: list[str]


def write_api_turn(
    *,
    session: Session,
    user_id: int,
    conversation_id: str | None,
    title: str,
    system_prompt: str,
    provider: str,
    model: str,
    parameters: dict[str, Any],
    sent_parameters: dict[str, Any],
    messages: list[StoredRequestMessage],
    answers: int,
    owner: str | None = None,
) -> ApiTurnRows:
    """Store the request and its streaming answer rows; a new conversation unless
    `conversation_id` names one of the user's own (then the messages continue it).

    Long: a handful of Core INSERTs written out one by one, no ORM objects, so the
    write-ahead costs about a millisecond instead of the ORM's ten (see the module's docstring)."""
    now = utc_now()
    parent_id: str | None = None
    continued = bool(conversation_id)
    if conversation_id:
        check_id(conversation_id)  # InvalidId for anything but an id
        row = session.execute(
            select(CONVERSATIONS.c.current_leaf_id, CONVERSATIONS.c.updated_at).where(
                CONVERSATIONS.c.id == conversation_id,
                CONVERSATIONS.c.user_id == user_id,
                CONVERSATIONS.c.mode == "chat",
            )
        ).first()
        if row is None:
            raise NotFound(f"Conversation {conversation_id} not found")
        parent_id = row.current_leaf_id
        now = max(now, row.updated_at + timedelta(microseconds=1))
    else:
        conversation_id = new_id()
    rows: list[dict[str, Any]] = []
    step = timedelta(microseconds=1)  # strictly increasing times keep "created order" defined
    for index, message in enumerate(messages):
        message_id = new_id()
        rows.append(
            _message(
                message_id,
                conversation_id,
                user_id,
                parent_id,
                now + step * index,
                role=message.role,
                content=message.content,
                tool_calls=message.tool_calls,
                tool_call_id=message.tool_call_id,
                name=message.name,
                attachments=message.attachments,
                tool_status="done" if message.role == "tool" else None,
            )
        )
        parent_id = message_id
    question_id = parent_id
    answer_ids = []
    batch_id = new_id() if answers > 1 else None
    answered_at = now + step * len(messages)
    for index in range(answers):
        answer_id = new_id()
        answer_ids.append(answer_id)
        rows.append(
            _message(
                answer_id,
                conversation_id,
                user_id,
                question_id,
                answered_at,
                role="assistant",
                content="",
                state="streaming",
                owner=owner,
                provider=provider,
                model=model,
                parameters=sent_parameters,
                choice_index=index,
                batch_id=batch_id,
            )
        )
    settings = {
        "current_leaf_id": answer_ids[0] if answer_ids else question_id,
        "updated_at": answered_at,
        "system_prompt": system_prompt,
        "provider": provider,
        "model": model,
        "parameters": parameters,
    }
    if continued:
        session.execute(
            update(CONVERSATIONS).where(CONVERSATIONS.c.id == conversation_id).values(**settings)
        )
    else:  # the conversation row is written whole, before the messages that point at it
        session.execute(
            insert(CONVERSATIONS).values(
                id=conversation_id,
                user_id=user_id,
                title=title,
                mode="chat",
                created_at=now,
                **settings,
            )
        )
    session.execute(insert(MESSAGES), rows)
    return ApiTurnRows(conversation_id, question_id, answer_ids)


def _message(
    message_id: str,
    conversation_id: str,
    user_id: int,
    parent_id: str | None,
    at: Any,
    **fields: Any,
) -> dict[str, Any]:
    """A messages row with every column set (one executemany needs the same keys)."""
    row: dict[str, Any] = {
        "id": message_id,
        "conversation_id": conversation_id,
        "user_id": user_id,
        "parent_id": parent_id,
        "role": "user",
        "content": "",
        "reasoning": "",
        "tool_calls": None,
        "tool_call_id": None,
        "name": None,
        "tool_status": None,
        "provider": "",
        "model": "",
        "parameters": None,
        "usage": None,
        "timings": None,
        "finish_reason": None,
        "state": "complete",
        "owner": None,
        "error": None,
        "feedback": None,
        "choice_index": 0,
        "batch_id": None,
        "attachments": None,
        "imported": False,
        "preferred": False,
        "created_at": at,
        "updated_at": at,
    }
    row.update(fields)  # None in a JSON column is stored as the ORM stores it (JSON null)
    return row
