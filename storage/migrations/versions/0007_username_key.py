"""User names match whatever their case: a unique, case-folded copy of each name.

A name from the sign-in proxy or the sign-in form ("ALICE") finds the account first made with
another spelling ("alice"), which keeps its spelling for display. Names already stored that
differ only in case stay separate accounts: the oldest gets the key, the others (key NULL)
keep matching their exact spelling only.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USERS = sa.table(
    "users",
    sa.column("id", sa.Integer()),
    sa.column("username", sa.String()),
    sa.column("username_key", sa.String()),
)


def upgrade() -> None:
    """Add users.username_key, fill it, and make it unique."""
    # Plain ADD COLUMN (as in 0003): a batch copy of `users` would trip the foreign keys
    # that other tables hold on it.
    op.add_column("users", sa.Column("username_key", sa.String(length=450), nullable=True))
    connection = op.get_bind()
    taken: set[str] = set()
    rows = connection.execute(sa.select(USERS.c.id, USERS.c.username).order_by(USERS.c.id))
    for user_id, name in rows.all():
        key = name.casefold()  # storage.models.username_key as of this revision
        if key in taken:
            continue
        taken.add(key)
        connection.execute(USERS.update().where(USERS.c.id == user_id).values(username_key=key))
    op.create_index("ix_users_username_key", "users", ["username_key"], unique=True)


def downgrade() -> None:
    """Drop users.username_key."""
    op.drop_index("ix_users_username_key", table_name="users")
    # Plain DROP COLUMN (SQLite 3.35+) for the same reason: a batch copy of `users` cannot drop
    # the old table while conversations or API keys point at it.
    op.drop_column("users", "username_key")
