"""Messages: how a tool call ended (done, error, timeout, denied, cancelled, not_run).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add messages.tool_status (null for every existing row: none of them is a tool result)."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("tool_status", sa.String(length=20), nullable=True))


def downgrade() -> None:
    """Drop messages.tool_status."""
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("tool_status")
