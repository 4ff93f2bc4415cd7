"""Public browsing: hospitals, departments, doctors and their live availability."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from guahao.platform.clock import Clock
from guahao.platform.error_codes import refuse
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

    @get("/doctors/{doctor_id:str}/availability", operation_id="doctorAvailability")
    async def availability(
        self,
        queries: NamedDependency[QueryService],
        clock: NamedDependency[Clock],
        doctor_id: FromPath[str],
        start: Annotated[date | None, QueryParameter(name="from")] = None,
        end: Annotated[date | None, QueryParameter(name="to")] = None,
    ) -> list[SessionAvailability]:
        """Sessions between ``from`` and ``to`` (default: today and the next 14 days)."""
        today = clock.now().date()
        first = start or today
        last = end or first + timedelta(days=14)
        if last < first or (last - first).days > 31:
            refuse("VALIDATION_FAILED", field="to", reason="a range of at most 31 days")
        return await queries.doctor_availability(doctor_id, start=first, end=last)
