"""SQL tables of the record of truth.

Invariants are enforced twice: the domain checks a rule, and these constraints refuse to break
it on their own (``online_booked <= online_quota``, unique idempotency keys, one active booking
per patient per session), so a bug or a race in code above cannot oversell.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AccountRow",
    "Base",
    "BookingRow",
    "DepartmentRow",
    "DoctorRow",
    "HospitalRow",
    "NotificationRow",
    "OutboxRow",
    "PatientRow",
    "PaymentNotificationRow",
    "PaymentOrderRow",
    "RefundRow",
    "SessionRow",
    "SlotRow",
    "UTCDateTime",
]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone, so we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}  # noqa: RUF012


ID = String(32)
ACTIVE_WITH_PATIENT = "status IN ('patient_chosen', 'awaiting_payment', 'confirmed', 'checked_in')"


class HospitalRow(Base):
    __tablename__ = "hospitals"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    grade: Mapped[str] = mapped_column(String(4))
    district: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(300), default="")
    aliases: Mapped[list[str]] = mapped_column(default=list)
    timezone: Mapped[str] = mapped_column(String(64))
    policies: Mapped[dict[str, Any]] = mapped_column()
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class DepartmentRow(Base):
    __tablename__ = "departments"
    __table_args__ = (UniqueConstraint("hospital_id", "code"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    catalog_code: Mapped[str] = mapped_column(String(8), index=True)
    aliases: Mapped[list[str]] = mapped_column(default=list)
    location: Mapped[str] = mapped_column(String(200), default="")


class DoctorRow(Base):
    __tablename__ = "doctors"
    __table_args__ = (UniqueConstraint("hospital_id", "code"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"), index=True)
    department_id: Mapped[str] = mapped_column(ForeignKey("departments.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(20))
    expertise: Mapped[str] = mapped_column(Text, default="")
    sex: Mapped[str] = mapped_column(String(8), default="")


class SessionRow(Base):
    """出诊单元: one doctor, one date, one period."""

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("doctor_id", "date", "period"),
        CheckConstraint("starts_at < ends_at", name="starts_before_it_ends"),
        CheckConstraint("status IN ('open', 'stopped', 'finished')", name="status_known"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"), index=True)
    department_id: Mapped[str] = mapped_column(ForeignKey("departments.id"), index=True)
    doctor_id: Mapped[str] = mapped_column(ForeignKey("doctors.id"))
    date: Mapped[date] = mapped_column(Date)
    period: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(16))
    fee_cents: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime] = mapped_column(index=True)
    release_at: Mapped[datetime] = mapped_column()
    cutoff_at: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    stop_reason: Mapped[str | None] = mapped_column(String(300), default=None)
    cutoff_done: Mapped[bool] = mapped_column(Boolean, default=False)
    no_shows_marked: Mapped[bool] = mapped_column(Boolean, default=False)
    external_id: Mapped[str] = mapped_column(String(200), default="")


class SlotRow(Base):
    """号源: one time segment of a session with its capacity split online / offline."""

    __tablename__ = "slots"
    __table_args__ = (
        UniqueConstraint("session_id", "seq"),
        CheckConstraint("online_booked <= online_quota", name="not_oversold"),
        CheckConstraint(
            "online_booked >= 0 AND online_quota >= 0 AND offline_quota >= 0", name="not_negative"
        ),
        CheckConstraint("online_quota + offline_quota = capacity", name="quota_split"),
        CheckConstraint("starts_at < ends_at", name="starts_before_it_ends"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    capacity: Mapped[int] = mapped_column(Integer)
    online_quota: Mapped[int] = mapped_column(Integer)
    offline_quota: Mapped[int] = mapped_column(Integer)
    online_booked: Mapped[int] = mapped_column(Integer, default=0)
    release_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="open")


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    phone_hash: Mapped[str] = mapped_column(String(64), unique=True)
    phone_enc: Mapped[bytes] = mapped_column(LargeBinary)
    password_hash: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column()


class PatientRow(Base):
    """就诊人. Document and phone are encrypted; lookups go through keyed hashes."""

    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("account_id", "document_hash"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    relation: Mapped[str] = mapped_column(String(16), default="self")
    document_type: Mapped[str] = mapped_column(String(32))
    document_hash: Mapped[str] = mapped_column(String(64), index=True)
    document_enc: Mapped[bytes] = mapped_column(LargeBinary)
    document_masked: Mapped[str] = mapped_column(String(40))
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    phone_masked: Mapped[str] = mapped_column(String(20), default="")
    created_at: Mapped[datetime] = mapped_column()


class BookingRow(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key"),
        Index(
            "uq_bookings_active_patient_session",
            "patient_id",
            "session_id",
            unique=True,
            sqlite_where=text(ACTIVE_WITH_PATIENT),
            postgresql_where=text(ACTIVE_WITH_PATIENT),
        ),
        Index("ix_bookings_status_deadline", "status", "hold_expires_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    slot_id: Mapped[str] = mapped_column(ForeignKey("slots.id"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("patients.id"), default=None)
    status: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(100))
    fee_cents: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str | None] = mapped_column(String(16), default=None)
    payment_required: Mapped[bool] = mapped_column(Boolean, default=False)
    payment_order_no: Mapped[str | None] = mapped_column(String(40), default=None)
    payment_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    paid: Mapped[bool] = mapped_column(Boolean, default=False)
    hold_expires_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    confirmed_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    end_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    unit_returns_at: Mapped[datetime | None] = mapped_column(default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class PaymentOrderRow(Base):
    __tablename__ = "payment_orders"
    __table_args__ = (
        CheckConstraint(
            "status IN ('created', 'paid', 'expired', 'closed', 'refunded')", name="status_known"
        ),
    )

    order_no: Mapped[str] = mapped_column(String(40), primary_key=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    pay_url: Mapped[str] = mapped_column(String(300))
    gateway_trade_no: Mapped[str] = mapped_column(String(64), default="")
    expires_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    paid_at: Mapped[datetime | None] = mapped_column(default=None)


class PaymentNotificationRow(Base):
    """Every payment notice processed, so a replayed notice is recognised and refused."""

    __tablename__ = "payment_notifications"

    notification_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_no: Mapped[str] = mapped_column(String(40), index=True)
    received_at: Mapped[datetime] = mapped_column()


class RefundRow(Base):
    __tablename__ = "refunds"

    refund_no: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_no: Mapped[str] = mapped_column(ForeignKey("payment_orders.order_no"), index=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column()
    refunded_at: Mapped[datetime | None] = mapped_column(default=None)


class OutboxRow(Base):
    """Events written in the same transaction as the change they describe."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "dispatched_at", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    topic: Mapped[str] = mapped_column(String(64))
    aggregate_id: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    dispatched_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class NotificationRow(Base):
    """A message to an account (the embedded notifier's inbox; SMS/push adapters also log here)."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("account_id", "dedupe_key"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    template: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column()
    dedupe_key: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column()
    read_at: Mapped[datetime | None] = mapped_column(default=None)
