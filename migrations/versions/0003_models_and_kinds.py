"""Chats choose their chat model, admins set defaults per capability, messages have a kind.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 08:30:00
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
    # Plain ALTER TABLE, as in 0002: a batch rebuild would cascade-delete every message.
    op.add_column("chats", sa.Column("model", sa.String(), nullable=True))
    op.add_column(
        "messages",
        sa.Column("kind", sa.String(length=16), nullable=False, server_default="chat"),
    )
    op.create_table(
        "model_defaults",
        sa.Column("capability", sa.String(length=32), primary_key=True),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("set_by", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("model_defaults")
    op.drop_column("messages", "kind")
    op.drop_column("chats", "model")
