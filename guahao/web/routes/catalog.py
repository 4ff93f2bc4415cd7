"""Public browsing: hospitals, departments, doctors and their live availability."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter

from guahao.platform.error_codes import refuse
from guahao.platform.services.availability_answers import AvailabilityAnswers
from guahao.platform.services.queries import (
    DepartmentView,
    DoctorView,
    HospitalView,
    QueryService,
    SessionAvailability,
)

__all__ = ["CatalogController"]


class CatalogController(Controller):
    path = "/api/v1"
    tags = ["catalog"]  # noqa: RUF012

    @get("/hospitals", operation_id="listHospitals")
    async def hospitals(self, queries: NamedDependency[QueryService]) -> list[HospitalView]:
        return await queries.hospitals()

    @get("/hospitals/{hospital_id:str}/departments", operation_id="listDepartments")
    async def departments(
        self, queries: NamedDependency[QueryService], hospital_id: FromPath[str]
    ) -> list[DepartmentView]:
        return await queries.departments(hospital_id)

    @get("/departments/{department_id:str}/doctors", operation_id="listDoctors")
    async def doctors(
        self, queries: NamedDependency[QueryService], department_id: FromPath[str]
    ) -> list[DoctorView]:
        return await queries.doctors(department_id)

    @get(
        "/doctors/{doctor_id:str}/availability",
        operation_id="doctorAvailability",
        responses={200: ResponseSpec(list[SessionAvailability], description="Request fulfilled")},
    )
    async def availability(
        self,
        availability_answers: NamedDependency[AvailabilityAnswers],
        doctor_id: FromPath[str],
        start: Annotated[date | None, QueryParameter(name="from")] = None,
        end: Annotated[date | None, QueryParameter(name="to")] = None,
    ) -> Response[bytes]:
        """Sessions between ``from`` and ``to`` (default: today and the next 14 days).

        Answered from the process's remembered answers, which every step on a slot and every
        instant of change drop at once (docs/api.md, "Availability freshness"). One dependency:
        with two, Litestar resolves them in an anyio task group, 15 % of a cached answer's
        cost (bench/profiles/surge-reads-2-*)."""
        today = availability_answers.today()
        first = start or today
        last = end or first + timedelta(days=14)
        if last < first or (last - first).days > 31:
            refuse("VALIDATION_FAILED", field="to", reason="a range of at most 31 days")
        body = await availability_answers.answer(doctor_id, start=first, end=last)
        return Response(body, media_type=MediaType.JSON)
