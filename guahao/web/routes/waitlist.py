"""The citizen's waitlist (候补) and lottery (摇号) entries: join, list with place in line, leave;
enter, list, withdraw. Thin: decode, call the service, encode."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from guahao.platform.services.lottery import LotteryEntryView, LotteryService
from guahao.platform.services.waitlist import WaitlistService, WaitView
from guahao.web.auth import require_account

__all__ = ["LotteryController", "LotteryEntryCreate", "WaitCreate", "WaitlistController"]

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Channel = Literal["self_pay", "insurance"]


class WaitCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """A wait for one session (``sessionId``), or for a doctor (``doctorId``) or a department
    (``departmentId``) between ``dateFrom`` and ``dateTo`` (the hospital's dates)."""

    patient_id: Id
    scope: Literal["session", "doctor", "department"]
    session_id: Id | None = None
    doctor_id: Id | None = None
    department_id: Id | None = None
    date_from: date | None = None
    date_to: date | None = None
    channel: Channel = "self_pay"


class LotteryEntryCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """An entry to a lottery session's draw."""

    session_id: Id
    patient_id: Id
    channel: Channel = "self_pay"


class WaitlistController(Controller):
    path = "/api/v1/waitlist"
    tags = ["waitlist"]  # noqa: RUF012
    guards = [require_account]  # noqa: RUF012

    @post("/", operation_id="joinWaitlist", status_code=201)
    async def join(
        self,
        waitlist: NamedDependency[WaitlistService],
        request: Request[Any, Any, Any],
        data: JSONBody[WaitCreate],
    ) -> WaitView:
        """候补: a freed unit is given to the first in line automatically (booked, or held
        with a payment notice); patients of a stopped session go first."""
        return await waitlist.join(
            account_id=request.state.account_id,
            patient_id=data.patient_id,
            scope=data.scope,
            session_id=data.session_id,
            doctor_id=data.doctor_id,
            department_id=data.department_id,
            date_from=data.date_from,
            date_to=data.date_to,
            channel=data.channel,
        )

    @get("/", operation_id="listWaits")
    async def waits(
        self, waitlist: NamedDependency[WaitlistService], request: Request[Any, Any, Any]
    ) -> list[WaitView]:
        """The account's waits, each waiting one with its ``position`` in line."""
        return await waitlist.waits(request.state.account_id)

    @post("/{entry_id:str}/leave", operation_id="leaveWaitlist", status_code=200)
    async def leave(
        self,
        waitlist: NamedDependency[WaitlistService],
        request: Request[Any, Any, Any],
        entry_id: FromPath[str],
    ) -> WaitView:
        return await waitlist.leave(account_id=request.state.account_id, entry_id=entry_id)


class LotteryController(Controller):
    path = "/api/v1/lottery/entries"
    tags = ["lottery"]  # noqa: RUF012
    guards = [require_account]  # noqa: RUF012

    @post("/", operation_id="enterLottery", status_code=201)
    async def enter(
        self,
        lottery: NamedDependency[LotteryService],
        request: Request[Any, Any, Any],
        data: JSONBody[LotteryEntryCreate],
    ) -> LotteryEntryView:
        """摇号: ask for a unit of a lottery session during its window; units are drawn at
        random among eligible entries at ``drawAt``."""
        return await lottery.enter(
            account_id=request.state.account_id,
            patient_id=data.patient_id,
            session_id=data.session_id,
            channel=data.channel,
        )

    @get("/", operation_id="listLotteryEntries")
    async def entries(
        self, lottery: NamedDependency[LotteryService], request: Request[Any, Any, Any]
    ) -> list[LotteryEntryView]:
        return await lottery.entries(request.state.account_id)

    @post("/{entry_id:str}/withdraw", operation_id="withdrawLotteryEntry", status_code=200)
    async def withdraw(
        self,
        lottery: NamedDependency[LotteryService],
        request: Request[Any, Any, Any],
        entry_id: FromPath[str],
    ) -> LotteryEntryView:
        return await lottery.withdraw(account_id=request.state.account_id, entry_id=entry_id)
