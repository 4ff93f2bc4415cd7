"""The health authority's API: staff sign-in, bans, appeals, person records, the audit log and
suspicion signals. Auditors read; only administrators change anything. Every rule is in the
services (which check the role again); this layer authenticates, decodes and encodes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from guahao.hospital_connectors.hub import ConnectorHub
from guahao.platform.client_context import ClientContext
from guahao.platform.services.audit import AuditLog, AuditPage
from guahao.platform.services.blacklist import (
    AppealView,
    BanView,
    BlacklistService,
    PersonRecord,
    StrikeView,
)
from guahao.platform.services.staff import StaffRole, StaffService
from guahao.platform.services.suspicion import SignalView, SuspicionService
from guahao.web.authority_schemas import (
    AppealDecision,
    BanCreate,
    BanLift,
    PersonLookup,
    PersonRef,
    SignalReview,
    StaffTokenRequest,
    StaffTokenResponse,
)
from guahao.web.staff_auth import StaffTokenIssuer, require_staff, staff_of

__all__ = ["AuthorityController", "StaffSignInController"]

ADMIN = require_staff(StaffRole.AUTHORITY_ADMIN)
READER = require_staff(StaffRole.AUTHORITY_ADMIN, StaffRole.AUTHORITY_AUDITOR)

Limit = Annotated[int, QueryParameter(ge=1, le=500)]


class ConnectorHealthView(msgspec.Struct, frozen=True, rename="camel"):
    """How one hospital connector is doing, for the authority's console."""

    hospital_code: str
    kind: str
    last_sync_at: datetime | None
    last_status: str
    lag_seconds: float | None
    runs: int
    failures: int
    error_rate: float
    last_error: str | None


Offset = Annotated[int, QueryParameter(ge=0, le=1_000_000)]
"""Bounded: a larger offset overflowed the database's integer and answered 500."""


class StaffSignInController(Controller):
    path = "/api/v1/staff"
    tags = ["authority"]  # noqa: RUF012

    @post("/token", operation_id="issueStaffToken", status_code=200)
    async def token(
        self,
        staff: NamedDependency[StaffService],
        client: NamedDependency[ClientContext],
        data: JSONBody[StaffTokenRequest],
        request: Request[Any, Any, Any],
    ) -> StaffTokenResponse:
        actor = await staff.authenticate(
            username=data.username, password=data.password, client=client
        )
        issuer: StaffTokenIssuer = request.app.state.staff_tokens
        return StaffTokenResponse(
            access_token=issuer.issue(actor),
            token_type="Bearer",
            expires_in=issuer.seconds,
            staff_id=actor.id,
            role=actor.role.value,
            hospital_id=actor.hospital_id,
        )


