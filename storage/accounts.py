"""Accounts, per-user limits, usage figures and share links: keyword-only; they flush, the
caller's unit of work commits.

Password hashing happens above this layer (webapp/app/auth.py); only hashes are stored here.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.field_limits import USERNAME
from storage.models import Conversation, DeletedUsage, Message, ShareLink, User, utc_now
from storage.repository import NotFound, Thread, find_user, load_thread, owned_conversation

USERNAME_MAX = USERNAME.max_chars


class AccountError(ValueError):
    """An account operation is not possible; the message says why."""


def get_user(*, session: Session, username: str) -> User | None:
    """The user of this name, whatever its case ("ALICE" signs in as alice)."""
    return find_user(session=session, username=username)


def require_user(*, session: Session, username: str) -> User:
    user = get_user(session=session, username=username)
    if user is None:
        raise AccountError(f"No user named {username!r}.")
    return user


def create_account(
    *, session: Session, username: str, password_hash: str | None, is_admin: bool = False
) -> User:
    """Create a user (an account when a password hash is given); refuse an existing name."""
    name = username.strip()
    if (
        not name
        or len(name) > USERNAME_MAX
        or any(c.isspace() or not c.isprintable() for c in name)
    ):
        raise AccountError(f"User names are 1–{USERNAME_MAX} printable characters without spaces.")
    existing = get_user(session=session, username=name)
    if existing is not None:
        raise AccountError(f"A user named {existing.username!r} already exists.")
    user = User(username=name, password_hash=password_hash, is_admin=is_admin)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:  # created meanwhile, in this spelling or another (the unit rolls back)
        raise AccountError(f"A user named {name!r} already exists.") from None
    return user


def update_account(*, session: Session, username: str, **changes: Any) -> User:
    """Change password_hash, is_admin, disabled, rpm_limit or daily_token_limit."""
    allowed = {"password_hash", "is_admin", "disabled", "rpm_limit", "daily_token_limit"}
    unknown = set(changes) - allowed
    if unknown:
        raise TypeError(f"Unknown account fields: {sorted(unknown)}")
    user = require_user(session=session, username=username)
    for name, value in changes.items():
        setattr(user, name, value)
    session.add(user)
    session.flush()
    return user


def list_users(*, session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.username))).all())


# ---- usage and limits ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Requests, tokens and errors for one user and model over a period."""

    username: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    errors: int


def usage_since(*, session: Session, since: datetime) -> list[UsageRow]:
    """Upstream requests (answer rows, see `_one_request`) per user and model since `since`."""
    statement = (
        select(User.username, Message.model, Message.usage, Message.state)
        .join(User, col(User.id) == col(Message.user_id))
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .where(
            Message.role == "assistant",
            _one_request(),
            col(Message.imported).is_(False),
            col(Message.created_at) >= since,
        )
    )
    # Answers of deleted conversations still count (storage.models.DeletedUsage).
    deleted = (
        select(User.username, DeletedUsage.model, DeletedUsage.usage, DeletedUsage.state)
        .join(User, col(User.id) == col(DeletedUsage.user_id))
        .where(col(DeletedUsage.request).is_(True), col(DeletedUsage.created_at) >= since)
    )
    totals: dict[tuple[str, str], list[int]] = {}
    for username, model, usage, state in [
        *session.exec(statement).all(),
        *session.exec(deleted).all(),
    ]:
        row = totals.setdefault((username, model or "?"), [0, 0, 0, 0])
        row[0] += 1
        row[1] += _tokens(usage, "prompt_tokens")
        row[2] += _tokens(usage, "completion_tokens")
        row[3] += state == "error"
    return [UsageRow(user, model, *values) for (user, model), values in sorted(totals.items())]


def requests_since(*, session: Session, user_id: int, since: datetime) -> int:
    """How many upstream requests the user started since `since` (for requests per minute)."""
    statement = (
        select(func.count())
        .select_from(Message)
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .where(
            Message.user_id == user_id,
            Message.role == "assistant",
            _one_request(),
            col(Message.imported).is_(False),
            col(Message.created_at) >= since,
        )
    )
    deleted = (
        select(func.count())
        .select_from(DeletedUsage)
        .where(
            DeletedUsage.user_id == user_id,
            col(DeletedUsage.request).is_(True),
            col(DeletedUsage.created_at) >= since,
        )
    )
    return int(session.exec(statement).one()) + int(session.exec(deleted).one())


def _one_request() -> Any:
    """Answer rows that each stand for one upstream request: the first choice of a chat answer
    (n choices come from one request), and every column of a comparison (one request each)."""
    return or_(col(Message.choice_index) == 0, col(Conversation.mode) == "compare")


def tokens_since(*, session: Session, user_id: int, since: datetime) -> int:
    """Total tokens the user's answers used since `since` (for tokens per day)."""
    statement = select(Message.usage).where(
        Message.user_id == user_id,
        Message.role == "assistant",
        col(Message.imported).is_(False),
        col(Message.created_at) >= since,
        col(Message.usage).is_not(None),
    )
    usages: list[Mapping[str, Any] | None] = list(session.exec(statement).all())
    usages += session.exec(
        select(DeletedUsage.usage).where(
            DeletedUsage.user_id == user_id, col(DeletedUsage.created_at) >= since
        )
    ).all()
    return sum(_tokens(usage, "total_tokens") for usage in usages)


def _tokens(usage: Mapping[str, Any] | None, key: str) -> int:
    value = (usage or {}).get(key, 0)
    return value if isinstance(value, int) and value > 0 else 0


# ---- share links ---------------------------------------------------------------------------


def create_share(*, session: Session, user_id: int, conversation_id: str) -> ShareLink:
    """A new read-only link to one of the user's conversations (an unguessable token)."""
    conversation = owned_conversation(session, user_id, conversation_id)
    link = ShareLink(
        token=secrets.token_urlsafe(24), conversation_id=conversation.id, user_id=user_id
    )
    session.add(link)
    session.flush()
    return link


def list_shares(*, session: Session, user_id: int, conversation_id: str) -> list[ShareLink]:
    """The user's live links to this conversation, newest first."""
    owned_conversation(session, user_id, conversation_id)
    statement = (
        select(ShareLink)
        .where(
            ShareLink.user_id == user_id,
            ShareLink.conversation_id == conversation_id,
            col(ShareLink.revoked_at).is_(None),
        )
        .order_by(col(ShareLink.created_at).desc())
    )
    return list(session.exec(statement).all())


def revoke_shares(*, session: Session, user_id: int, conversation_id: str) -> int:
    """Revoke every live link the user made to this conversation; return how many."""
    links = list_shares(session=session, user_id=user_id, conversation_id=conversation_id)
    now = utc_now()
    for link in links:
        link.revoked_at = now
        session.add(link)
    session.flush()
    return len(links)


def shared_conversation(*, session: Session, token: str) -> Thread:
    """The conversation behind a live share token, with its messages and active path;
    NotFound otherwise."""
    if not token or len(token) > 64:
        raise NotFound("No such share link")
    link = session.get(ShareLink, token)
    if link is None or link.revoked_at is not None:
        raise NotFound("This share link does not exist or was revoked")
    conversation = session.get(Conversation, link.conversation_id)
    if conversation is None or conversation.user_id != link.user_id:
        raise NotFound("The shared conversation no longer exists")
    return load_thread(session=session, user_id=link.user_id, conversation_id=conversation.id)
