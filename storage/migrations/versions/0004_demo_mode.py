"""Demo mode: presets, compare conversations and the answer marked best.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add conversations.mode, messages.preferred and the presets table."""
    op.add_column(
        "conversations",
        sa.Column("mode", sa.String(length=20), nullable=False, server_default="chat"),
    )
    op.add_column(
        "messages", sa.Column("preferred", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.create_table(
        "presets",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("team", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("system_prompt", sa.Text(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("tools", sa.JSON(), nullable=False),
        sa.Column("tool_choice", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_presets_user_id", "presets", ["user_id"])
    op.create_index("ix_presets_team", "presets", ["team"])


def downgrade() -> None:
    """Drop presets and the two columns."""
    op.drop_index("ix_presets_team", table_name="presets")
    op.drop_index("ix_presets_user_id", table_name="presets")
    op.drop_table("presets")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("preferred")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("mode")