class AuthorityController(Controller):
    path = "/api/v1/authority"
    tags = ["authority"]  # noqa: RUF012

    @get("/bans", operation_id="listBans", guards=[READER])
    async def bans(
        self,
        blacklist: NamedDependency[BlacklistService],
        request: Request[Any, Any, Any],
        active: Annotated[bool, QueryParameter()] = True,
        person_id: Annotated[str | None, QueryParameter(name="personId")] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> list[BanView]:
        return await blacklist.list_bans(
            staff_of(request), active_only=active, person_id=person_id, limit=limit, offset=offset
        )

    @post("/bans", operation_id="addBan", guards=[ADMIN])
    async def add_ban(
        self,
        blacklist: NamedDependency[BlacklistService],
        request: Request[Any, Any, Any],
        data: JSONBody[BanCreate],
    ) -> BanView:
        return await blacklist.add_ban(data.person_id, data.days, data.reason, staff_of(request))

    @post("/bans/{entry_id:str}/lift", operation_id="liftBan", guards=[ADMIN], status_code=200)
    async def lift_ban(
        self,
        blacklist: NamedDependency[BlacklistService],
        request: Request[Any, Any, Any],
        entry_id: FromPath[str],
        data: JSONBody[BanLift],
    ) -> BanView:
        return await blacklist.lift_ban(entry_id, data.reason, staff_of(request))

    @post(
        "/strikes/{strike_id:str}/remove",
        operation_id="removeStrike",
        guards=[ADMIN],
        status_code=200,
    )
    async def remove_strike(
        self,
        blacklist: NamedDependency[BlacklistService],
        request: Request[Any, Any, Any],
        strike_id: FromPath[str],
        data: JSONBody[BanLift],
    ) -> StrikeView:
        """Strike out a strike recorded wrongly (the reason is required and audited)."""
        return await blacklist.remove_strike(strike_id, data.reason, staff_of(request))

    @get("/appeals", operation_id="listAppeals", guards=[READER])
    async def appeals(
        self,
        blacklist: NamedDependency[BlacklistService],
        request: Request[Any, Any, Any],
        status: Annotated[
            Literal["pending", "granted", "rejected", "all"], QueryParameter()
        ] = "pending",
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> list[AppealView]:
        return await blacklist.list_appeals(
            staff_of(request),
            status=None if status == "all" else status,
            limit=limit,
            offset=offset,
        )

    @post(
        "/appeals/{appeal_id:str}/decision",
        operation_id="decideAppeal",
        guards=[ADMIN],
        status_code=200,
    )
    async def decide(
        self,
        blacklist: NamedDependency[BlacklistService],
        request: Request[Any, Any, Any],
        appeal_id: FromPath[str],
        data: JSONBody[AppealDecision],
    ) -> AppealView:
        return await blacklist.decide_appeal(appeal_id, data.grant, data.reason, staff_of(request))

    @get("/persons/{person_id:str}", operation_id="personRecord", guards=[READER])
    async def person(
        self,
        blacklist: NamedDependency[BlacklistService],
        request: Request[Any, Any, Any],
        person_id: FromPath[str],
    ) -> PersonRecord:
        return await blacklist.person_record(person_id, staff_of(request))

    @post("/persons/lookup", operation_id="findPerson", guards=[READER], status_code=200)
    async def find_person(
        self,
        blacklist: NamedDependency[BlacklistService],
        request: Request[Any, Any, Any],
        data: JSONBody[PersonLookup],
    ) -> PersonRef:
        """By document (in the body, never in a URL that servers log)."""
        person_id = await blacklist.find_person(
            data.document_type, data.document_number, staff_of(request)
        )
        return PersonRef(person_id=person_id)

    @get("/audit", operation_id="auditLog", guards=[READER])
    async def audit(
        self,
        audit: NamedDependency[AuditLog],
        subject_type: Annotated[str | None, QueryParameter(name="subjectType")] = None,
        subject_id: Annotated[str | None, QueryParameter(name="subjectId")] = None,
        actor: Annotated[str | None, QueryParameter()] = None,
        action: Annotated[str | None, QueryParameter()] = None,
        since: Annotated[datetime | None, QueryParameter()] = None,
        until: Annotated[datetime | None, QueryParameter()] = None,
        page: Annotated[int, QueryParameter(ge=1, le=100_000)] = 1,
        per_page: Annotated[int, QueryParameter(name="perPage", ge=1, le=200)] = 50,
    ) -> AuditPage:
        return await audit.query(
            subject_type=subject_type,
            subject_id=subject_id,
            actor=actor,
            action=action,
            since=since,
            until=until,
            page=page,
            per_page=per_page,
        )

    @get("/connectors/health", operation_id="connectorHealth", guards=[READER])
    async def connector_health(
        self,
        connectors: NamedDependency[ConnectorHub],
        window: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> list[ConnectorHealthView]:
        """Each hospital connector's last sync, lag and error rate over its last runs."""
        return [
            ConnectorHealthView(**msgspec.structs.asdict(h))
            for h in await connectors.registry.health(window)
        ]

    @get("/signals", operation_id="listSignals", guards=[READER])
    async def signals(
        self,
        suspicion: NamedDependency[SuspicionService],
        request: Request[Any, Any, Any],
        kind: Annotated[str | None, QueryParameter()] = None,
        reviewed: Annotated[bool | None, QueryParameter()] = False,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> list[SignalView]:
        return await suspicion.list(
            staff_of(request), kind=kind, reviewed=reviewed, limit=limit, offset=offset
        )

    @post(
        "/signals/{signal_id:str}/review",
        operation_id="reviewSignal",
        guards=[ADMIN],
        status_code=200,
    )
    async def review(
        self,
        suspicion: NamedDependency[SuspicionService],
        request: Request[Any, Any, Any],
        signal_id: FromPath[str],
        data: JSONBody[SignalReview],
    ) -> SignalView:
        return await suspicion.review(signal_id, data.note, staff_of(request))
