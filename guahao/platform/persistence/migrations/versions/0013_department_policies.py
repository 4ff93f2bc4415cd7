"""department policies: a department's own split and release policy, versioned

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-06 00:00:00.000000

Expand only: one new table that the code before this revision never reads, so it can be
applied while that code still runs. A department with no row follows its hospital's policy,
as every department did before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "department_policies",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("department_id", sa.String(length=32), nullable=False),
        sa.Column("hospital_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("previous", sa.JSON(), nullable=False),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("sessions_updated", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_department_policies_department_id_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id"],
            ["hospitals.id"],
            name=op.f("fk_department_policies_hospital_id_hospitals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_department_policies")),
        sa.UniqueConstraint(
            "department_id", "version", name=op.f("uq_department_policies_department_id")
        ),
    )
    with op.batch_alter_table("department_policies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_department_policies_department_id"), ["department_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_department_policies_hospital_id"), ["hospital_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("department_policies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_department_policies_hospital_id"))
        batch_op.drop_index(batch_op.f("ix_department_policies_department_id"))
    op.drop_table("department_policies")
