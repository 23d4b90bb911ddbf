"""Completion by MPPS: the performed procedure steps modalities report, and what decided that
a study was complete.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("study") as batch:
        batch.add_column(sa.Column("completed_by", sa.Text, nullable=False, server_default=""))
    op.create_table(
        "performed_step",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("study_uid", sa.String(64), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("calling_ae", sa.String(16), nullable=False),
        sa.Column("referenced", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("performed_step")
    with op.batch_alter_table("study") as batch:
        batch.drop_column("completed_by")
