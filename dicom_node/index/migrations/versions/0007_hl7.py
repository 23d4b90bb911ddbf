"""HL7 results and priority updates to the RIS: their outbox, and what a study's result says,
whether the RIS has read it and whether the aging cap escalated it.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("study") as batch:
        batch.add_column(sa.Column("result_facts", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("read_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("escalated_at", sa.DateTime, nullable=True))
    op.create_table(
        "hl7_message",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id"), nullable=False, index=True),
        sa.Column("study_version", sa.Integer, nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("facts", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("sent_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("study_id", "study_version", "destination", "kind"),
    )


def downgrade() -> None:
    op.drop_table("hl7_message")
    with op.batch_alter_table("study") as batch:
        for column in ("escalated_at", "read_at", "result_facts"):
            batch.drop_column(column)
