"""Result objects become rows (the predecessor SR is found by a query, exports send the rows),
supervised loops report their health, an unscored study has no priority (NULL, not ''), and
the per-image scores are named for what they are (image_result -> scored_image).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "result_object",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id"), nullable=False, index=True),
        sa.Column("study_version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=True, index=True),
        sa.Column("series_uid", sa.String(64), nullable=True),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "loop_heartbeat",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("loop", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("deadline_s", sa.Float, nullable=False),
        sa.Column("last_cycle_at", sa.DateTime, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("loop", "owner"),
    )
    _move_export_files_to_result_objects()
    with op.batch_alter_table("export") as batch:
        batch.drop_column("files")
    with op.batch_alter_table("study") as batch:
        batch.alter_column("priority", existing_type=sa.String(16), nullable=True)
    op.execute("UPDATE study SET priority = NULL WHERE priority = ''")
    op.rename_table("image_result", "scored_image")
    for column in ("instance_id", "study_id"):
        op.drop_index(f"ix_image_result_{column}", table_name="scored_image")
        op.create_index(f"ix_scored_image_{column}", "scored_image", [column])


def _move_export_files_to_result_objects() -> None:
    """0.1.0 kept each export's files as JSON; one row per file of each study version now.
    Their UIDs were never indexed and stay NULL (the files themselves hold them)."""
    conn = op.get_bind()
    export = sa.table(
        "export",
        sa.column("study_id", sa.Integer),
        sa.column("study_version", sa.Integer),
        sa.column("files", sa.Text),
    )
    result_object = sa.table(
        "result_object",
        sa.column("study_id", sa.Integer),
        sa.column("study_version", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("file", sa.Text),
        sa.column("created_at", sa.DateTime),
    )
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    seen: set[tuple[int, int]] = set()
    rows = []
    for study_id, version, files in conn.execute(
        sa.select(export.c.study_id, export.c.study_version, export.c.files)
    ):
        if (study_id, version) in seen:
            continue  # one set of objects per study version, however many destinations
        seen.add((study_id, version))
        for file in json.loads(files):
            kind = "sr" if file.endswith("/sr.dcm") else "sc"
            rows.append(
                {
                    "study_id": study_id,
                    "study_version": version,
                    "kind": kind,
                    "file": file,
                    "created_at": now,
                }
            )
    if rows:
        op.bulk_insert(result_object, rows)
