"""Answer rows name the Parley process streaming them (messages.owner).

With several processes on one database (REDIS_URL), a process that dies leaves its answers
"streaming"; any other marks the rows of a dead owner interrupted, and only those. Rows
written before this revision have no owner and are treated as a dead process's.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable column (no rewrite of existing rows)."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("owner")
