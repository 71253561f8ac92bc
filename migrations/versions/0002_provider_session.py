"""Conversations remember the session a provider keeps for them, and which provider it is.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 10:00:00
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
    # Plain ALTER TABLE on every database (SQLite adds columns, and drops them since 3.35):
    # a batch rebuild drops the old table, which with foreign keys on (as the bot's
    # connections have them) deletes every message through ON DELETE CASCADE.
    op.add_column("conversations", sa.Column("provider_session", sa.Text(), nullable=True))
    op.add_column(
        "conversations", sa.Column("provider_session_owner", sa.String(length=64), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("conversations", "provider_session_owner")
    op.drop_column("conversations", "provider_session")
