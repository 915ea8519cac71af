"""Personal API keys: create, list, revoke, look up by key. Keyword-only, scoped to a user."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from storage.field_limits import PRESET_NAME, check
from storage.models import ApiKey, User, utc_now

KEY_PREFIX = "pk-"  # every Parley key starts so, which tells it apart from a provider's
SHOWN_CHARS = 10  # the start of a key, shown in the list to tell keys apart
MAX_KEYS_PER_USER = 50
TOUCH_EVERY = timedelta(minutes=5)  # last_used_at is refreshed at most this often


class KeyRefused(ValueError):
    """A key cannot be made or changed; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """Who a valid key belongs to."""

    key_id: str
    user_id: int
    username: str


def key_hash(secret: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(*, session: Session, user_id: int, name: str) -> tuple[ApiKey, str]:
    """Make a key for the user; returns the row and the key itself (shown once, never stored)."""
    name = check(PRESET_NAME, name.strip() or "API key")
    live = session.exec(
        select(ApiKey).where(col(ApiKey.user_id) == user_id, col(ApiKey.revoked_at).is_(None))
    ).all()
    if len(live) >= MAX_KEYS_PER_USER:
        raise KeyRefused(
            f"You have {len(live)} keys, the most one person may have; revoke one "
            "you no longer use first."
        )
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(user_id=user_id, name=name, prefix=secret[:SHOWN_CHARS], key_hash=key_hash(secret))
    session.add(row)
    session.flush()
    session.refresh(row)
    return row, secret


def list_keys(*, session: Session, user_id: int) -> list[ApiKey]:
    """The user's keys that still work, newest first."""
    return list(
        session.exec(
            select(ApiKey)
            .where(col(ApiKey.user_id) == user_id, col(ApiKey.revoked_at).is_(None))
            .order_by(col(ApiKey.created_at).desc())
        ).all()
    )


def revoke_key(*, session: Session, user_id: int, key_id: str) -> bool:
    """Revoke one of the user's keys; False when there is no such key of theirs."""
    row = session.get(ApiKey, key_id)
    if row is None or row.user_id != user_id or row.revoked_at is not None:
        return False
    row.revoked_at = utc_now()
    session.flush()
    return True


def owner_of(*, session: Session, secret: str, now: datetime | None = None) -> KeyOwner | None:
    """Who a key belongs to, or None for an unknown, revoked or disabled one."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    row = session.exec(select(ApiKey).where(col(ApiKey.key_hash) == key_hash(secret))).first()
    if row is None or row.revoked_at is not None:
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    now = now or utc_now()
    if row.last_used_at is None or now - row.last_used_at > TOUCH_EVERY:
        row.last_used_at = now
        session.flush()
    return KeyOwner(row.id, row.user_id, user.username)
