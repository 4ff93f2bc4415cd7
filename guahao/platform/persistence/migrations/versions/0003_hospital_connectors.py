"""hospital connectors: registrations, OAuth2 clients, inbound message log, sync runs,
booking filings, push idempotency, per-subscriber outbox delivery

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 11:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_cursors",
        sa.Column("subscriber", sa.String(length=200), nullable=False),
        sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subscriber", name=op.f("pk_outbox_cursors")),
    )
    op.create_table(
        "connector_messages",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("hospital_id", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("control_id", sa.String(length=100), nullable=False),
        sa.Column("message_type", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["hospital_id"],
            ["hospitals.id"],
            name=op.f("fk_connector_messages_hospital_id_hospitals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connector_messages")),
        sa.UniqueConstraint(
            "hospital_id", "channel", "control_id", name=op.f("uq_connector_messages_hospital_id")
        ),
    )
    with op.batch_alter_table("connector_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_connector_messages_hospital_id"), ["hospital_id"], unique=False
        )
    op.create_table(
        "hospital_clients",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("hospital_id", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=200), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["hospital_id"],
            ["hospitals.id"],
            name=op.f("fk_hospital_clients_hospital_id_hospitals"),
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_hospital_clients")),
    )
    with op.batch_alter_table("hospital_clients", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_hospital_clients_hospital_id"), ["hospital_id"], unique=False
        )
    op.create_table(
        "hospital_connectors",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("hospital_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("base_url", sa.String(length=300), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("notify", sa.Boolean(), nullable=False),
        sa.Column("sync_cursor", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('fhir', 'hl7v2', 'push', 'batch')",
            name=op.f("ck_hospital_connectors_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id"],
            ["hospitals.id"],
            name=op.f("fk_hospital_connectors_hospital_id_hospitals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hospital_connectors")),
        sa.UniqueConstraint("hospital_id", "kind", name=op.f("uq_hospital_connectors_hospital_id")),
    )
    with op.batch_alter_table("hospital_connectors", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_hospital_connectors_hospital_id"), ["hospital_id"], unique=False
        )
    op.create_table(
        "outbox_parked",
        sa.Column("subscriber", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("aggregate_id", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["outbox.id"], name=op.f("fk_outbox_parked_event_id_outbox")
        ),
        sa.PrimaryKeyConstraint("subscriber", "event_id", name=op.f("pk_outbox_parked")),
    )
    with op.batch_alter_table("outbox_parked", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_parked_subscriber_due", ["subscriber", "next_attempt_at"], unique=False
        )
    op.create_table(
        "push_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("hospital_id", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["hospital_id"], ["hospitals.id"], name=op.f("fk_push_requests_hospital_id_hospitals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_requests")),
        sa.UniqueConstraint(
            "hospital_id", "idempotency_key", name=op.f("uq_push_requests_hospital_id")
        ),
    )
    with op.batch_alter_table("push_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_push_requests_hospital_id"), ["hospital_id"], unique=False
        )
    op.create_table(
        "connector_sync_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("connector_id", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("drift", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'ok', 'failed', 'skipped')",
            name=op.f("ck_connector_sync_runs_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["hospital_connectors.id"],
            name=op.f("fk_connector_sync_runs_connector_id_hospital_connectors"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connector_sync_runs")),
    )
    with op.batch_alter_table("connector_sync_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_connector_sync_runs_connector_started", ["connector_id", "started_at"], unique=False
        )
    op.create_table(
        "booking_filings",
        sa.Column("booking_id", sa.String(length=32), nullable=False),
        sa.Column("hospital_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("medical_record_no", sa.String(length=64), nullable=False),
        sa.Column("his_appointment_id", sa.String(length=100), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_booking_filings_booking_id_bookings")
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id"], ["hospitals.id"], name=op.f("fk_booking_filings_hospital_id_hospitals")
        ),
        sa.PrimaryKeyConstraint("booking_id", name=op.f("pk_booking_filings")),
    )
    with op.batch_alter_table("booking_filings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_booking_filings_hospital_id"), ["hospital_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("booking_filings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_booking_filings_hospital_id"))
    op.drop_table("booking_filings")
    with op.batch_alter_table("connector_sync_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_connector_sync_runs_connector_started")
    op.drop_table("connector_sync_runs")
    with op.batch_alter_table("push_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_requests_hospital_id"))
    op.drop_table("push_requests")
    with op.batch_alter_table("outbox_parked", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_parked_subscriber_due")
    op.drop_table("outbox_parked")
    with op.batch_alter_table("hospital_connectors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hospital_connectors_hospital_id"))
    op.drop_table("hospital_connectors")
    with op.batch_alter_table("hospital_clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hospital_clients_hospital_id"))
    op.drop_table("hospital_clients")
    with op.batch_alter_table("connector_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connector_messages_hospital_id"))
    op.drop_table("connector_messages")
    op.drop_table("outbox_cursors")
