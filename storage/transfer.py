"""Export and import of whole conversations for one user; the caller's unit of work commits."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from storage.models import MESSAGE_ROLES, MESSAGE_STATES, Conversation, Message, new_id, utc_now
from storage.repository import TITLE_MAX_LENGTH, get_conversation, load_messages

IMPORTED_SUFFIX = " (imported)"
EMPTY_TITLE = "Untitled"
IMPORTED_STREAMING_ERROR = "This answer was still streaming when the conversation was exported."

# Stored as is from an imported message (ids, timestamps and state are handled separately).
COPIED_FIELDS = (
    "role", "content", "reasoning", "tool_calls", "tool_call_id", "name", "tool_status",
    "provider", "model", "parameters", "usage", "timings", "finish_reason", "feedback",
    "preferred", "choice_index", "attachments",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ImportedConversation:
    """A validated conversation read from an export file, ready to be stored.

    `messages` are dicts with the keys of `COPIED_FIELDS` plus "id", "parent_id", "state",
    "error", "batch_id" and "created_at" (an aware UTC datetime), in creation order. Their ids
    only link the messages of the file to each other: they are never stored.
    """

    title: str
    system_prompt: str = ""
    provider: str = ""
    model: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    current_leaf_id: str | None = None
    mode: str = "chat"  # chat | compare
    messages: list[dict[str, Any]] = field(default_factory=list)


def export_conversation(
    *, session: Session, user_id: int, conversation_id: str
) -> tuple[Conversation, list[Message]]:
    """Return one of the user's conversations with every message of its tree."""
    conversation = get_conversation(
        session=session, user_id=user_id, conversation_id=conversation_id
    )
    messages = load_messages(session=session, user_id=user_id, conversation_id=conversation.id)
    return conversation, messages


def export_all(*, session: Session, user_id: int) -> list[tuple[Conversation, list[Message]]]:
    """Return every conversation of the user (newest activity first) with its messages."""
    conversations = session.exec(
        select(Conversation)
        .where(Conversation.user_id == user_id)
        .order_by(col(Conversation.updated_at).desc(), col(Conversation.id).desc())
    ).all()
    statement = (
        select(Message)
        .where(Message.user_id == user_id)
        .order_by(col(Message.created_at), col(Message.choice_index), col(Message.id))
    )
    by_conversation: dict[str, list[Message]] = defaultdict(list)
    for message in session.exec(statement):
        by_conversation[message.conversation_id].append(message)
    return [(conversation, by_conversation[conversation.id]) for conversation in conversations]


def _imported_title(title: str) -> str:
    """The stored title: cleaned, shortened to leave room for the suffix, then suffixed."""
    base = " ".join(title.split())
    if not base:
        return EMPTY_TITLE
    return base[: TITLE_MAX_LENGTH - len(IMPORTED_SUFFIX)].rstrip() + IMPORTED_SUFFIX


def _message_rows(
    imported: ImportedConversation, conversation_id: str, user_id: int, ids: dict[str, str]
) -> list[Message]:
    """New rows for the imported messages: new ids, strictly increasing timestamps."""
    batches: dict[str, str] = {}
    ordered = sorted(
        enumerate(imported.messages),
        key=lambda pair: (pair[1]["created_at"], pair[1]["choice_index"], pair[0]),
    )
    rows: list[Message] = []
    previous: datetime | None = None
    for _, data in ordered:
        parent_id = data["parent_id"]
        if parent_id is not None and parent_id not in ids:
            raise ValueError(f"Message {data['id']!r} names a parent that is not imported")
        if data["role"] not in MESSAGE_ROLES or data["state"] not in MESSAGE_STATES:
            raise ValueError(f"Message {data['id']!r} has an unknown role or state")
        created: datetime = data["created_at"]
        if previous is not None and created <= previous:  # ties would reorder by the new ids
            created = previous + timedelta(microseconds=1)
        previous = created
        state, error = data["state"], data["error"]
        if state == "streaming":
            state, error = "interrupted", error or IMPORTED_STREAMING_ERROR
        batch_id = data["batch_id"]
        if batch_id is not None:
            batch_id = batches.setdefault(batch_id, new_id())
        rows.append(
            Message(
                **{name: data[name] for name in COPIED_FIELDS},
                id=ids[data["id"]],
                conversation_id=conversation_id,
                user_id=user_id,
                parent_id=ids[parent_id] if parent_id is not None else None,
                state=state,
                error=error,
                batch_id=batch_id,
                imported=True,  # its usage was someone's, some time: not this user's requests
                created_at=created,
                updated_at=created,
            )
        )
    return rows


def import_conversation(*, session: Session, user_id: int, imported: ImportedConversation) -> str:
    """Store an imported conversation as a new one of the user, with new ids; return its id."""
    ids = {data["id"]: new_id() for data in imported.messages}
    if len(ids) != len(imported.messages):
        raise ValueError("Imported message ids are not unique")
    leaf = imported.current_leaf_id
    if leaf is not None and leaf not in ids:
        raise ValueError("The imported current leaf is not an imported message")
    now = utc_now()
    conversation = Conversation(
        id=new_id(),
        user_id=user_id,
        title=_imported_title(imported.title),
        system_prompt=imported.system_prompt,
        provider=imported.provider,
        model=imported.model,
        parameters=dict(imported.parameters),
        current_leaf_id=ids[leaf] if leaf is not None else None,
        mode=imported.mode,
        created_at=imported.created_at or now,
        updated_at=now,
    )
    rows = _message_rows(imported, conversation.id, user_id, ids)
    if rows:
        # Messages added later must sort after every imported one (see add_message).
        conversation.updated_at = max(now, rows[-1].created_at)
    session.add(conversation)
    session.flush()  # the conversation row first: messages reference it
    session.add_all(rows)
    session.flush()
    return conversation.id
