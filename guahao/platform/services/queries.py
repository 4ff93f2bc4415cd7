"""Read models for citizens: hospitals, departments, doctors and live availability.

Availability joins SQL (what exists) with the hot pool (what is left right now) in one round
trip to Redis per page, so what a citizen sees is what a hold would find.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import msgspec
from sqlalchemy import bindparam, select

from guahao.platform.bookings import Booking
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.persistence.tables import (
    BookingRow,
    DepartmentRow,
    DoctorRow,
    HospitalRow,
    PaymentOrderRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.services.runtime import Ports, SlotFacts

__all__ = [
    "BookingDetail",
    "DepartmentView",
    "DoctorView",
    "HospitalView",
    "QueryService",
    "SessionAvailability",
    "SlotAvailability",
    "booking_answer",
    "held_answer",
]


class HospitalView(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    code: str
    name: str
    grade: str
    district: str
    address: str
    aliases: list[str]
    payment_mode: str


class DepartmentView(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    hospital_id: str
    code: str
    name: str
    catalog_code: str
    aliases: list[str]


class DoctorView(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    hospital_id: str
    department_id: str
    name: str
    title: str
    expertise: str


class SlotAvailability(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    starts_at: datetime
    ends_at: datetime
    online_quota: int
    available: int
    release_at: datetime
    status: str


class SessionAvailability(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    doctor_id: str
    date: date
    period: str
    category: str
    fee_cents: int
    status: str
    release_at: datetime
    released: bool
    available: int
    slots: list[SlotAvailability]


class BookingDetail(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    status: str
    slot_id: str
    session_id: str
    patient_id: str | None
    fee_cents: int
    channel: str | None
    hold_expires_at: datetime
    payment_order_no: str | None
    payment_expires_at: datetime | None
    pay_url: str | None
    paid: bool
    starts_at: datetime
    ends_at: datetime
    doctor_name: str
    department_name: str
    hospital_name: str
    end_reason: str | None


_BOOKING_VIEW = (
    select(
        BookingRow.id,
        BookingRow.status,
        BookingRow.slot_id,
        BookingRow.session_id,
        BookingRow.patient_id,
        BookingRow.fee_cents,
        BookingRow.channel,
        BookingRow.hold_expires_at,
        BookingRow.payment_order_no,
        BookingRow.payment_expires_at,
        PaymentOrderRow.status,
        PaymentOrderRow.pay_url,
        BookingRow.paid,
        SlotRow.starts_at,
        SlotRow.ends_at,
        DoctorRow.name,
        DepartmentRow.name,
        HospitalRow.name,
        BookingRow.end_reason,
        BookingRow.account_id,
    )
    .join(SlotRow, SlotRow.id == BookingRow.slot_id)
    .join(SessionRow, SessionRow.id == BookingRow.session_id)
    .join(DoctorRow, DoctorRow.id == SessionRow.doctor_id)
    .join(DepartmentRow, DepartmentRow.id == SessionRow.department_id)
    .join(HospitalRow, HospitalRow.id == SessionRow.hospital_id)
    .outerjoin(PaymentOrderRow, PaymentOrderRow.order_no == BookingRow.payment_order_no)
    .where(BookingRow.id == bindparam("booking"))
)
"""``QueryService.booking``'s statement, built once, the booking's id bound at each execution:
building it at each view was two fifths of the view's statement (bench/profiles/flow2-*)."""


