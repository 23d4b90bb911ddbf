"""Switches an administrator sets for the whole node (pause scoring), and the patient's sex,
age and birth date as each study gave them (for the worklist page).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("study") as batch:
        for column in ("patient_sex", "patient_age", "patient_birth_date"):
            batch.add_column(sa.Column(column, sa.String(16), nullable=False, server_default=""))
    op.create_table(
        "node_control",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("node_control")
    with op.batch_alter_table("study") as batch:
        for column in ("patient_sex", "patient_age", "patient_birth_date"):
            batch.drop_column(column)
