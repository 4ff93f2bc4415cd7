"""prepaid waits (候补预付), priority rebooking offers, visit reminders, booking origins

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 21:00:00.000000

Three new tables and two columns with a server default: the code before this revision never reads
them and its inserts get the default, so it can be applied while that code still runs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("origin", sa.String(length=24), server_default="patient", nullable=False)
        )
    with op.batch_alter_table("waitlist_entries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("origin", sa.String(length=24), server_default="patient", nullable=False)
        )
    op.create_table(
        "wait_prepayments",
        sa.Column("entry_id", sa.String(length=32), nullable=False),
        sa.Column("order_no", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pay_url", sa.String(length=300), nullable=False),
        sa.Column("gateway_trade_no", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("booking_id", sa.String(length=32), nullable=True),
        sa.Column("applied_cents", sa.Integer(), nullable=False),
        sa.Column("refunded_cents", sa.Integer(), nullable=False),
        sa.Column("refund_no", sa.String(length=40), nullable=True),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('created', 'paid', 'applied', 'refunded', 'closed')",
            name=op.f("ck_wait_prepayments_status_known"),
        ),
        sa.CheckConstraint(
            "applied_cents + refunded_cents <= amount_cents",
            name=op.f("ck_wait_prepayments_within_paid"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_wait_prepayments_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_wait_prepayments_booking_id_bookings")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["waitlist_entries.id"],
            name=op.f("fk_wait_prepayments_entry_id_waitlist_entries"),
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_wait_prepayments")),
        sa.UniqueConstraint("order_no", name=op.f("uq_wait_prepayments_order_no")),
    )
    with op.batch_alter_table("wait_prepayments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_wait_prepayments_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index("ix_wait_prepayments_status", ["status"], unique=False)

    op.create_table(
        "rebooking_offers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("booking_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.String(length=32), nullable=False),
        sa.Column("hospital_id", sa.String(length=32), nullable=False),
        sa.Column("proposals", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refund_no", sa.String(length=40), nullable=True),
        sa.Column("accepted_booking_id", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'accepted', 'declined', 'expired')",
            name=op.f("ck_rebooking_offers_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["accepted_booking_id"],
            ["bookings.id"],
            name=op.f("fk_rebooking_offers_accepted_booking_id_bookings"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_rebooking_offers_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_rebooking_offers_booking_id_bookings")
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id"],
            ["hospitals.id"],
            name=op.f("fk_rebooking_offers_hospital_id_hospitals"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_rebooking_offers_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_rebooking_offers_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rebooking_offers")),
        sa.UniqueConstraint("booking_id", name=op.f("uq_rebooking_offers_booking_id")),
    )
    with op.batch_alter_table("rebooking_offers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rebooking_offers_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            "ix_rebooking_offers_status_expires", ["status", "expires_at"], unique=False
        )

    op.create_table(
        "visit_reminders",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("booking_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("hours_before", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("link_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('scheduled', 'sent', 'skipped')",
            name=op.f("ck_visit_reminders_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_visit_reminders_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_visit_reminders_booking_id_bookings")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_reminders")),
        sa.UniqueConstraint(
            "booking_id", "hours_before", name=op.f("uq_visit_reminders_booking_id")
        ),
    )
    with op.batch_alter_table("visit_reminders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_visit_reminders_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index("ix_visit_reminders_status_due", ["status", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("visit_reminders", schema=None) as batch_op:
        batch_op.drop_index("ix_visit_reminders_status_due")
        batch_op.drop_index(batch_op.f("ix_visit_reminders_account_id"))
    op.drop_table("visit_reminders")
    with op.batch_alter_table("rebooking_offers", schema=None) as batch_op:
        batch_op.drop_index("ix_rebooking_offers_status_expires")
        batch_op.drop_index(batch_op.f("ix_rebooking_offers_account_id"))
    op.drop_table("rebooking_offers")
    with op.batch_alter_table("wait_prepayments", schema=None) as batch_op:
        batch_op.drop_index("ix_wait_prepayments_status")
        batch_op.drop_index(batch_op.f("ix_wait_prepayments_account_id"))
    op.drop_table("wait_prepayments")
    with op.batch_alter_table("waitlist_entries", schema=None) as batch_op:
        batch_op.drop_column("origin")
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_column("origin")