class QueryService:
    """Read-only views; never changes state."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports

    async def hospitals(self) -> list[HospitalView]:
        async with self._p.sessions() as session:
            rows = (await session.scalars(select(HospitalRow).order_by(HospitalRow.code))).all()
        return [
            HospitalView(
                id=h.id,
                code=h.code,
                name=h.name,
                grade=h.grade,
                district=h.district,
                address=h.address,
                aliases=list(h.aliases),
                payment_mode=str(h.policies.get("payment_mode", "")),
            )
            for h in rows
        ]

    async def departments(self, hospital_id: str) -> list[DepartmentView]:
        async with self._p.sessions() as session:
            if await session.get(HospitalRow, hospital_id) is None:
                refuse("HOSPITAL_NOT_FOUND", hospital_id=hospital_id)
            rows = (
                await session.scalars(
                    select(DepartmentRow)
                    .where(DepartmentRow.hospital_id == hospital_id)
                    .order_by(DepartmentRow.code)
                )
            ).all()
        return [
            DepartmentView(
                id=d.id,
                hospital_id=d.hospital_id,
                code=d.code,
                name=d.name,
                catalog_code=d.catalog_code,
                aliases=list(d.aliases),
            )
            for d in rows
        ]

    async def doctors(self, department_id: str) -> list[DoctorView]:
        async with self._p.sessions() as session:
            if await session.get(DepartmentRow, department_id) is None:
                refuse("DEPARTMENT_NOT_FOUND", department_id=department_id)
            rows = (
                await session.scalars(
                    select(DoctorRow)
                    .where(DoctorRow.department_id == department_id)
                    .order_by(DoctorRow.code)
                )
            ).all()
        return [
            DoctorView(
                id=d.id,
                hospital_id=d.hospital_id,
                department_id=d.department_id,
                name=d.name,
                title=d.title,
                expertise=d.expertise,
            )
            for d in rows
        ]

    async def doctor_availability(
        self, doctor_id: str, *, start: date, end: date
    ) -> list[SessionAvailability]:
        """The doctor's sessions between two dates (inclusive) with units left per segment."""
        sessions, _counts_change_at = await self.doctor_availability_until(
            doctor_id, start=start, end=end
        )
        return sessions

    async def doctor_availability_until(
        self, doctor_id: str, *, start: date, end: date
    ) -> tuple[list[SessionAvailability], datetime | None]:
        """``doctor_availability``, and the first instant at which its counts change with no
        step taken (a hold running out, a returning unit back on sale), or None.

        The doctor's sessions between two dates (inclusive) with units left per segment.

        A release brings a crowd to this read. It was three ORM selects in a transaction,
        five round trips to PostgreSQL (BEGIN, the doctor, the sessions, the slots, ROLLBACK)
        and ORM rows for every slot; under load each round trip is a context switch the
        process waits for (bench/profiles/10-*). One outer-joined select of plain columns in
        autocommit is one round trip: no row means no such doctor, a row without a session
        a doctor with nothing in those days."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            connection = await session.connection(
                execution_options={"isolation_level": "AUTOCOMMIT"}
            )
            rows = (
                await connection.execute(
                    select(
                        SessionRow.id,
                        SessionRow.doctor_id,
                        SessionRow.date,
                        SessionRow.period,
                        SessionRow.category,
                        SessionRow.fee_cents,
                        SessionRow.status,
                        SessionRow.release_at,
                        SlotRow.id,
                        SlotRow.starts_at,
                        SlotRow.ends_at,
                        SlotRow.online_quota,
                        SlotRow.release_at,
                        SlotRow.status,
                    )
                    .select_from(DoctorRow)
                    .outerjoin(
                        SessionRow,
                        (SessionRow.doctor_id == DoctorRow.id)
                        & (SessionRow.date >= start)
                        & (SessionRow.date <= end),
                    )
                    .outerjoin(SlotRow, SlotRow.session_id == SessionRow.id)
                    .where(DoctorRow.id == doctor_id)
                    .order_by(SessionRow.starts_at, SessionRow.id, SlotRow.seq)
                )
            ).all()
        if not rows:
            refuse("DOCTOR_NOT_FOUND", doctor_id=doctor_id)
        counts = await self._p.inventory.counts(
            [row[8] for row in rows if row[8] is not None], now_ms=to_epoch_ms(now)
        )
        sessions: dict[str, SessionAvailability] = {}
        by_session: dict[str, list[SlotAvailability]] = {}
        counts_change_ms = min(
            (c.next_change_ms for c in counts.values() if c.next_change_ms >= 0), default=None
        )
        for (
            session_id,
            session_doctor,
            day,
            period,
            category,
            fee_cents,
            session_status,
            session_release_at,
            slot_id,
            starts_at,
            ends_at,
            quota,
            release_at,
            status,
        ) in rows:
            if session_id is None:
                continue  # the doctor, with no session in these days
            slots = by_session.setdefault(session_id, [])
            if session_id not in sessions:
                sessions[session_id] = SessionAvailability(
                    id=session_id,
                    doctor_id=session_doctor,
                    date=day,
                    period=period,
                    category=category,
                    fee_cents=fee_cents,
                    status=session_status,
                    release_at=session_release_at,
                    released=now >= session_release_at,
                    available=0,
                    slots=slots,
                )
            if slot_id is None:
                continue
            snap = counts.get(slot_id)
            slots.append(
                SlotAvailability(
                    id=slot_id,
                    starts_at=starts_at,
                    ends_at=ends_at,
                    online_quota=quota,
                    available=(
                        snap.available if snap and snap.status == "open" and starts_at > now else 0
                    ),
                    release_at=release_at,
                    status=snap.status if snap else status,
                )
            )
        return [
            msgspec.structs.replace(found, available=sum(x.available for x in found.slots))
            for found in sessions.values()
        ], None if counts_change_ms is None else datetime.fromtimestamp(
            counts_change_ms / 1000, UTC
        )

    async def booking(self, booking_id: str, *, account_id: str | None) -> BookingDetail:
        """One booking as its owner sees it, in one statement of plain columns.

        Every granted hold answers with this view, so it is on the hot path of a release:
        whole ORM rows of five tables (the hospital's policies decoded from JSON among them)
        and a second read for the payment order cost a granted hold about a fifth of its
        time (bench/profiles/). One statement needs no transaction around it: read in
        autocommit, it is one round trip to PostgreSQL instead of three (BEGIN, the select,
        ROLLBACK), and under load each round trip is a context switch the process waits for
        (bench/profiles/8-*)."""
        async with self._p.sessions() as session:
            connection = await session.connection(
                execution_options={"isolation_level": "AUTOCOMMIT"}
            )
            found = (await connection.execute(_BOOKING_VIEW, {"booking": booking_id})).first()
        if found is None or (account_id is not None and found[-1] != account_id):
            refuse("BOOKING_NOT_FOUND", booking_id=booking_id)
        (
            id_,
            status,
            slot_id,
            session_id,
            patient_id,
            fee_cents,
            channel,
            hold_expires_at,
            payment_order_no,
            payment_expires_at,
            order_status,
            pay_url,
            paid,
            starts_at,
            ends_at,
            doctor_name,
            department_name,
            hospital_name,
            end_reason,
            _owner,
        ) = found
        return BookingDetail(
            id=id_,
            status=status,
            slot_id=slot_id,
            session_id=session_id,
            patient_id=patient_id,
            fee_cents=fee_cents,
            channel=channel,
            hold_expires_at=hold_expires_at,
            payment_order_no=payment_order_no,
            payment_expires_at=payment_expires_at,
            pay_url=pay_url if order_status == "created" else None,
            paid=paid,
            starts_at=starts_at,
            ends_at=ends_at,
            doctor_name=doctor_name,
            department_name=department_name,
            hospital_name=hospital_name,
            end_reason=end_reason,
        )

    async def hold_answer(self, booking: Booking, facts: SlotFacts) -> BookingDetail:
        """A booking just held, as ``booking`` shows it, without reading it back.

        The hold wrote the row itself a moment ago, and everything else the view shows is in
        the slot's cached facts: the re-read was a fifth of a granted hold's time
        (bench/profiles/10-*). A repeated request answered with an older booking that has a
        payment order shows its order's link, which only SQL knows: that one is read.
        """
        if booking.payment_order_no is not None:
            return await self.booking(booking.id, account_id=booking.account_id)
        return held_answer(booking, facts)

    async def bookings_of(self, account_id: str) -> list[BookingDetail]:
        async with self._p.sessions() as session:
            ids = (
                await session.scalars(
                    select(BookingRow.id)
                    .where(BookingRow.account_id == account_id)
                    .order_by(BookingRow.created_at.desc())
                    .limit(100)
                )
            ).all()
        return [await self.booking(i, account_id=account_id) for i in ids]


def held_answer(booking: Booking, facts: SlotFacts) -> BookingDetail:
    """A booking without a payment order, as its view shows it, from the booking and its
    slot's cached facts alone (no read): the answer to a hold. A function, so the holds route
    needs no second dependency for it (bench/profiles/grant3-*)."""
    return BookingDetail(
        id=booking.id,
        status=booking.status.value,
        slot_id=booking.slot_id,
        session_id=booking.session_id,
        patient_id=booking.patient_id,
        fee_cents=booking.fee_cents,
        channel=booking.channel,
        hold_expires_at=booking.hold_expires_at,
        payment_order_no=None,
        payment_expires_at=booking.payment_expires_at,
        pay_url=None,
        paid=booking.paid,
        starts_at=facts.starts_at,
        ends_at=facts.ends_at,
        doctor_name=facts.doctor_name,
        department_name=facts.department_name,
        hospital_name=facts.hospital_name,
        end_reason=booking.end_reason,
    )


def booking_answer(booking: Booking, facts: SlotFacts, *, pay_url: str | None) -> BookingDetail:
    """A booking a command has just changed, as its view shows it, without reading it back.

    The command's booking carries every field the view reads from its row (it wrote them),
    and the slot's cached facts the rest; ``pay_url`` is the link of the order the command
    opened, None when no order is open (the view shows a link only while it can be paid).
    The read back cost each step after the hold a connection, a statement and a second
    dependency of the route, about a tenth of the step (bench/profiles/flow2-*)."""
    return msgspec.structs.replace(
        held_answer(booking, facts),
        payment_order_no=booking.payment_order_no,
        pay_url=pay_url,
    )
