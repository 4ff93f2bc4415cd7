"""The push API for hospital systems: schedules, capacity, session stops, check-ins, filing
results, schedule files, and the hospital's own bookings.

Authenticated by OAuth2 client credentials (``guahao.web.hospital_auth``); the hospital is
always the token's. Writes must carry an ``Idempotency-Key``, kept per hospital by the API's
one idempotency mechanism (``guahao.web.idempotency``): the same key with the same body
replays the first answer, with another body is refused.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, QueryParameter

from guahao.hospital_connectors.batch_files import (
    check_schedule_file,
    template_csv,
    template_xlsx,
)
from guahao.hospital_connectors.canonical import (
    CancelNotice,
    CapacityNotice,
    CheckInNotice,
    FilingNotice,
    StopNotice,
)
from guahao.hospital_connectors.notices import apply_notice
from guahao.platform.error_codes import refuse
from guahao.platform.hospitals import Period, SlotCategory, Title
from guahao.platform.schedules import DepartmentSpec, DoctorSpec, SegmentSpec, SessionSpec
from guahao.platform.services.booking_service import BookingService
from guahao.platform.services.filings import Filings
from guahao.platform.services.hospital_feed import (
    FeedReport,
    FilingResult,
    HospitalBooking,
    HospitalFeed,
    SessionKey,
)
from guahao.web.hospital_auth import require_hospital
from guahao.web.idempotency import IDEMPOTENCY_KEY_OPT
from guahao.web.request_bodies import HOSPITAL_API_BODY_LIMIT, SCHEDULE_FILE_BODY_LIMIT

__all__ = ["HospitalApiController"]

AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]


class Camel(msgspec.Struct, rename="camel", frozen=True):
    pass


class PushDepartment(Camel, frozen=True):
    code: str
    name: str
    catalog_code: str
    location: str = ""


class PushDoctor(Camel, frozen=True):
    code: str
    name: str
    title: Title
    department_code: str


class PushSegment(Camel, frozen=True):
    start: AwareTime
    end: AwareTime
    capacity: Annotated[int, msgspec.Meta(ge=0, le=10_000)]


class PushSession(Camel, frozen=True):
    doctor_code: str
    date: date
    period: Period
    category: SlotCategory
    fee_cents: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
    segments: list[PushSegment]
    external_id: str = ""


class PushSchedule(Camel, frozen=True):
    departments: list[PushDepartment] = []
    doctors: list[PushDoctor] = []
    sessions: list[PushSession] = []


class SessionRef(Camel, frozen=True):
    external_id: str = ""
    doctor_code: str = ""
    date: date | None = None
    period: Period | None = None

    def key(self) -> SessionKey:
        return SessionKey(
            doctor_code=self.doctor_code,
            date=self.date,
            period=self.period.value if self.period else "",
            external_id=self.external_id,
        )


class CapacityChange(Camel, frozen=True):
    session: SessionRef
    segment: int = -1
    capacity: Annotated[int, msgspec.Meta(ge=0, le=10_000)] | None = None
    add_units: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0


class SessionStop(Camel, frozen=True):
    session: SessionRef
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=300)] = "停诊"


class CheckIn(Camel, frozen=True):
    booking_id: str


class Cancellation(Camel, frozen=True):
    booking_id: str
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=300)] = "医院取消"


class Filing(Camel, frozen=True):
    """The answer to a booking's filing (``bookingId``) or to a person's filing request
    (``filingId``, from ``patient.filing_requested``): exactly one of the two."""

    booking_id: str = ""
    filing_id: str = ""
    status: str = "filed"
    medical_record_no: str = ""
    his_appointment_id: str = ""
    detail: str = ""


class Applied(Camel, frozen=True):
    result: str


def _hospital(request: Request[Any, Any, Any]) -> str:
    code: str = request.state.hospital_code
    return code


class HospitalApiController(Controller):
    path = "/api/v1/hospital"
    tags = ["hospital connectors"]  # noqa: RUF012
    guards = [require_hospital]  # noqa: RUF012
    opt = {IDEMPOTENCY_KEY_OPT: "required"}  # noqa: RUF012 - a vendor's retry must be safe
    request_max_body_size = HOSPITAL_API_BODY_LIMIT

    @post("/schedules", operation_id="pushSchedules", status_code=200)
    async def schedules(
        self,
        request: Request[Any, Any, Any],
        feed: NamedDependency[HospitalFeed],
        data: JSONBody[PushSchedule],
    ) -> FeedReport:
        """Departments, doctors and sessions (upserted: new sessions published, capacity
        changes applied, other differences reported as drift)."""
        hospital = _hospital(request)
        if data.departments or data.doctors:
            await feed.upsert_staff(
                hospital,
                [
                    DepartmentSpec(
                        code=d.code,
                        name=d.name,
                        catalog_code=d.catalog_code,
                        location=d.location,
                    )
                    for d in data.departments
                ],
                [
                    DoctorSpec(
                        code=d.code,
                        name=d.name,
                        title=d.title,
                        department_code=d.department_code,
                    )
                    for d in data.doctors
                ],
            )
        sessions = []
        for s in data.sessions:
            for g in s.segments:
                if g.start >= g.end:
                    refuse("VALIDATION_FAILED", field="segments", reason="start before end")
            sessions.append(
                SessionSpec(
                    hospital_code=hospital,
                    doctor_code=s.doctor_code,
                    date=s.date,
                    period=s.period,
                    category=s.category,
                    fee_cents=s.fee_cents,
                    segments=tuple(SegmentSpec(g.start, g.end, g.capacity) for g in s.segments),
                    external_id=s.external_id,
                )
            )
        return await feed.apply_sessions(hospital, sessions)

    @post("/capacity", operation_id="pushCapacity", status_code=200)
    async def capacity(
        self,
        request: Request[Any, Any, Any],
        feed: NamedDependency[HospitalFeed],
        data: JSONBody[CapacityChange],
    ) -> Applied:
        """A segment's whole capacity (``capacity``) or add-on units (加号, ``addUnits``)."""
        if (data.capacity is None) == (data.add_units == 0):
            refuse("VALIDATION_FAILED", field="capacity", reason="either capacity or addUnits")
        notice = CapacityNotice(
            key=data.session.key(),
            segment=data.segment,
            capacity=data.capacity,
            add_units=data.add_units,
        )
        hospital = _hospital(request)
        return Applied(await apply_notice(feed, hospital, notice))

    @post("/session-stops", operation_id="pushSessionStop", status_code=200)
    async def stop(
        self,
        request: Request[Any, Any, Any],
        feed: NamedDependency[HospitalFeed],
        data: JSONBody[SessionStop],
    ) -> Applied:
        """停诊: every booking of the session is cancelled by the hospital and refunded."""
        hospital = _hospital(request)
        notice = StopNotice(key=data.session.key(), reason=data.reason)
        return Applied(await apply_notice(feed, hospital, notice))

    @post("/check-ins", operation_id="pushCheckIn", status_code=200)
    async def check_in(
        self,
        request: Request[Any, Any, Any],
        feed: NamedDependency[HospitalFeed],
        data: JSONBody[CheckIn],
    ) -> Applied:
        """签到 of one of this hospital's bookings."""
        hospital = _hospital(request)
        return Applied(await apply_notice(feed, hospital, CheckInNotice(data.booking_id)))

    @post("/cancellations", operation_id="pushCancellation", status_code=200)
    async def cancellation(
        self,
        request: Request[Any, Any, Any],
        feed: NamedDependency[HospitalFeed],
        bookings: NamedDependency[BookingService],
        data: JSONBody[Cancellation],
    ) -> Applied:
        """The hospital cancels one of its bookings (refunded in full, never a strike; the
        unit is withdrawn, not sold again)."""
        hospital = _hospital(request)
        notice = CancelNotice(booking_id=data.booking_id, reason=data.reason)
        return Applied(await apply_notice(feed, hospital, notice, bookings.hospital_actions))

    @post("/filings", operation_id="pushFiling", status_code=200)
    async def filing(
        self,
        request: Request[Any, Any, Any],
        filings: NamedDependency[Filings],
        feed: NamedDependency[HospitalFeed],
        data: JSONBody[Filing],
    ) -> Applied:
        """建档 result for one of this hospital's bookings or filing requests."""
        if data.status not in ("filed", "failed"):
            refuse("VALIDATION_FAILED", field="status", reason="filed or failed")
        if bool(data.booking_id) == bool(data.filing_id):
            refuse("VALIDATION_FAILED", field="bookingId", reason="either bookingId or filingId")
        hospital = _hospital(request)
        if data.filing_id:
            view = await filings.record_result(
                hospital_id=await feed.hospital_id(hospital),
                filing_id=data.filing_id,
                status="filed" if data.status == "filed" else "failed",
                his_patient_id=data.medical_record_no,
                detail=data.detail,
            )
            return Applied(f"filing {view.id} {view.status}")

        result = FilingResult(
            booking_id=data.booking_id,
            status="filed" if data.status == "filed" else "failed",
            medical_record_no=data.medical_record_no,
            his_appointment_id=data.his_appointment_id,
            detail=data.detail,
        )
        return Applied(await apply_notice(feed, hospital, FilingNotice(result)))

    @post(
        "/schedule-files",
        operation_id="pushScheduleFile",
        status_code=200,
        request_max_body_size=SCHEDULE_FILE_BODY_LIMIT,
    )
    async def schedule_file(
        self,
        request: Request[Any, Any, Any],
        feed: NamedDependency[HospitalFeed],
        format: FromQuery[str] = "csv",
    ) -> FeedReport:
        """A CSV or XLSX schedule from the template (the body is the file). Nothing is imported
        from a file with errors; the answer lists each error by row and column."""
        if format not in ("csv", "xlsx"):
            refuse("VALIDATION_FAILED", field="format", reason="csv or xlsx")
        hospital = _hospital(request)
        body = await request.body()
        checked = await check_schedule_file(
            body,
            kind=format,
            hospital_code=hospital,
            timezone=await feed.timezone_of(hospital),
            known_doctors=await feed.doctor_codes(hospital),
        )
        if checked.errors:
            refuse(
                "BATCH_FILE_INVALID",
                rows=checked.rows,
                errors=[msgspec.to_builtins(e) for e in checked.errors[:500]],
            )
        return await feed.apply_sessions(hospital, checked.sessions)

    @get("/schedule-template", operation_id="scheduleTemplate", opt={"scope": "hospital:read"})
    async def template(self, format: FromQuery[str] = "csv") -> Response[bytes]:
        """The schedule file template (CSV or XLSX)."""
        if format == "xlsx":
            return Response(
                template_xlsx(),
                media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                headers={"Content-Disposition": 'attachment; filename="schedule-template.xlsx"'},
            )
        return Response(
            template_csv().encode("utf-8-sig"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="schedule-template.csv"'},
        )

    @get("/bookings", operation_id="hospitalBookings", opt={"scope": "hospital:read"})
    async def bookings(
        self,
        request: Request[Any, Any, Any],
        feed: NamedDependency[HospitalFeed],
        day: Annotated[date, QueryParameter(name="date")],
    ) -> list[HospitalBooking]:
        """This hospital's bookings of one day, with their filing state."""
        return await feed.bookings_of(_hospital(request), day)
