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
    ForeignKeyConstraint,
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
    "AccessMeasureRow",
    "AccountRow",
    "AddOnUnitRow",
    "AuditChainHeadRow",
    "AuditRow",
    "Base",
    "BlacklistAppealRow",
    "BlacklistEntryRow",
    "BookingRow",
    "DepartmentRow",
    "DoctorRow",
    "FederatedIdentityRow",
    "HospitalRow",
    "HospitalRuleOverrideRow",
    "LotteryEntryRow",
    "NotificationRow",
    "OutboxRow",
    "PatientFilingRow",
    "PatientIdentityChangeRow",
    "PatientRow",
    "PaymentNotificationRow",
    "PaymentOrderRow",
    "PaymentSettlementRow",
    "PersonRow",
    "RefundRow",
    "RefusedDemandRow",
    "RegionRulesRow",
    "SessionRow",
    "SlotRow",
    "StaffAccountRow",
    "StrikeRow",
    "SupplyDemandAreaRow",
    "SupplyDemandDayRow",
    "SupplyDemandHospitalRow",
    "SuspicionSignalRow",
    "UTCDateTime",
    "WaitlistEntryRow",
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
CUTOFF_EVENTS = "topic = 'session.cutoff'"
"""The only events read by their aggregate (the units a session's cut-off moved on-site, read
by the supply and demand rollups' rebuild, with this very condition written into the
statement): the outbox's aggregate index leaves every other event, a granted hold's
``booking.held`` among them, out of it (migration 0014)."""
SLOT_AND_SESSION = ForeignKeyConstraint(
    ["slot_id", "session_id"],
    ["slots.id", "slots.session_id"],
    name="fk_bookings_slot_id_session_id_slots",
).ddl_if(dialect="postgresql")
"""On PostgreSQL a booking's slot and session are one foreign key to the slot's own pair: the
session then exists by the slot's foreign key, and it must be the slot's. A granted hold pays
one reference check instead of two (3.2 µs of PostgreSQL's CPU a row, bench/pg_row_cost.py,
branch pgrow2; migration 0015). SQLite keeps a foreign key each (``SLOT_ALONE``,
``SESSION_ALONE``): it cannot change a table's foreign keys without copying the table, and
the copy's ``DROP TABLE`` fails while other tables' rows reference bookings."""
SLOT_ALONE = ForeignKeyConstraint(["slot_id"], ["slots.id"]).ddl_if(dialect="sqlite")
SESSION_ALONE = ForeignKeyConstraint(["session_id"], ["sessions.id"]).ddl_if(dialect="sqlite")
WITH_PERSON = "person_id IS NOT NULL"
"""Bookings whose patient was chosen: a hold has no person yet, and every read by person names
one (``person_id = ...``, which implies this), so the person's index leaves holds out
(migration 0014)."""


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
        CheckConstraint("allocation IN ('first_come', 'lottery')", name="allocation_known"),
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
    allocation: Mapped[str] = mapped_column(String(16), default="first_come")
    """``first_come`` (先到先得) or ``lottery`` (摇号: requests collected, then drawn)."""
    lottery_opens_at: Mapped[datetime | None] = mapped_column(default=None)
    lottery_draw_at: Mapped[datetime | None] = mapped_column(default=None)
    lottery_drawn: Mapped[bool] = mapped_column(Boolean, default=False)
    add_on_count: Mapped[int] = mapped_column(Integer, default=0)
    """Add-on units (诊间加号) given in this session, counted against the region's limit."""


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
        Index("uq_slots_id_session_id", "id", "session_id", unique=True).ddl_if(
            dialect="postgresql"
        ),
    )
    """``uq_slots_id_session_id`` is what a booking's one foreign key to its slot and session
    references on PostgreSQL (``SLOT_AND_SESSION``, migration 0015)."""

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


