"""Quota counters per user and per group chat, per UTC day and month, and their holds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 11:00:00
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
    op.create_table(
        "quota_usage",
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("reserved", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "subject", "period", name=op.f("pk_quota_usage")),
    )
    op.create_index(op.f("ix_quota_usage_period_scope"), "quota_usage", ["period", "scope"])
    op.create_table(
        "quota_holds",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("counters", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_holds")),
    )
    op.create_index(op.f("ix_quota_holds_expires_at"), "quota_holds", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_quota_holds_expires_at", table_name="quota_holds")
    op.drop_table("quota_holds")
    op.drop_index("ix_quota_usage_period_scope", table_name="quota_usage")
    op.drop_table("quota_usage")
