"""Accounts, sign-in, the account's patients and its inbox."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from guahao.config import Settings
from guahao.platform.client_context import ClientContext
from guahao.platform.services.accounts import AccountService, NotificationView, PatientView
from guahao.platform.services.filings import Filings, FilingView
from guahao.web.auth import TokenIssuer, require_account
from guahao.web.schemas import (
    AccountConfirm,
    AccountCreate,
    FilingRequest,
    PatientCreate,
    PatientIdentityChange,
    PatientProofCode,
    TokenRequest,
    TokenResponse,
)

__all__ = ["AccountController", "PatientController"]


class AccountController(Controller):
    path = "/api/v1"
    tags = ["accounts"]  # noqa: RUF012

    @post("/accounts", operation_id="registerAccount", status_code=202)
    async def register(
        self,
        accounts: NamedDependency[AccountService],
        client: NamedDependency[ClientContext],
        data: JSONBody[AccountCreate],
        request: Request[Any, Any, Any],
    ) -> dict[str, str]:
        """注册, first step: always ``{"status": "code_sent", "sentTo": masked phone}``, whether
        or not the phone has an account (a registered phone is told someone tried, no code)."""
        sent_to = await accounts.request_registration(
            phone=data.phone,
            password=data.password,
            display_name=data.display_name,
            client=client,
        )
        return {"status": "code_sent", "sentTo": sent_to}

    @post("/accounts/confirm", operation_id="confirmRegistration", status_code=201)
    async def confirm(
        self,
        accounts: NamedDependency[AccountService],
        client: NamedDependency[ClientContext],
        data: JSONBody[AccountConfirm],
    ) -> dict[str, str]:
        """注册, second step: the code sent to the phone makes the account."""
        account_id = await accounts.confirm_registration(
            phone=data.phone, code=data.code, client=client
        )
        return {"accountId": account_id}

    @post("/auth/token", operation_id="issueToken", status_code=200)
    async def token(
        self,
        accounts: NamedDependency[AccountService],
        settings: NamedDependency[Settings],
        client: NamedDependency[ClientContext],
        data: JSONBody[TokenRequest],
        request: Request[Any, Any, Any],
    ) -> TokenResponse:
        account_id = await accounts.authenticate(
            phone=data.phone, password=data.password, client=client
        )
        issuer: TokenIssuer = request.app.state.tokens
        return TokenResponse(
            access_token=issuer.issue(account_id),
            token_type="Bearer",
            expires_in=settings.token_minutes * 60,
            account_id=account_id,
        )


class PatientController(Controller):
    path = "/api/v1/me"
    tags = ["accounts"]  # noqa: RUF012
    guards = [require_account]  # noqa: RUF012

    @get("/patients", operation_id="listPatients")
    async def patients(
        self, accounts: NamedDependency[AccountService], request: Request[Any, Any, Any]
    ) -> list[PatientView]:
        return await accounts.patients(request.state.account_id)

    @post("/patients", operation_id="addPatient")
    async def add_patient(
        self,
        accounts: NamedDependency[AccountService],
        request: Request[Any, Any, Any],
        data: JSONBody[PatientCreate],
    ) -> PatientView:
        return await accounts.add_patient(
            account_id=request.state.account_id,
            name=data.name,
            document_type=data.document_type,
            document_number=data.document_number,
            phone=data.phone,
            relation=data.relation,
        )

    @post("/patients/{patient_id:str}/proof", operation_id="provePatientRelation", status_code=200)
    async def prove_relation(
        self,
        accounts: NamedDependency[AccountService],
        request: Request[Any, Any, Any],
        patient_id: FromPath[str],
        data: JSONBody[PatientProofCode],
    ) -> PatientView:
        """Enter the code sent to the person's phone on file (``proof`` was ``pending_code``):
        the relation exists from now on (docs/identity.md)."""
        return await accounts.confirm_patient(
            account_id=request.state.account_id, patient_id=patient_id, code=data.code
        )

    @post(
        "/patients/{patient_id:str}/proof-code",
        operation_id="resendPatientRelationCode",
        status_code=200,
    )
    async def resend_relation_code(
        self,
        accounts: NamedDependency[AccountService],
        request: Request[Any, Any, Any],
        patient_id: FromPath[str],
    ) -> PatientView:
        """Send a fresh code to the person's phone on file (the earlier one dies)."""
        return await accounts.resend_patient_code(
            account_id=request.state.account_id, patient_id=patient_id
        )

    @delete("/patients/{patient_id:str}", operation_id="removePatient", status_code=204)
    async def remove_patient(
        self,
        accounts: NamedDependency[AccountService],
        request: Request[Any, Any, Any],
        patient_id: FromPath[str],
    ) -> None:
        """删除就诊人 (refused while the patient has a live booking)."""
        await accounts.remove_patient(account_id=request.state.account_id, patient_id=patient_id)

    @put("/patients/{patient_id:str}/identity", operation_id="changePatientIdentity")
    async def change_identity(
        self,
        accounts: NamedDependency[AccountService],
        request: Request[Any, Any, Any],
        patient_id: FromPath[str],
        data: JSONBody[PatientIdentityChange],
    ) -> PatientView:
        """修改实名信息 (a few times a year; never while the patient has a live booking)."""
        return await accounts.change_identity(
            account_id=request.state.account_id,
            patient_id=patient_id,
            name=data.name,
            document_type=data.document_type,
            document_number=data.document_number,
        )

    @post("/patients/{patient_id:str}/filings", operation_id="requestFiling", status_code=201)
    async def request_filing(
        self,
        filings: NamedDependency[Filings],
        request: Request[Any, Any, Any],
        patient_id: FromPath[str],
        data: JSONBody[FilingRequest],
    ) -> FilingView:
        """建档: ask a hospital's HIS to file this patient (needed where it files first)."""
        return await filings.request(
            account_id=request.state.account_id,
            patient_id=patient_id,
            hospital_id=data.hospital_id,
        )

    @get("/patients/{patient_id:str}/filings", operation_id="listFilings")
    async def filings(
        self,
        filings: NamedDependency[Filings],
        request: Request[Any, Any, Any],
        patient_id: FromPath[str],
    ) -> list[FilingView]:
        return await filings.for_patient(account_id=request.state.account_id, patient_id=patient_id)

    @get("/notifications", operation_id="listNotifications")
    async def notifications(
        self, accounts: NamedDependency[AccountService], request: Request[Any, Any, Any]
    ) -> list[NotificationView]:
        return await accounts.notifications(request.state.account_id)
