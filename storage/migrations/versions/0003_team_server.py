"""Team server: passwords, disabled users and per-user limits; share links; imported messages.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add account columns to users and create share_links."""
    # Plain ADD COLUMN (not a batch copy): on SQLite a table copy of `users` would trip the
    # foreign keys that conversations and messages hold on it.
    op.add_column("users", sa.Column("password_hash", sa.String(length=200), nullable=True))
    op.add_column(
        "users", sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("users", sa.Column("rpm_limit", sa.Integer(), nullable=True))
    op.add_column("users", sa.Column("daily_token_limit", sa.Integer(), nullable=True))
    op.add_column(
        "messages", sa.Column("imported", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.create_table(
        "share_links",
        sa.Column("token", sa.String(length=64), primary_key=True),
        sa.Column(
            "conversation_id",
            sa.String(length=32),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_share_links_conversation_id", "share_links", ["conversation_id"])
    op.create_index("ix_messages_user_id_created_at", "messages", ["user_id", "created_at"])


def downgrade() -> None:
    """Drop share_links and the account columns."""
    op.drop_index("ix_messages_user_id_created_at", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("imported")
    op.drop_index("ix_share_links_conversation_id", table_name="share_links")
    op.drop_table("share_links")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("daily_token_limit")
        batch.drop_column("rpm_limit")
        batch.drop_column("disabled")
        batch.drop_column("password_hash")
