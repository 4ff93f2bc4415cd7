"""The authority's blacklist pages: the bans (filtered and paged), one person's record (masked:
who they are to each account, their strikes with where they came from, every ban with its
appeals), and the three changes an administrator makes there: a ban by hand, a ban lifted, a
strike struck out.

Each change is two posts: the first checks what was typed and shows what will happen (nothing
changes yet); the second, carrying ``confirm=yes``, does it through ``BlacklistService``,
which audits it under the administrator's name. A person is found by their document typed in
a form (never in a URL that servers log); the page shows it back only masked. Auditors read
every page and get no forms; a crafted post from one is refused by ``require_change``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from guahao.platform.error_codes import refuse
from guahao.platform.identity_documents import DocumentType
from guahao.platform.services.blacklist import MAX_BAN_DAYS, BlacklistService, PersonRecord
from guahao.platform.services.staff import StaffRole
from guahao.web.citizen_session import CSRF_FIELD, check_csrf
from guahao.web.pages.console_context import AUTHORITY, ConsoleContext, render_console
from guahao.web.pages.page_context import see_other

__all__ = ["BAN_PAGE_SIZE", "BlacklistPages"]

BAN_PAGE_SIZE = 50
"""Bans per page of the list."""

ADMIN = (StaffRole.AUTHORITY_ADMIN,)
REASON_LENGTH = 2000


def _reason(form: dict[str, str]) -> str:
    reason = form.get("reason", "").strip()[:REASON_LENGTH]
    if not reason:
        refuse("REASON_REQUIRED")
    return reason


def _days(form: dict[str, str]) -> int:
    raw = form.get("days", "").strip()
    if not raw.isdigit() or len(raw) > 5:
        refuse("VALIDATION_FAILED", field="days", reason="a whole number of days")
    days = int(raw)
    if not 1 <= days <= MAX_BAN_DAYS:
        refuse("BAN_LENGTH_INVALID", days=days)
    return days


def _person_of(form: dict[str, str]) -> str:
    """The person whose page the form was on (the ban or strike must be theirs)."""
    person_id = form.get("person_id", "").strip()[:32]
    if not person_id:
        refuse("VALIDATION_FAILED", field="person_id", reason="required")
    return person_id


def _confirmed(form: dict[str, str]) -> bool:
    return form.get("confirm") == "yes"


def _policies_counting(record: PersonRecord, kind: str, policies: dict[str, set[str]]) -> list[Any]:
    """The person's bans in force whose policy counts strikes of ``kind`` (a strike struck out
    may be one they were built on; manual bans rest on no strike)."""
    return [b for b in record.bans if b.active and kind in policies.get(b.policy, set())]


class BlacklistPages(Controller):
    path = "/console/authority"
    include_in_schema = False

    @get("/bans", name="console_bans")
    async def bans(
        self,
        console: NamedDependency[ConsoleContext],
        blacklist: NamedDependency[BlacklistService],
        show: Annotated[Literal["active", "all"], QueryParameter()] = "active",
        person: Annotated[str | None, QueryParameter(max_length=32)] = None,
        page_no: Annotated[int, QueryParameter(name="page", ge=1, le=10_000)] = 1,
    ) -> Template:
        """The bans, newest first: in force or all of them, of everyone or one person."""
        staff = console.require(*AUTHORITY)
        found = await blacklist.list_bans(
            staff,
            active_only=show == "active",
            person_id=person or None,
            limit=BAN_PAGE_SIZE + 1,
            offset=(page_no - 1) * BAN_PAGE_SIZE,
        )
        query = f"show={show}" + (f"&person={person}" if person else "")
        return render_console(
            console,
            "console/bans.html",
            bans=found[:BAN_PAGE_SIZE],
            show=show,
            person=person or "",
            page_no=page_no,
            more=len(found) > BAN_PAGE_SIZE,
            query=query,
            document_types=[d.value for d in DocumentType],
        )

    @get("/persons", name="console_persons")
    async def persons(self, console: NamedDependency[ConsoleContext]) -> Template:
        """Find a person by their document, to see their strikes, bans and appeals."""
        console.require(*AUTHORITY)
        return render_console(
            console, "console/persons.html", document_types=[d.value for d in DocumentType]
        )

    @post("/persons/lookup", name="console_find_person", status_code=303)
    async def find_person(
        self,
        console: NamedDependency[ConsoleContext],
        blacklist: NamedDependency[BlacklistService],
    ) -> Redirect | Template:
        """By document, or by the phone of the account that books for them, sent in the
        form's body (the service audits the lookup); a read, so auditors may do it too. A
        phone that books for several people lists them (masked) to choose from."""
        form = await console.request.form()
        fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        check_csrf(console.request, fields.get(CSRF_FIELD, ""))
        staff = console.require(*AUTHORITY)
        if "phone" in fields:
            matches = await blacklist.find_persons_by_phone(fields["phone"][:40], staff)
            if len({m.person_id for m in matches}) > 1:
                return render_console(
                    console,
                    "console/persons.html",
                    document_types=[d.value for d in DocumentType],
                    matches=matches,
                )
            person_id = matches[0].person_id
        else:
            person_id = await blacklist.find_person(
                fields.get("document_type", "")[:40], fields.get("document_number", "")[:40], staff
            )
        return see_other(f"/console/authority/persons/{person_id}")

    @get("/persons/{person_id:str}", name="console_person")
    async def person(
        self,
        console: NamedDependency[ConsoleContext],
        blacklist: NamedDependency[BlacklistService],
        person_id: FromPath[str],
    ) -> Template:
        """One person, masked: their patients, strikes (hospital, booking), bans and appeals."""
        staff = console.require(*AUTHORITY)
        record = await blacklist.person_record(person_id, staff)
        return render_console(
            console,
            "console/person.html",
            record=record,
            active_ban=next((b for b in record.bans if b.active), None),
            max_days=MAX_BAN_DAYS,
        )

    @post("/persons/{person_id:str}/ban", name="console_add_ban", status_code=200)
    async def add_ban(
        self,
        console: NamedDependency[ConsoleContext],
        blacklist: NamedDependency[BlacklistService],
        person_id: FromPath[str],
    ) -> Template | Redirect:
        """A ban by hand: first what it will do, then, confirmed, the ban (audited)."""
        staff, form = await console.require_change(*ADMIN)
        days, reason = _days(form), _reason(form)
        if not _confirmed(form):
            record = await blacklist.person_record(person_id, staff)
            current = next((b for b in record.bans if b.active), None)
            if current is not None:
                refuse("BAN_ALREADY_ACTIVE", entry_id=current.id, until=current.ends_at.isoformat())
            return render_console(
                console,
                "console/confirm.html",
                action=f"/console/authority/persons/{person_id}/ban",
                kind="add_ban",
                record=record,
                fields={"days": str(days), "reason": reason},
                until=console.now() + timedelta(days=days),
                days=days,
                reason=reason,
                back=f"/console/authority/persons/{person_id}",
            )
        await blacklist.add_ban(person_id, days, reason, staff)
        return see_other(f"/console/authority/persons/{person_id}")

    @post("/bans/{entry_id:str}/lift", name="console_lift_ban", status_code=200)
    async def lift_ban(
        self,
        console: NamedDependency[ConsoleContext],
        blacklist: NamedDependency[BlacklistService],
        entry_id: FromPath[str],
    ) -> Template | Redirect:
        """A ban lifted with a reason: first the ban and who it affects, then, confirmed, the
        lift (audited; the person's accounts are told)."""
        staff, form = await console.require_change(*ADMIN)
        reason = _reason(form)
        person_id = _person_of(form)
        record = await blacklist.person_record(person_id, staff)
        ban = next((b for b in record.bans if b.id == entry_id), None)
        if ban is None:
            refuse("BAN_NOT_FOUND", entry_id=entry_id)
        if not ban.active:
            refuse("BAN_NOT_ACTIVE", entry_id=entry_id)
        if not _confirmed(form):
            return render_console(
                console,
                "console/confirm.html",
                action=f"/console/authority/bans/{entry_id}/lift",
                kind="lift_ban",
                record=record,
                ban=ban,
                fields={"reason": reason, "person_id": person_id},
                reason=reason,
                back=f"/console/authority/persons/{person_id}",
            )
        await blacklist.lift_ban(entry_id, reason, staff)
        return see_other(f"/console/authority/persons/{person_id}")

    @post("/strikes/{strike_id:str}/remove", name="console_remove_strike", status_code=200)
    async def remove_strike(
        self,
        console: NamedDependency[ConsoleContext],
        blacklist: NamedDependency[BlacklistService],
        strike_id: FromPath[str],
    ) -> Template | Redirect:
        """A strike struck out with a reason: first the strike and the bans it may have helped
        cause (they stay until lifted, a decision of its own), then, confirmed, the removal."""
        staff, form = await console.require_change(*ADMIN)
        reason = _reason(form)
        person_id = _person_of(form)
        record = await blacklist.person_record(person_id, staff)
        strike = next((s for s in record.strikes if s.id == strike_id), None)
        if strike is None:
            refuse("STRIKE_NOT_FOUND", strike_id=strike_id)
        if not _confirmed(form):
            rules = await blacklist.rules()
            counting = {p.name: {str(k) for k in p.counts} for p in rules.policies}
            return render_console(
                console,
                "console/confirm.html",
                action=f"/console/authority/strikes/{strike_id}/remove",
                kind="remove_strike",
                record=record,
                strike=strike,
                resting=_policies_counting(record, strike.kind, counting),
                fields={"reason": reason, "person_id": person_id},
                reason=reason,
                back=f"/console/authority/persons/{person_id}",
            )
        await blacklist.remove_strike(strike_id, reason, staff)
        return see_other(f"/console/authority/persons/{person_id}")
