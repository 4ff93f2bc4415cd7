"""What a hospital's staff do on the platform: add-on units (诊间加号), follow-up validity
(复诊有效期) and filing results (建档). Thin: the services check roles and hospitals again."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from guahao.platform.services.add_on_units import AddOnUnits
from guahao.platform.services.filings import Filings, FilingView
from guahao.platform.services.follow_ups import FollowUps
from guahao.platform.services.staff import StaffRole
from guahao.web.staff_auth import require_staff, staff_of

__all__ = ["HospitalDeskController"]

HOSPITAL = require_staff(StaffRole.HOSPITAL_STAFF)


class AddOnCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    patient_id: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class AddOnCreated(msgspec.Struct, frozen=True, rename="camel"):
    booking_id: str


class FollowUpGranted(msgspec.Struct, frozen=True, rename="camel"):
    valid_until: date


class FollowUpVisit(msgspec.Struct, frozen=True, rename="camel"):
    visits: int


class FilingResult(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    status: Literal["filed", "failed"]
    his_patient_id: Annotated[str, msgspec.Meta(max_length=64)] = ""
    detail: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class HospitalDeskController(Controller):
    path = "/api/v1/hospital-desk"
    tags = ["hospital desk"]  # noqa: RUF012
    guards = [HOSPITAL]  # noqa: RUF012

    @post("/sessions/{session_id:str}/add-on-units", operation_id="addOnUnit", status_code=201)
    async def add_on(
        self,
        add_on_units: NamedDependency[AddOnUnits],
        request: Request[Any, Any, Any],
        session_id: FromPath[str],
        data: JSONBody[AddOnCreate],
    ) -> AddOnCreated:
        """诊间加号 for a named, real-name patient (limited per session, audited)."""
        booking_id = await add_on_units.add(
            staff=staff_of(request),
            session_id=session_id,
            patient_id=data.patient_id,
            reason=data.reason,
        )
        return AddOnCreated(booking_id=booking_id)

    @post("/bookings/{booking_id:str}/follow-up", operation_id="grantFollowUp", status_code=200)
    async def grant_follow_up(
        self,
        follow_ups: NamedDependency[FollowUps],
        request: Request[Any, Any, Any],
        booking_id: FromPath[str],
    ) -> FollowUpGranted:
        """The visit continues (results pending): valid for the hospital's follow-up days."""
        until = await follow_ups.grant(staff=staff_of(request), booking_id=booking_id)
        return FollowUpGranted(valid_until=until)

    @post(
        "/bookings/{booking_id:str}/follow-up/visits",
        operation_id="recordFollowUpVisit",
        status_code=200,
    )
    async def follow_up_visit(
        self,
        follow_ups: NamedDependency[FollowUps],
        request: Request[Any, Any, Any],
        booking_id: FromPath[str],
    ) -> FollowUpVisit:
        """A return visit within the follow-up validity (no new registration)."""
        visits = await follow_ups.record_visit(staff=staff_of(request), booking_id=booking_id)
        return FollowUpVisit(visits=visits)

    @post("/filings/{filing_id:str}", operation_id="recordFilingResult", status_code=200)
    async def filing_result(
        self,
        filings: NamedDependency[Filings],
        request: Request[Any, Any, Any],
        filing_id: FromPath[str],
        data: JSONBody[FilingResult],
    ) -> FilingView:
        """The result of a filing request, entered by the hospital (connectors do the same)."""
        staff = staff_of(request)
        return await filings.record_result(
            hospital_id=staff.hospital_id or "",
            filing_id=filing_id,
            status=data.status,
            his_patient_id=data.his_patient_id,
            detail=data.detail,
        )
