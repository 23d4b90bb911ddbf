"""The index of release 0.1.0 (made there by `create_all`, without an alembic_version table).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_id", sa.String(64), nullable=False, unique=True),
    )
    op.create_table(
        "study",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("patient_id", sa.Integer, sa.ForeignKey("patient.id"), nullable=False),
        sa.Column("accession_number", sa.String(16), nullable=False),
        sa.Column("study_date", sa.String(8), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("first_received_at", sa.DateTime, nullable=False),
        sa.Column("last_received_at", sa.DateTime, nullable=False, index=True),
        sa.Column("completed_at", sa.DateTime, nullable=True),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("max_score", sa.Float, nullable=True),
        sa.Column("max_percentile", sa.Float, nullable=True),
        sa.Column("scored_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("series_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id"), nullable=False, index=True),
        sa.Column("modality", sa.String(16), nullable=False),
    )
    op.create_table(
        "instance",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id"), nullable=False, index=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id"), nullable=False, index=True),
        sa.Column("study_version", sa.Integer, nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("body_part", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("calling_ae", sa.String(16), nullable=False),
        sa.Column("peer_host", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("file", sa.Text, nullable=False),
        sa.UniqueConstraint("sop_instance_uid", "version"),
    )
    op.create_table(
        "job",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id"), nullable=False, index=True),
        sa.Column("study_version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("not_before", sa.DateTime, nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("study_id", "study_version", "kind"),
    )
    op.create_table(
        "image_result",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "instance_id", sa.Integer, sa.ForeignKey("instance.id"), nullable=False, index=True
        ),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id"), nullable=False, index=True),
        sa.Column("study_version", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("percentile", sa.Float, nullable=False),
        sa.Column("abnormal", sa.Boolean, nullable=False),
        sa.Column("statistics", sa.Text, nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.UniqueConstraint("instance_id", "study_version"),
    )
    op.create_table(
        "export",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id"), nullable=False, index=True),
        sa.Column("study_version", sa.Integer, nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("sent_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("study_id", "study_version", "destination"),
    )
