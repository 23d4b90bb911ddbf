"""Hardening: the patient's decoded name for the worklist; delivery recorded per object (a
retry sends only what the destination has not acknowledged); files removed by retention.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patient") as batch:
        batch.add_column(sa.Column("name", sa.String(200), nullable=False, server_default=""))
    with op.batch_alter_table("study") as batch:
        batch.add_column(sa.Column("purged_at", sa.DateTime, nullable=True))
    op.create_table(
        "delivered_object",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("export_id", sa.Integer, sa.ForeignKey("export.id"), nullable=False, index=True),
        sa.Column(
            "result_object_id", sa.Integer, sa.ForeignKey("result_object.id"), nullable=False
        ),
        sa.Column("sent_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("export_id", "result_object_id"),
    )
