"""Keep what deleted conversations used, so deleting one does not reset usage limits.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the deleted_usage table."""
    op.create_table(
        "deleted_usage",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("usage", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("request", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_deleted_usage_user_id", "deleted_usage", ["user_id"])
    op.create_index("ix_deleted_usage_created_at", "deleted_usage", ["created_at"])


def downgrade() -> None:
    """Drop the deleted_usage table."""
    op.drop_index("ix_deleted_usage_created_at", table_name="deleted_usage")
    op.drop_index("ix_deleted_usage_user_id", table_name="deleted_usage")
    op.drop_table("deleted_usage")
