"""patient names sealed at rest; a claim of 本人 waiting for its code holds no place


Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 00:00:00.000000

Expand only. ``patients.name_enc`` holds the name sealed by ``PersonalDataVault`` (as
``document_enc`` and ``phone_enc`` are); the clear ``patients.name`` stays, nullable with an
empty default, and is emptied by the backfill (``guahao.platform.services.name_sealing``), which
runs in batches when the platform starts: a migration does not hold the data key, so it cannot
seal. The code before this revision still runs beside it during a rolling deploy: it reads the
clear column (empty once sealed: it shows a blank name, never fails) and writes it (the next
start of a new worker seals those rows; readers fall back to the clear column meanwhile). The
partial index lists exactly the rows still to seal, so the backfill finds them without a scan
once it is done. Dropping the clear column would be a later contract migration; nothing needs
it gone.

The partial unique index of 本人 no longer counts relations still waiting for their code
(``proof = 'pending_code'``): a stranger's unconfirmed claim of 本人 must not stop the real
person's own (issue 14). The old code never relied on two pending claims being refused.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNSEALED = "name_enc IS NULL"
SELF_BEFORE = "relation = 'self' AND removed_at IS NULL"
SELF_NOW = "relation = 'self' AND removed_at IS NULL AND proof <> 'pending_code'"


def _self_index(where: str) -> None:
    op.create_index(
        "uq_patients_self_person",
        "patients",
        ["person_id"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_enc", sa.LargeBinary(), nullable=True))
        batch_op.alter_column(
            "name", existing_type=sa.String(length=100), nullable=True, server_default=""
        )
    op.create_index(
        "ix_patients_name_unsealed",
        "patients",
        ["id"],
        sqlite_where=sa.text(UNSEALED),
        postgresql_where=sa.text(UNSEALED),
    )
    op.drop_index("uq_patients_self_person", table_name="patients")
    _self_index(SELF_NOW)


def downgrade() -> None:
    op.drop_index("uq_patients_self_person", table_name="patients")
    _self_index(SELF_BEFORE)
    op.drop_index("ix_patients_name_unsealed", table_name="patients")
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.alter_column(
            "name", existing_type=sa.String(length=100), nullable=False, server_default=None
        )
        batch_op.drop_column("name_enc")
