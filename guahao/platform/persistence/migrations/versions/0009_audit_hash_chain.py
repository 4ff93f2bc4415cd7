"""audit hash chain: each audit entry holds the hash of the one before it and its own, and one
head row serialises appends

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-05 21:00:00.000000

Existing entries are chained in the order they were written (by id). The code before this
revision inserts audit rows without the chain columns, which are NOT NULL after it: stop the
old code's writers before applying it (an audit row must not escape the chain).
"""

from collections.abc import Sequence
from datetime import UTC

import sqlalchemy as sa
from alembic import op

from guahao.platform.persistence.audit_chain import GENESIS_HASH, entry_hash

revision: str = "0009"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONTRACT = (
    "not rolling-safe: the chain columns become NOT NULL and the previous release writes audit "
    "rows without them; deploy it with the previous release's workers stopped"
)


def upgrade() -> None:
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_chain_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chain_seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("entry_hash", sa.String(length=64), nullable=True))

    log = sa.table(
        "audit_log",
        sa.column("id", sa.BigInteger()),
        sa.column("actor", sa.String()),
        sa.column("actor_role", sa.String()),
        sa.column("action", sa.String()),
        sa.column("subject_type", sa.String()),
        sa.column("subject_id", sa.String()),
        sa.column("detail", sa.JSON()),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("chain_seq", sa.BigInteger()),
        sa.column("prev_hash", sa.String()),
        sa.column("entry_hash", sa.String()),
    )
    bind = op.get_bind()
    seq, prev = 0, GENESIS_HASH
    for row in bind.execute(sa.select(log).order_by(log.c.id)).mappings().all():
        seq += 1
        at = row["at"]
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
        digest = entry_hash(
            seq=seq,
            prev_hash=prev,
            actor=row["actor"],
            actor_role=row["actor_role"],
            action=row["action"],
            subject_type=row["subject_type"],
            subject_id=row["subject_id"],
            detail=row["detail"],
            at=at,
        )
        bind.execute(
            sa.update(log)
            .where(log.c.id == row["id"])
            .values(chain_seq=seq, prev_hash=prev, entry_hash=digest)
        )
        prev = digest
    head = sa.table(
        "audit_chain_head",
        sa.column("id", sa.Integer()),
        sa.column("seq", sa.BigInteger()),
        sa.column("last_hash", sa.String()),
    )
    bind.execute(sa.insert(head).values(id=1, seq=seq, last_hash=prev))

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column("chain_seq", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("entry_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(op.f("uq_audit_log_chain_seq"), ["chain_seq"])


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_audit_log_chain_seq"), type_="unique")
        batch_op.drop_column("entry_hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("chain_seq")
    op.drop_table("audit_chain_head")