class PersonRow(Base):
    """A real person, identified by one identity document across the whole region.

    Patients of different accounts carrying the same document are the same person: limits,
    strikes and the blacklist are keyed here, never by account, so moving from account to
    account (or hospital to hospital) changes nothing.
    """

    __tablename__ = "persons"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    document_hash: Mapped[str] = mapped_column(String(64), unique=True)
    document_type: Mapped[str] = mapped_column(String(32))
    birth_date: Mapped[date | None] = mapped_column(Date, default=None)
    sex: Mapped[str] = mapped_column(String(8), default="")
    verification_level: Mapped[str] = mapped_column(String(32), default="format_checked")
    verified_by: Mapped[str] = mapped_column(String(64), default="")
    verified_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column()
    lock_version: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped first thing by every transaction that checks this person's limits, so two of
    them (even at two hospitals) take turns instead of both passing on the last allowance."""


SELF_PATIENT = "relation = 'self' AND removed_at IS NULL AND proof <> 'pending_code'"
"""Rows that hold a person's one place as 本人; a claim still waiting for its code holds none
(migration 0012), so a stranger's unconfirmed claim cannot stop the real person's."""
UNSEALED_NAME = "name_enc IS NULL"


class PatientRow(Base):
    """就诊人. Name, document and phone are encrypted; lookups go through keyed hashes."""

    __tablename__ = "patients"
    __table_args__ = (
        UniqueConstraint("account_id", "document_hash"),
        Index(
            "uq_patients_self_person",
            "person_id",
            unique=True,
            sqlite_where=text(SELF_PATIENT),
            postgresql_where=text(SELF_PATIENT),
        ),
        Index(
            "ix_patients_name_unsealed",
            "id",
            sqlite_where=text(UNSEALED_NAME),
            postgresql_where=text(UNSEALED_NAME),
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    clear_name: Mapped[str | None] = mapped_column(
        "name", String(100), default="", server_default=""
    )
    """The name in the clear as rows before migration 0012 kept it; emptied by the backfill
    (``services/name_sealing.py``) and never written since. Read only through
    ``personal_data.patient_name``, which falls back to it for a row not yet sealed."""
    name_enc: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    """The name, sealed (``PersonalDataVault``, field ``patient_name``)."""
    relation: Mapped[str] = mapped_column(String(16), default="self")
    document_type: Mapped[str] = mapped_column(String(32))
    document_hash: Mapped[str] = mapped_column(String(64), index=True)
    document_enc: Mapped[bytes] = mapped_column(LargeBinary)
    document_masked: Mapped[str] = mapped_column(String(40))
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    phone_masked: Mapped[str] = mapped_column(String(20), default="")
    created_at: Mapped[datetime] = mapped_column()
    removed_at: Mapped[datetime | None] = mapped_column(default=None)
    identity_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    proof: Mapped[str] = mapped_column(String(16), default="declared", server_default="declared")
    """How the relation to the person was established (``patient_proof.Proof``)."""


class PatientIdentityChangeRow(Base):
    """Every change of a patient's name or document, counted against the region's limit."""

    __tablename__ = "patient_identity_changes"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    old_person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    new_person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    changed_at: Mapped[datetime] = mapped_column()


class PatientFilingRow(Base):
    """建档: whether a person has a record in a hospital's HIS, and its number there."""

    __tablename__ = "patient_filings"
    __table_args__ = (
        UniqueConstraint("person_id", "hospital_id"),
        CheckConstraint("status IN ('pending', 'filed', 'failed')", name="status_known"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    his_patient_id: Mapped[str] = mapped_column(String(64), default="")
    """The hospital's own number for the patient (病案号 / 就诊卡号)."""
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


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
        Index(
            "ix_bookings_person_visit",
            "person_id",
            "visit_date",
            sqlite_where=text(WITH_PERSON),
            postgresql_where=text(WITH_PERSON),
        ),
        Index("ix_bookings_device_time", "device_hash", "created_at"),
        Index("ix_bookings_ip_time", "ip_hash", "created_at"),
        CheckConstraint("kind IN ('regular', 'waitlist', 'lottery', 'add_on')", name="kind_known"),
        SLOT_AND_SESSION,
        SLOT_ALONE,
        SESSION_ALONE,
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    """Read by ``(account_id, idempotency_key)``'s unique index, which leads with it (an index
    of its own was one more btree insert a hold: dropped by migration 0014)."""
    slot_id: Mapped[str] = mapped_column(ID, index=True)
    session_id: Mapped[str] = mapped_column(ID, index=True)
    """With ``slot_id``, the slot's own session: ``SLOT_AND_SESSION``."""
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
    kind: Mapped[str] = mapped_column(String(16), default="regular")
    """How the unit was obtained: a hold (``regular``), the waitlist, the lottery, or an
    add-on unit (``add_on``: outside the slot's quota, never counted in ``online_booked``)."""
    person_id: Mapped[str | None] = mapped_column(ForeignKey("persons.id"), default=None)
    hospital_id: Mapped[str | None] = mapped_column(ForeignKey("hospitals.id"), default=None)
    department_id: Mapped[str | None] = mapped_column(ForeignKey("departments.id"), default=None)
    doctor_id: Mapped[str | None] = mapped_column(ForeignKey("doctors.id"), default=None)
    visit_date: Mapped[date | None] = mapped_column(Date, default=None)
    """The session's local date; with the three ids above, copied from the session when the
    patient is chosen so that limit checks are one indexed read."""
    ip_hash: Mapped[str] = mapped_column(String(64), default="")
    device_hash: Mapped[str] = mapped_column(String(64), default="")
    follow_up_until: Mapped[date | None] = mapped_column(Date, default=None)
    """Follow-up validity (复诊有效期): visits on or before this date need no new booking."""
    follow_up_visits: Mapped[int] = mapped_column(Integer, default=0)
    origin: Mapped[str] = mapped_column(String(24), default="patient", server_default="patient")
    """Who started the booking (``strikes.BookingOrigin``): strike policies count only the
    origins they name, so nothing the platform started counts against the patient."""

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
    reconciled_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    """When reconciliation (对账) last found this order and the gateway in agreement on a
    final state; None while it still has to be compared."""


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


class PaymentSettlementRow(Base):
    """A difference reconciliation (对账) found between an order here and at the gateway, and
    what it did about it: the trail the authority's daily report is made of."""

    __tablename__ = "payment_settlements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_no: Mapped[str] = mapped_column(ForeignKey("payment_orders.order_no"), index=True)
    booking_id: Mapped[str] = mapped_column(ID)
    found_at: Mapped[datetime] = mapped_column(index=True)
    platform_status: Mapped[str] = mapped_column(String(16))
    gateway_status: Mapped[str] = mapped_column(String(24))
    action: Mapped[str] = mapped_column(String(24))
    amount_cents: Mapped[int] = mapped_column(Integer)
    refund_no: Mapped[str | None] = mapped_column(String(40), default=None)
    resolved: Mapped[bool] = mapped_column(Boolean, default=True)


class RegionRulesRow(Base):
    """One version of the region's rules; the newest is in force. Never updated in place."""

    __tablename__ = "region_rules"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rules: Mapped[dict[str, Any]] = mapped_column()
    changed_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(Text, default="")


class HospitalRuleOverrideRow(Base):
    """One version of a hospital's overrides of the region's rules (only fields the region
    lets hospitals override). The newest version per hospital is in force."""

    __tablename__ = "hospital_rule_overrides"
    __table_args__ = (UniqueConstraint("hospital_id", "version"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    overrides: Mapped[dict[str, Any]] = mapped_column()
    changed_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(Text, default="")


class DepartmentPolicyRow(Base):
    """One version of a department's own split and release policy over its hospital's (unset
    fields fall back to the hospital). Never updated in place: the newest version per
    department is in force, and each row keeps what it replaced, who and when."""

    __tablename__ = "department_policies"
    __table_args__ = (UniqueConstraint("department_id", "version"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    department_id: Mapped[str] = mapped_column(ForeignKey("departments.id"), index=True)
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    policy: Mapped[dict[str, Any]] = mapped_column()
    previous: Mapped[dict[str, Any]] = mapped_column()
    changed_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(Text, default="")
    sessions_updated: Mapped[int] = mapped_column(Integer, default=0)


class StrikeRow(Base):
    """One counted violation of a person (爽约, late 退号, unpaid order, …)."""

    __tablename__ = "strikes"
    __table_args__ = (
        UniqueConstraint("booking_id", "kind"),
        Index("ix_strikes_person_kind_time", "person_id", "kind", "occurred_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    kind: Mapped[str] = mapped_column(String(32))
    booking_id: Mapped[str | None] = mapped_column(ForeignKey("bookings.id"), default=None)
    hospital_id: Mapped[str | None] = mapped_column(ForeignKey("hospitals.id"), default=None)
    occurred_at: Mapped[datetime] = mapped_column()
    recorded_at: Mapped[datetime] = mapped_column()
    note: Mapped[str] = mapped_column(Text, default="")


class BlacklistEntryRow(Base):
    """黑名单: a ban of a person from online booking across the region, until ``ends_at``."""

    __tablename__ = "blacklist_entries"
    __table_args__ = (
        Index("ix_blacklist_person_ends", "person_id", "ends_at"),
        CheckConstraint("source IN ('automatic', 'manual')", name="source_known"),
        CheckConstraint("starts_at < ends_at", name="starts_before_it_ends"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    policy: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    lifted_at: Mapped[datetime | None] = mapped_column(default=None)
    lifted_by: Mapped[str | None] = mapped_column(String(64), default=None)
    lift_reason: Mapped[str | None] = mapped_column(Text, default=None)


class BlacklistAppealRow(Base):
    """申诉: a patient asks the authority to lift a ban; the authority decides."""

    __tablename__ = "blacklist_appeals"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'granted', 'rejected')", name="status_known"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    entry_id: Mapped[str] = mapped_column(ForeignKey("blacklist_entries.id"), index=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    statement: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    filed_at: Mapped[datetime] = mapped_column()
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    decided_by: Mapped[str | None] = mapped_column(String(64), default=None)
    decision_reason: Mapped[str | None] = mapped_column(Text, default=None)


class StaffAccountRow(Base):
    """Staff of the health authority or of a hospital (never citizens)."""

    __tablename__ = "staff_accounts"
    __table_args__ = (
        CheckConstraint(
            "role IN ('authority_admin', 'authority_auditor', 'hospital_staff')",
            name="role_known",
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(32))
    hospital_id: Mapped[str | None] = mapped_column(ForeignKey("hospitals.id"), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column()


class AuditRow(Base):
    """Every change made by staff and every staff access to personal data, append-only."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_subject", "subject_type", "subject_id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    actor: Mapped[str] = mapped_column(String(64))
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column()
    at: Mapped[datetime] = mapped_column(index=True)
    # The hash chain (guahao/platform/persistence/audit_chain.py), filled on insert.
    chain_seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditChainHeadRow(Base):
    """The audit chain's head: one row (id 1), updated by every append, which serialises them."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


class WaitlistEntryRow(Base):
    """候补: a patient waiting for a freed unit of one session, or of a department (or one
    doctor) over a date range. Served in order of (priority desc, joined_at)."""

    __tablename__ = "waitlist_entries"
    __table_args__ = (
        Index("ix_waitlist_session_status", "session_id", "status"),
        Index("ix_waitlist_department_status", "department_id", "status"),
        Index("ix_waitlist_person_status", "person_id", "status"),
        CheckConstraint(
            "status IN ('waiting', 'fulfilled', 'cancelled', 'expired', 'removed')",
            name="status_known",
        ),
        CheckConstraint("scope IN ('session', 'department', 'doctor')", name="scope_known"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    scope: Mapped[str] = mapped_column(String(16))
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"))
    department_id: Mapped[str | None] = mapped_column(ForeignKey("departments.id"), default=None)
    doctor_id: Mapped[str | None] = mapped_column(ForeignKey("doctors.id"), default=None)
    session_id: Mapped[str | None] = mapped_column(ForeignKey("sessions.id"), default=None)
    date_from: Mapped[date] = mapped_column(Date)
    date_to: Mapped[date] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(16), default="self_pay")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    """0 for everyone; higher for patients whose session the hospital stopped (停诊)."""
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    booking_id: Mapped[str | None] = mapped_column(ForeignKey("bookings.id"), default=None)
    joined_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    end_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    origin: Mapped[str] = mapped_column(String(24), default="patient", server_default="patient")
    """``patient`` (joined by the patient) or ``priority_rebooking`` (put there by the
    platform after the hospital turned the patient away): the origin of what it grants."""


class WaitPrepaymentRow(Base):
    """候补预付: the fee a patient paid in advance when joining a wait at a hospital that takes
    payment online. Held by the platform until the wait is served (the money becomes the
    booking's payment) or ends unserved (refunded in full). The platform's own record of the
    money, beside the gateway's order of the same number."""

    __tablename__ = "wait_prepayments"
    __table_args__ = (
        CheckConstraint(
            "status IN ('created', 'paid', 'applied', 'refunded', 'closed')",
            name="status_known",
        ),
        CheckConstraint("applied_cents + refunded_cents <= amount_cents", name="within_paid"),
        Index("ix_wait_prepayments_status", "status"),
    )

    entry_id: Mapped[str] = mapped_column(ForeignKey("waitlist_entries.id"), primary_key=True)
    order_no: Mapped[str] = mapped_column(String(40), unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    """The most the wait can cost (the highest fee among the units it covers)."""
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    pay_url: Mapped[str] = mapped_column(String(300))
    gateway_trade_no: Mapped[str] = mapped_column(String(64), default="")
    expires_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    paid_at: Mapped[datetime | None] = mapped_column(default=None)
    booking_id: Mapped[str | None] = mapped_column(ForeignKey("bookings.id"), default=None)
    """The booking the money paid for, once the wait was served."""
    applied_cents: Mapped[int] = mapped_column(Integer, default=0)
    """What became the booking's payment (its fee)."""
    refunded_cents: Mapped[int] = mapped_column(Integer, default=0)
    """What was given back: everything for a wait ended unserved, the difference otherwise."""
    refund_no: Mapped[str | None] = mapped_column(String(40), default=None)
    refunded_at: Mapped[datetime | None] = mapped_column(default=None)


class RebookingOfferRow(Base):
    """优先改约: after the hospital cancelled a booking (or stopped its session), the units
    proposed to its patient, who accepts one or declines. While it is open the booking's
    payment is kept (its refund ``on_hold``) so that it can carry over to the accepted unit."""

    __tablename__ = "rebooking_offers"
    __table_args__ = (
        CheckConstraint(
            "status IN ('open', 'accepted', 'declined', 'expired')", name="status_known"
        ),
        Index("ix_rebooking_offers_status_expires", "status", "expires_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"), unique=True)
    """The booking the hospital cancelled."""
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"))
    proposals: Mapped[list[str]] = mapped_column()
    """Slot ids, in the order shown: same doctor first, then the department, nearest first."""
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    refund_no: Mapped[str | None] = mapped_column(String(40), default=None)
    """The cancelled booking's refund, held while the offer is open."""
    accepted_booking_id: Mapped[str | None] = mapped_column(ForeignKey("bookings.id"), default=None)


class VisitReminderRow(Base):
    """就诊提醒: one reminder of a confirmed booking, sent once at ``due_at`` (or skipped if
    the booking ended), with its own single-use one-tap 退号 link (``link_used_at``)."""

    __tablename__ = "visit_reminders"
    __table_args__ = (
        UniqueConstraint("booking_id", "hours_before"),
        CheckConstraint("status IN ('scheduled', 'sent', 'skipped')", name="status_known"),
        Index("ix_visit_reminders_status_due", "status", "due_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    hours_before: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    link_used_at: Mapped[datetime | None] = mapped_column(default=None)


class LotteryEntryRow(Base):
    """摇号: one request for a unit of a lottery session, drawn at ``lottery_draw_at``."""

    __tablename__ = "lottery_entries"
    __table_args__ = (
        UniqueConstraint("session_id", "person_id"),
        CheckConstraint(
            "status IN ('entered', 'won', 'lost', 'ineligible', 'withdrawn')",
            name="status_known",
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    channel: Mapped[str] = mapped_column(String(16), default="self_pay")
    status: Mapped[str] = mapped_column(String(16), default="entered")
    booking_id: Mapped[str | None] = mapped_column(ForeignKey("bookings.id"), default=None)
    entered_at: Mapped[datetime] = mapped_column()
    drawn_at: Mapped[datetime | None] = mapped_column(default=None)
    detail: Mapped[str] = mapped_column(Text, default="")


class AddOnUnitRow(Base):
    """诊间加号: a unit a doctor adds to a session for one named patient, outside the quota."""

    __tablename__ = "add_on_units"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"), unique=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    added_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column()


class SuspicionSignalRow(Base):
    """A pattern worth the authority's look (possible 黄牛), recorded once per dedupe key."""

    __tablename__ = "suspicion_signals"
    __table_args__ = (Index("ix_signals_kind_time", "kind", "detected_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(48))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    score: Mapped[int] = mapped_column(Integer, default=1)
    detail: Mapped[dict[str, Any]] = mapped_column()
    detected_at: Mapped[datetime] = mapped_column()
    reviewed_at: Mapped[datetime | None] = mapped_column(default=None)
    reviewed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    review_note: Mapped[str | None] = mapped_column(Text, default=None)


class OutboxRow(Base):
    """Events written in the same transaction as the change they describe."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "dispatched_at", "id"),
        Index(
            "ix_outbox_aggregate_id",
            "aggregate_id",
            sqlite_where=text(CUTOFF_EVENTS),
            postgresql_where=text(CUTOFF_EVENTS),
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    topic: Mapped[str] = mapped_column(String(64))
    aggregate_id: Mapped[str] = mapped_column(String(64))
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


# --------------------------------------------------------------- the authority's read models
#
# Kept current from the outbox by ``services/supply_demand.py`` (subscriber
# ``supply-demand-rollups``) and rebuilt from the record of truth by ``guahao console rebuild``;
# every authority figure is read from these, never from scanning bookings on a page load.


class SupplyDemandDayRow(Base):
    """One department's supply and demand on one visit day (rollup, recomputed per key).

    District and catalog specialty are copied from the hospital and department so that the
    region's views group without joins. Units are counted in units (号), not slots.
    """

    __tablename__ = "supply_demand_days"
    __table_args__ = (
        Index("ix_supply_demand_days_day_district", "day", "district", "catalog_code"),
        Index("ix_supply_demand_days_hospital_day", "hospital_id", "day"),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    department_id: Mapped[str] = mapped_column(ID, primary_key=True)
    hospital_id: Mapped[str] = mapped_column(ID)
    district: Mapped[str] = mapped_column(String(100))
    catalog_code: Mapped[str] = mapped_column(String(8))
    sessions: Mapped[int] = mapped_column(Integer, default=0)
    released: Mapped[int] = mapped_column(Integer, default=0)
    """放号量: every unit of the day's sessions (online and on-site)."""
    online_released: Mapped[int] = mapped_column(Integer, default=0)
    """Units opened for online booking (counting those moved on-site at the cut-off)."""
    offline_released: Mapped[int] = mapped_column(Integer, default=0)
    booked: Mapped[int] = mapped_column(Integer, default=0)
    """预约量: online bookings that were confirmed (whatever happened to them later)."""
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    no_shows: Mapped[int] = mapped_column(Integer, default=0)
    checked_in: Mapped[int] = mapped_column(Integer, default=0)
    add_on_units: Mapped[int] = mapped_column(Integer, default=0)
    add_on_untraced: Mapped[int] = mapped_column(Integer, default=0)
    """Add-on bookings without an ``add_on_units`` record (who added it, for whom, why)."""
    refused: Mapped[int] = mapped_column(Integer, default=0)
    """Unmet demand: distinct accounts refused ``SLOT_SOLD_OUT``, summed over sessions."""
    waitlist_joined: Mapped[int] = mapped_column(Integer, default=0)
    waitlist_served: Mapped[int] = mapped_column(Integer, default=0)
    waitlist_unserved: Mapped[int] = mapped_column(Integer, default=0)
    """Waits that ended (expired) without a unit: unmet demand too."""
    waitlist_waiting: Mapped[int] = mapped_column(Integer, default=0)
    max_segment_minutes: Mapped[int] = mapped_column(Integer, default=0)
    midnight_releases: Mapped[int] = mapped_column(Integer, default=0)
    """Sessions released at local midnight (00:00), which the city's rules forbid."""
    updated_at: Mapped[datetime] = mapped_column()


class SupplyDemandAreaRow(Base):
    """The region's view: one district's catalog specialty on one day, summed from
    ``supply_demand_days`` whenever one of its rows changes, so the region's figures read a
    few thousand rows instead of grouping a hundred thousand on every page load."""

    __tablename__ = "supply_demand_areas"
    __table_args__ = (Index("ix_supply_demand_areas_catalog_day", "catalog_code", "day"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    district: Mapped[str] = mapped_column(String(100), primary_key=True)
    catalog_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    hospitals: Mapped[int] = mapped_column(Integer, default=0)
    departments: Mapped[int] = mapped_column(Integer, default=0)
    released: Mapped[int] = mapped_column(Integer, default=0)
    online_released: Mapped[int] = mapped_column(Integer, default=0)
    offline_released: Mapped[int] = mapped_column(Integer, default=0)
    booked: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    no_shows: Mapped[int] = mapped_column(Integer, default=0)
    checked_in: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    waitlist_joined: Mapped[int] = mapped_column(Integer, default=0)
    waitlist_unserved: Mapped[int] = mapped_column(Integer, default=0)
    waitlist_waiting: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column()


class SupplyDemandHospitalRow(Base):
    """One hospital's day, summed from its departments' rows whenever one changes: what the
    monthly rankings and the compliance checks read (a month is 30 rows a hospital)."""

    __tablename__ = "supply_demand_hospital_days"
    __table_args__ = (Index("ix_supply_demand_hospital_days_hospital", "hospital_id", "day"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    hospital_id: Mapped[str] = mapped_column(ID, primary_key=True)
    district: Mapped[str] = mapped_column(String(100))
    released: Mapped[int] = mapped_column(Integer, default=0)
    online_released: Mapped[int] = mapped_column(Integer, default=0)
    offline_released: Mapped[int] = mapped_column(Integer, default=0)
    booked: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    no_shows: Mapped[int] = mapped_column(Integer, default=0)
    add_on_untraced: Mapped[int] = mapped_column(Integer, default=0)
    midnight_releases: Mapped[int] = mapped_column(Integer, default=0)
    max_segment_minutes: Mapped[int] = mapped_column(Integer, default=0)
    min_onsite_permille: Mapped[int] = mapped_column(Integer, default=1000)
    """The smallest on-site share (‰) of any of its departments that released units."""
    updated_at: Mapped[datetime] = mapped_column()


class RefusedDemandRow(Base):
    """Distinct accounts refused ``SLOT_SOLD_OUT`` on one session, folded from Redis.

    The hot path only adds the account to a HyperLogLog in Redis; the sweep copies its count
    here (never lowering it, so a lost Redis loses no recorded demand)."""

    __tablename__ = "refused_demand"

    session_id: Mapped[str] = mapped_column(ID, primary_key=True)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column()


class AccessMeasureRow(Base):
    """第三个可预约号 (third next available): measured once a day per hospital and specialty.

    ``third_next_days`` is the number of days from ``measured_on`` to the visit day of the
    third unit free for online booking at that moment; ``None`` when fewer than three were.
    """

    __tablename__ = "access_measures"
    __table_args__ = (
        Index("ix_access_measures_catalog_day", "catalog_code", "measured_on"),
        # the access view's order, with what it reads (migration 0010)
        Index(
            "ix_access_measures_trend",
            "catalog_code",
            "hospital_id",
            "measured_on",
            postgresql_include=["district", "third_next_days", "free_units"],
        ),
    )

    measured_on: Mapped[date] = mapped_column(Date, primary_key=True)
    hospital_id: Mapped[str] = mapped_column(ID, primary_key=True)
    catalog_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    district: Mapped[str] = mapped_column(String(100))
    third_next_days: Mapped[int | None] = mapped_column(Integer, default=None)
    free_units: Mapped[int] = mapped_column(Integer, default=0)
    measured_at: Mapped[datetime] = mapped_column()


class FederatedIdentityRow(Base):
    """A person's identity at an OpenID Connect provider, linked to one platform account.

    The pair (issuer, subject) is what the provider promises never to reassign, unlike an
    e-mail or a phone number, so a later sign-in finds the account by it alone; the unique
    constraint makes two simultaneous first sign-ins of one person agree on one link.
    """

    __tablename__ = "federated_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    issuer: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    linked_at: Mapped[datetime] = mapped_column()
    last_sign_in_at: Mapped[datetime] = mapped_column()
