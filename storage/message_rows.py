"""Writing a conversation's messages, scoped to one user: add one, complete a streaming one,
save partial text, store a tool round, set the active leaf, feedback and the preferred answer,
mark interrupted answers. They flush; the caller's unit of work (storage.db.unit_of_work)
commits. Reads and the conversations themselves are in storage/repository.py."""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, update
from sqlmodel import Session, col, select

from storage import repository as repo
from storage.models import MESSAGE_ROLES, Conversation, Message, utc_now
from storage.repository import of_user
from storage.schemas import NextAnswer, StoredTimings, StoredToolCall, StoredToolResult, StoredUsage

INTERRUPTED_ERROR = "The server stopped while this answer was streaming."


def add_message(
    *,
    session: Session,
    user_id: int,
    conversation_id: str,
    parent_id: str | None,
    role: str,
    content: str = "",
    state: str = "complete",
    owner: str | None = None,
    make_current: bool = True,
    reasoning: str = "",
    tool_calls: list[StoredToolCall] | None = None,
    tool_call_id: str | None = None,
    name: str | None = None,
    tool_status: str | None = None,
    provider: str = "",
    model: str = "",
    parameters: dict[str, Any] | None = None,
    usage: StoredUsage | None = None,
    timings: StoredTimings | None = None,
    finish_reason: str | None = None,
    error: str | None = None,
    feedback: int | None = None,
    choice_index: int = 0,
    batch_id: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
) -> Message:
    """Append a message under ``parent_id`` and (by default) make it the active leaf.

    Long: one keyword per column of the row (typed, so mypy sees a typo)."""
    if role not in MESSAGE_ROLES:
        raise ValueError(f"Unknown message role: {role!r}")
    repo.check_state(state)
    if parent_id is not None:
        repo.check_id(parent_id)
    conversation = repo.owned_conversation(session, user_id, conversation_id)
    if parent_id is not None:
        parent = session.get(Message, parent_id)
        if parent is None or parent.conversation_id != conversation.id:
            raise repo.NotFound(f"Message {parent_id} not found in this conversation")
    # Strictly increasing timestamps per conversation keep "created order" well defined.
    now = max(utc_now(), conversation.updated_at + timedelta(microseconds=1))
    message = Message(
        conversation_id=conversation.id,
        user_id=user_id,
        parent_id=parent_id,
        role=role,
        content=content,
        state=state,
        owner=owner,
        reasoning=reasoning,
        tool_calls=tool_calls,
        tool_call_id=tool_call_id,
        name=name,
        tool_status=tool_status,
        provider=provider,
        model=model,
        parameters=parameters,
        usage=usage,
        timings=timings,
        finish_reason=finish_reason,
        error=error,
        feedback=feedback,
        choice_index=choice_index,
        batch_id=batch_id,
        attachments=attachments,
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    conversation.updated_at = now
    if make_current:
        conversation.current_leaf_id = message.id
    session.flush()
    return message


def complete_message(
    *,
    session: Session,
    user_id: int,
    message_id: str,
    content: str,
    reasoning: str = "",
    state: str = "complete",
    usage: StoredUsage | None = None,
    timings: StoredTimings | None = None,
    finish_reason: str | None = None,
    error: str | None = None,
    tool_calls: list[StoredToolCall] | None = None,
) -> Message:
    """Store the final content and metadata of a (usually streaming) message."""
    repo.check_state(state)
    message = repo.owned_message(session, user_id, message_id)
    now = utc_now()
    message.content = content
    message.reasoning = reasoning
    message.state = state
    message.usage = usage
    message.timings = timings
    message.finish_reason = finish_reason
    message.error = error
    message.tool_calls = tool_calls
    message.updated_at = now
    session.execute(
        update(Conversation)
        .where(col(Conversation.id) == message.conversation_id)
        .where(col(Conversation.updated_at) < now)
        .values(updated_at=now)
    )
    session.flush()
    return message


def save_partials(*, session: Session, rows: list[tuple[int, str, str, str]]) -> int:
    """Store the text streaming answers have so far, as (user id, message id, content,
    reasoning), in one transaction of Core UPDATEs; a row no longer "streaming" (its final
    save came first) is left alone. Returns how many rows changed."""
    table = Message.__table__  # type: ignore[attr-defined]
    now = utc_now()
    changed = 0
    for user_id, message_id, content, reasoning in rows:
        result = session.connection().execute(
            update(table)
            .where(
                table.c.id == message_id, table.c.user_id == user_id, table.c.state == "streaming"
            )
            .values(content=content, reasoning=reasoning, updated_at=now)
        )
        changed += int(getattr(result, "rowcount", 0) or 0)
    return changed


def drop_unstarted_choices(
    *, session: Session, user_id: int, keep_id: str, drop_ids: list[str]
) -> None:
    """A request for several choices (n > 1) failed before any began: keep one answer row
    (for the error) and delete the other, still empty, rows of its batch."""
    keep = repo.owned_message(session, user_id, keep_id)
    keep.batch_id = None
    session.execute(
        delete(Message).where(
            col(Message.id).in_(drop_ids),
            col(Message.user_id) == user_id,
            col(Message.conversation_id) == keep.conversation_id,
            col(Message.state) == "streaming",
            col(Message.content) == "",
        )
    )
    session.flush()


def record_tool_round(
    *,
    session: Session,
    user_id: int,
    assistant_id: str,
    results: list[StoredToolResult],
    next_assistant: NextAnswer | None = None,
) -> str | None:
    """Store a round's tool results under its assistant message, in one flush.

    `results` are {"tool_call_id", "name", "content", "tool_status", "state"?, "error"?,
    "timings"?, "attachments"?} in the order of the assistant's tool calls; they are chained
    one under the other (so the active path replays them in order). With `next_assistant`
    (fields of a new assistant row), a "streaming" assistant row is added under the last
    result and made current; its id is returned.

    Long: the result rows and the next answer's row are built here in one pass, one flush.
    """
    assistant = repo.owned_message(session, user_id, assistant_id)
    conversation = repo.owned_conversation(session, user_id, assistant.conversation_id)
    now = max(utc_now(), conversation.updated_at + timedelta(microseconds=1))
    parent_id = assistant.id
    for result in results:
        state = result.get("state", "complete")
        repo.check_state(state)
        row = Message(
            conversation_id=conversation.id,
            user_id=user_id,
            parent_id=parent_id,
            role="tool",
            content=result["content"],
            state=state,
            tool_call_id=result["tool_call_id"],
            name=result["name"],
            tool_status=result["tool_status"],
            error=result.get("error"),
            timings=result.get("timings"),
            attachments=result.get("attachments") or None,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        parent_id = row.id
        now += timedelta(microseconds=1)
    next_id = None
    if next_assistant is not None:
        row = Message(
            conversation_id=conversation.id,
            user_id=user_id,
            parent_id=parent_id,
            role="assistant",
            state="streaming",
            owner=assistant.owner,  # the same process streams the turn's next answer
            created_at=now,
            updated_at=now,
            **next_assistant,
        )
        session.add(row)
        parent_id = next_id = row.id
    conversation.current_leaf_id = parent_id
    conversation.updated_at = now
    session.flush()
    return next_id


def set_current_leaf(
    *, session: Session, user_id: int, conversation_id: str, message_id: str
) -> None:
    """Make ``message_id`` the tip of the conversation's active branch."""
    repo.check_id(message_id)
    conversation = repo.owned_conversation(session, user_id, conversation_id)
    message = repo.owned_message(session, user_id, message_id)
    if message.conversation_id != conversation.id:
        raise repo.NotFound(f"Message {message_id} not found in this conversation")
    conversation.current_leaf_id = message.id
    session.flush()


def set_feedback(*, session: Session, user_id: int, message_id: str, value: int | None) -> None:
    """Record a like (1), a dislike (-1) or clear the feedback (None)."""
    if value not in (1, -1, None) or isinstance(value, bool):
        raise ValueError(f"Feedback must be 1, -1 or None, not {value!r}")
    message = repo.owned_message(session, user_id, message_id)
    message.feedback = value
    session.flush()


def set_preferred(*, session: Session, user_id: int, message_id: str) -> None:
    """Mark an answer best among the answers of its batch (the others of the batch not)."""
    message = repo.owned_message(session, user_id, message_id)
    batch = [message]
    if message.batch_id is not None:
        batch = list(
            session.exec(
                select(Message).where(
                    Message.conversation_id == message.conversation_id,
                    of_user(user_id),
                    Message.role == "assistant",
                    Message.batch_id == message.batch_id,
                )
            ).all()
        )
    for row in batch:
        row.preferred = row.id == message.id
    session.flush()


def mark_interrupted(*, session: Session, owners: Collection[str | None] | None = None) -> int:
    """Mark still-streaming messages (any user) as interrupted: every one, or those of the
    given owners (processes; None stands for rows without one). Returns how many."""
    statement = update(Message).where(col(Message.state) == "streaming")
    if owners is not None:
        named = [owner for owner in owners if owner is not None]
        matches = [col(Message.owner).in_(named)] if named else []
        if None in owners:
            matches.append(col(Message.owner).is_(None))
        if not matches:
            return 0
        statement = statement.where(or_(*matches))
    result = session.execute(
        statement.values(state="interrupted", error=INTERRUPTED_ERROR, updated_at=utc_now())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def streaming_owners(*, session: Session) -> set[str | None]:
    """The processes (owners) of the messages still streaming, any user."""
    statement = select(Message.owner).where(col(Message.state) == "streaming").distinct()
    return set(session.exec(statement).all())
