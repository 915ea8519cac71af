"""Per-user limits set by admins: requests per minute and tokens per UTC day."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from storage import accounts
from storage.models import User, utc_now


class LimitReached(Exception):
    """The user is over a limit; the message says which, and when it resets."""


def check_limits(*, session: Session, user_id: int, now: datetime | None = None) -> None:
    """Raise LimitReached when starting one more request would exceed the user's limits."""
    user = session.get(User, user_id)
    if user is None or not (user.rpm_limit or user.daily_token_limit):
        return
    now = now or utc_now()
    if user.rpm_limit:
        recent = accounts.requests_since(
            session=session, user_id=user_id, since=now - timedelta(minutes=1)
        )
        if recent >= user.rpm_limit:
            raise LimitReached(
                f"You have reached your limit of {user.rpm_limit} requests per minute (set by "
                "an admin). Wait a minute and send again; your message is still in the box."
            )
    if user.daily_token_limit:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        used = accounts.tokens_since(session=session, user_id=user_id, since=midnight)
        if used >= user.daily_token_limit:
            raise LimitReached(
                f"You have used {used:,} tokens today; your limit is "
                f"{user.daily_token_limit:,} (set by an admin). It resets at 00:00 UTC."
            )
