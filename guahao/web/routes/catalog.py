"""Public browsing: hospitals, departments, doctors and their live availability."""

from __future__ import annotations

from datetime import date, timedelta

from litestar import Controller, get
from litestar.params import Parameter

from guahao.bootstrap import Platform
from guahao.platform.error_codes import refuse
from guahao.platform.services.queries import (
    DepartmentView,
    DoctorView,
    HospitalView,
    SessionAvailability,
)

__all__ = ["CatalogController"]


class CatalogController(Controller):
    path = "/api/v1"
    tags = ["catalog"]  # noqa: RUF012

    @get("/hospitals", operation_id="listHospitals")
    async def hospitals(self, platform: Platform) -> list[HospitalView]:
        return await platform.queries.hospitals()

    @get("/hospitals/{hospital_id:str}/departments", operation_id="listDepartments")
    async def departments(self, platform: Platform, hospital_id: str) -> list[DepartmentView]:
        return await platform.queries.departments(hospital_id)

    @get("/departments/{department_id:str}/doctors", operation_id="listDoctors")
    async def doctors(self, platform: Platform, department_id: str) -> list[DoctorView]:
        return await platform.queries.doctors(department_id)

    @get("/doctors/{doctor_id:str}/availability", operation_id="doctorAvailability")
    async def availability(
        self,
        platform: Platform,
        doctor_id: str,
        start: date | None = Parameter(query="from", default=None),
        end: date | None = Parameter(query="to", default=None),
    ) -> list[SessionAvailability]:
        """Sessions between ``from`` and ``to`` (default: today and the next 14 days)."""
        today = platform.ports.clock.now().date()
        first = start or today
        last = end or first + timedelta(days=14)
        if last < first or (last - first).days > 31:
            refuse("VALIDATION_FAILED", field="to", reason="a range of at most 31 days")
        return await platform.queries.doctor_availability(doctor_id, start=first, end=last)
