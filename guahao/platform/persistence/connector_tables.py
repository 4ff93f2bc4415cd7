"""Tables of the hospital connectors and of per-subscriber outbox delivery.

Kept apart from ``tables.py`` (the booking core) but on the same ``Base``, so the migrations and
the models-vs-migrations comparison see one schema. Secrets of hospital clients are stored only
as scrypt hashes; inbound messages are remembered by their control id so a repeated HL7 v2
message or push request has no second effect.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from guahao.platform.persistence.tables import ID, Base

__all__ = [
    "BookingFilingRow",
    "ConnectorMessageRow",
    "ConnectorRow",
    "HospitalClientRow",
    "OutboxCursorRow",
    "OutboxParkedRow",
    "PushRequestRow",
    "SyncRunRow",
]

CONNECTOR_KINDS = "kind IN ('fhir', 'hl7v2', 'push', 'batch')"


class ConnectorRow(Base):
    """How one hospital's system is reached: kind, endpoint and the kind's own settings."""

    __tablename__ = "hospital_connectors"
    __table_args__ = (
        UniqueConstraint("hospital_id", "kind"),
        CheckConstraint(CONNECTOR_KINDS, name="kind_known"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    base_url: Mapped[str] = mapped_column(String(300), default="")
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    notify: Mapped[bool] = mapped_column(Boolean, default=False)
    sync_cursor: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


class HospitalClientRow(Base):
    """An OAuth2 client of a hospital (client credentials); the secret is kept hashed."""

    __tablename__ = "hospital_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class ConnectorMessageRow(Base):
    """Every inbound message by its control id: the answer given is replayed to a repeat."""

    __tablename__ = "connector_messages"
    __table_args__ = (UniqueConstraint("hospital_id", "channel", "control_id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    control_id: Mapped[str] = mapped_column(String(100))
    message_type: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column()


class PushRequestRow(Base):
    """A push-API write remembered by the hospital's idempotency key (24 hours or more)."""

    __tablename__ = "push_requests"
    __table_args__ = (UniqueConstraint("hospital_id", "idempotency_key"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(100))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()


class SyncRunRow(Base):
    """One pull of a connector: what it brought, what it changed, the drift it saw."""

    __tablename__ = "connector_sync_runs"
    __table_args__ = (
        Index("ix_connector_sync_runs_connector_started", "connector_id", "started_at"),
        CheckConstraint("status IN ('running', 'ok', 'failed', 'skipped')", name="status_known"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    connector_id: Mapped[str] = mapped_column(ForeignKey("hospital_connectors.id"))
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16))
    received: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    drift: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class BookingFilingRow(Base):
    """建档: the hospital's answer to filing a booking's patient (its record number)."""

    __tablename__ = "booking_filings"

    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"), primary_key=True)
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    medical_record_no: Mapped[str] = mapped_column(String(64), default="")
    his_appointment_id: Mapped[str] = mapped_column(String(100), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column()


class OutboxCursorRow(Base):
    """How far one subscriber has read the outbox (every event up to ``position`` is
    delivered to it or parked for retry)."""

    __tablename__ = "outbox_cursors"

    subscriber: Mapped[str] = mapped_column(String(200), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    updated_at: Mapped[datetime] = mapped_column()


class OutboxParkedRow(Base):
    """An event one subscriber has not accepted yet, retried with backoff; later events of
    the same aggregate park behind it so they are delivered in order."""

    __tablename__ = "outbox_parked"
    __table_args__ = (Index("ix_outbox_parked_subscriber_due", "subscriber", "next_attempt_at"),)

    subscriber: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("outbox.id"),
        primary_key=True,
    )
    aggregate_id: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
