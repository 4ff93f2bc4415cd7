"""patient relation proof: how an account's relation to a person was established

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 22:00:00.000000

One column with a server default: the code before this revision never reads it and its inserts
get ``declared`` (what every existing relation is: format and checksum only), so it can be
applied while that code still runs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("proof", sa.String(length=16), server_default="declared", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_column("proof")
