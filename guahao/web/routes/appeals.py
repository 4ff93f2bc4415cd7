"""A citizen's side of the blacklist: their patients' standing and appeals (申诉)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from guahao.platform.services.blacklist import AppealView, BlacklistService, Standing
from guahao.web.auth import require_account
from guahao.web.authority_schemas import AppealCreate

__all__ = ["AppealController"]


class AppealController(Controller):
    path = "/api/v1"
    tags = ["appeals"]  # noqa: RUF012
    guards = [require_account]  # noqa: RUF012

    @post("/appeals", operation_id="fileAppeal")
    async def file(
        self,
        blacklist: NamedDependency[BlacklistService],
        request: Request[Any, Any, Any],
        data: JSONBody[AppealCreate],
    ) -> AppealView:
        """申诉 against a patient's ban; the authority decides and the account is told."""
        return await blacklist.file_appeal(
            request.state.account_id, data.patient_id, data.entry_id, data.statement
        )

    @get("/appeals", operation_id="listMyAppeals")
    async def list(
        self, blacklist: NamedDependency[BlacklistService], request: Request[Any, Any, Any]
    ) -> list[AppealView]:
        return await blacklist.appeals_of(request.state.account_id)

    @get("/patients/{patient_id:str}/standing", operation_id="patientStanding")
    async def standing(
        self,
        blacklist: NamedDependency[BlacklistService],
        request: Request[Any, Any, Any],
        patient_id: FromPath[str],
    ) -> Standing:
        """Strikes, how far from a ban under each policy, the ban in force and how to appeal."""
        return await blacklist.standing(request.state.account_id, patient_id)
