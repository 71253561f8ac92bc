"""Answers name the question they answer; history is read in question-then-answer order.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each answer's question. One made after a restart was stored together with its question
# turning "resumed", with one timestamp: the question's updated_at is the answer's created_at.
# Any other was stored after its question and before the next one.
BACKFILL = """
UPDATE messages SET question_id = coalesce(
    (SELECT max(question.id) FROM messages AS question
     WHERE question.conversation_id = messages.conversation_id
       AND question.role = 'user'
       AND question.status = 'resumed'
       AND question.kind = messages.kind
       AND question.id < messages.id
       AND question.updated_at = messages.created_at),
    (SELECT max(question.id) FROM messages AS question
     WHERE question.conversation_id = messages.conversation_id
       AND question.role = 'user'
       AND question.kind = messages.kind
       AND question.id < messages.id))
WHERE role = 'assistant'
"""


def upgrade() -> None:
    # Plain ALTER TABLE, as in 0002: a batch rebuild would cascade-delete every message. No
    # foreign key, which SQLite cannot add to an existing table without such a rebuild.
    op.add_column("messages", sa.Column("question_id", sa.Integer(), nullable=True))
    op.execute(BACKFILL)
    op.create_index(
        "ix_messages_conversation_order",
        "messages",
        ["conversation_id", sa.text("coalesce(question_id, id)"), "id"],
    )
    # The new index serves every look-up by conversation: one index less to write.
    op.drop_index("ix_messages_conversation_id_id", table_name="messages")


def downgrade() -> None:
    op.create_index(
        "ix_messages_conversation_id_id", "messages", ["conversation_id", "id"], unique=False
    )
    op.drop_index("ix_messages_conversation_order", table_name="messages")
    op.drop_column("messages", "question_id")
