"""Accounts, sign-in, the account's patients and its inbox."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlalchemy import select

from guahao.bootstrap import Platform
from guahao.platform.persistence.tables import NotificationRow
from guahao.platform.services.accounts import PatientView
from guahao.platform.services.filings import FilingView
from guahao.web.auth import TokenIssuer, require_account
from guahao.web.routes.bookings import client_context
from guahao.web.schemas import (
    AccountCreate,
    FilingRequest,
    PatientCreate,
    PatientIdentityChange,
    TokenRequest,
    TokenResponse,
)

__all__ = ["AccountController", "PatientController"]


class AccountController(Controller):
    path = "/api/v1"
    tags = ["accounts"]  # noqa: RUF012

    @post("/accounts", operation_id="registerAccount")
    async def register(
        self,
        platform: NamedDependency[Platform],
        data: JSONBody[AccountCreate],
        request: Request[Any, Any, Any],
    ) -> dict[str, str]:
        account_id = await platform.accounts.register(
            phone=data.phone,
            password=data.password,
            display_name=data.display_name,
            client=client_context(request, platform),
        )
        return {"accountId": account_id}

    @post("/auth/token", operation_id="issueToken", status_code=200)
    async def token(
        self,
        platform: NamedDependency[Platform],
        data: JSONBody[TokenRequest],
        request: Request[Any, Any, Any],
    ) -> TokenResponse:
        account_id = await platform.accounts.authenticate(phone=data.phone, password=data.password)
        issuer: TokenIssuer = request.app.state.tokens
        return TokenResponse(
            access_token=issuer.issue(account_id),
            token_type="Bearer",
            expires_in=platform.settings.token_minutes * 60,
            account_id=account_id,
        )


class PatientController(Controller):
    path = "/api/v1/me"
    tags = ["accounts"]  # noqa: RUF012
    guards = [require_account]  # noqa: RUF012

    @get("/patients", operation_id="listPatients")
    async def patients(
        self, platform: NamedDependency[Platform], request: Request[Any, Any, Any]
    ) -> list[PatientView]:
        return await platform.accounts.patients(request.state.account_id)

    @post("/patients", operation_id="addPatient")
    async def add_patient(
        self,
        platform: NamedDependency[Platform],
        request: Request[Any, Any, Any],
        data: JSONBody[PatientCreate],
    ) -> PatientView:
        return await platform.accounts.add_patient(
            account_id=request.state.account_id,
            name=data.name,
            document_type=data.document_type,
            document_number=data.document_number,
            phone=data.phone,
            relation=data.relation,
        )

    @delete("/patients/{patient_id:str}", operation_id="removePatient", status_code=204)
    async def remove_patient(
        self,
        platform: NamedDependency[Platform],
        request: Request[Any, Any, Any],
        patient_id: FromPath[str],
    ) -> None:
        """删除就诊人 (refused while the patient has a live booking)."""
        await platform.accounts.remove_patient(
            account_id=request.state.account_id, patient_id=patient_id
        )

    @put("/patients/{patient_id:str}/identity", operation_id="changePatientIdentity")
    async def change_identity(
        self,
        platform: NamedDependency[Platform],
        request: Request[Any, Any, Any],
        patient_id: FromPath[str],
        data: JSONBody[PatientIdentityChange],
    ) -> PatientView:
        """修改实名信息 (a few times a year; never while the patient has a live booking)."""
        return await platform.accounts.change_identity(
            account_id=request.state.account_id,
            patient_id=patient_id,
            name=data.name,
            document_type=data.document_type,
            document_number=data.document_number,
        )

    @post("/patients/{patient_id:str}/filings", operation_id="requestFiling", status_code=201)
    async def request_filing(
        self,
        platform: NamedDependency[Platform],
        request: Request[Any, Any, Any],
        patient_id: FromPath[str],
        data: JSONBody[FilingRequest],
    ) -> FilingView:
        """建档: ask a hospital's HIS to file this patient (needed where it files first)."""
        return await platform.filings.request(
            account_id=request.state.account_id,
            patient_id=patient_id,
            hospital_id=data.hospital_id,
        )

    @get("/patients/{patient_id:str}/filings", operation_id="listFilings")
    async def filings(
        self,
        platform: NamedDependency[Platform],
        request: Request[Any, Any, Any],
        patient_id: FromPath[str],
    ) -> list[FilingView]:
        return await platform.filings.for_patient(
            account_id=request.state.account_id, patient_id=patient_id
        )

    @get("/notifications", operation_id="listNotifications")
    async def notifications(
        self, platform: NamedDependency[Platform], request: Request[Any, Any, Any]
    ) -> list[dict[str, Any]]:
        async with platform.ports.sessions() as session:
            rows = (
                await session.scalars(
                    select(NotificationRow)
                    .where(NotificationRow.account_id == request.state.account_id)
                    .order_by(NotificationRow.created_at.desc())
                    .limit(100)
                )
            ).all()
        return [
            {"id": r.id, "topic": r.template, "params": r.params, "createdAt": r.created_at}
            for r in rows
        ]
