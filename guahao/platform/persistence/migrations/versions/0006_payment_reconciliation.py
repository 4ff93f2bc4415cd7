"""payment reconciliation (对账): when an order was last found in agreement with the gateway,
and every difference found with what was done about it

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 21:00:00.000000

A nullable column and a new table only: the code before this revision neither reads nor
writes them, so it can be applied while that code still runs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payment_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_payment_orders_reconciled_at"), ["reconciled_at"], unique=False
        )
    op.create_table(
        "payment_settlements",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_no", sa.String(length=40), nullable=False),
        sa.Column("booking_id", sa.String(length=32), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("platform_status", sa.String(length=16), nullable=False),
        sa.Column("gateway_status", sa.String(length=24), nullable=False),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("refund_no", sa.String(length=40), nullable=True),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_no"],
            ["payment_orders.order_no"],
            name=op.f("fk_payment_settlements_order_no_payment_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_settlements")),
    )
    with op.batch_alter_table("payment_settlements", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payment_settlements_found_at"), ["found_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_payment_settlements_order_no"), ["order_no"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("payment_settlements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_settlements_order_no"))
        batch_op.drop_index(batch_op.f("ix_payment_settlements_found_at"))
    op.drop_table("payment_settlements")
    with op.batch_alter_table("payment_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_orders_reconciled_at"))
        batch_op.drop_column("reconciled_at")
