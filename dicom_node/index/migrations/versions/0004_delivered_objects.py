"""Delivery is recorded per object: a retry sends only what the destination has not yet
acknowledged.

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
