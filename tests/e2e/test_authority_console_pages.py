"""The authority's action pages over HTTP, on both databases: the blacklist, a person's record
with their strikes, the region's rules and the audit log.

A destructive change is two posts (the first shows what will happen and changes nothing); each
change is audited under the administrator's name; an auditor reads every page and is refused
every change; hospital staff never see these pages; the person's full document never appears
on a page. Strikes and the automatic ban come from real no-shows through the outbox
(tests/integration/test_blacklist.py's helpers).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from sqlalchemy import func, select, update

from guahao.bootstrap import Platform
from guahao.platform.persistence.tables import AccountRow, AuditRow, StrikeRow
from guahao.platform.services.blacklist import active_ban
from tests.fixtures.platforms import SESSION_DAY, new_account
from tests.fixtures.staff import SQLITE_ONLY, staff_of
from tests.integration.test_blacklist import WEEK, Person, hospitals, no_show

PASSWORD = "console-pass-1"


@asynccontextmanager
async def staff_client(base: str, username: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A browser-like client signed in to the console, and its CSRF token."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        page = await client.get("/console/sign-in")
        found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        assert found
        csrf = found.group(1)
        signed = await client.post(
            "/console/sign-in",
            data={"csrf": csrf, "username": username, "password": PASSWORD, "next": "/console/"},
        )
        assert signed.status_code == 303, signed.text
        yield client, csrf


async def staff(platform: Platform) -> None:
    for username, role, code in (
        ("admin", "authority_admin", None),
        ("auditor", "authority_auditor", None),
        ("desk", "hospital_staff", "h1"),
    ):
        await platform.staff.create(
            username=username, password=PASSWORD, role=role, hospital_code=code
        )


async def banned_person(platform: Platform) -> tuple[Person, str]:
    """A person with three no-shows at two hospitals: three strikes and an automatic ban."""
    await hospitals(platform, "h1", "h2")
    account = await new_account(platform)
    person = Person()
    patient = await person.of(platform, account)
    await no_show(platform, account, patient, "h1", SESSION_DAY)
    await no_show(platform, account, patient, "h2", SESSION_DAY + 2 * WEEK)
    await no_show(platform, account, patient, "h1", SESSION_DAY + 4 * WEEK)
    return person, await person.person_id(platform)


async def phone_of(platform: Platform, account_id: str) -> str:
    async with platform.ports.sessions() as session:
        account = await session.get(AccountRow, account_id)
    assert account is not None
    return platform.ports.vault.open("phone", account.phone_enc)


async def audited(platform: Platform, action: str) -> int:
    async with platform.ports.sessions() as session:
        found = await session.scalar(
            select(func.count()).select_from(AuditRow).where(AuditRow.action == action)
        )
    return int(found or 0)


async def strike_ids(platform: Platform, person_id: str) -> list[str]:
    async with platform.ports.sessions() as session:
        rows = await session.scalars(
            select(StrikeRow.id)
            .where(StrikeRow.person_id == person_id)
            .order_by(StrikeRow.occurred_at)
        )
        return list(rows.all())


async def ban_in_force(platform: Platform, person_id: str) -> str | None:
    async with platform.ports.sessions() as session:
        found = await active_ban(session, person_id, platform.ports.clock.now())
    return None if found is None else f"{found.source}:{found.id}"


async def test_an_admin_finds_a_person_strikes_one_out_and_lifts_the_ban_each_confirmed_first(
    platform: Platform, live_server: str
) -> None:
    person, person_id = await banned_person(platform)
    await staff(platform)
    async with staff_client(live_server, "admin") as (admin, csrf):
        listed = await admin.get("/console/authority/bans")
        assert listed.status_code == 200
        assert person_id[:12] in listed.text
        assert "自动（违约累计）" in listed.text

        before = await audited(platform, "person.find")
        found = await admin.post(
            "/console/authority/persons/lookup",
            data={"csrf": csrf, "document_type": "resident_id", "document_number": person.document},
        )
        assert (found.status_code, found.headers["location"]) == (
            303,
            f"/console/authority/persons/{person_id}",
        )
        assert await audited(platform, "person.find") == before + 1
        account_id, _ = next(iter(person.patients.items()))
        phone = await phone_of(platform, account_id)
        by_phone = await admin.post(
            "/console/authority/persons/lookup", data={"csrf": csrf, "phone": phone}
        )
        assert by_phone.headers["location"] == f"/console/authority/persons/{person_id}"
        relative = Person()
        await relative.of(platform, account_id, relation="child")
        both = await admin.post(
            "/console/authority/persons/lookup", data={"csrf": csrf, "phone": phone}
        )
        assert both.status_code == 200  # the account books for two people: choose
        assert both.text.count('<li><a href="/console/authority/persons/') == 2
        assert phone not in both.text
        assert relative.document not in both.text
        nobody = await admin.post(
            "/console/authority/persons/lookup", data={"csrf": csrf, "phone": "13912345678"}
        )
        assert (nobody.status_code, "PERSON_NOT_FOUND" in nobody.text) == (404, True)
        assert await audited(platform, "person.find") == before + 4
        record = await admin.get(found.headers["location"])
        assert record.status_code == 200
        assert person.document not in record.text  # masked, never the full number
        assert person.document[-4:] in record.text
        assert record.text.count('<li class="card" id="strike-') == 3
        assert "测试医院" in record.text  # where each strike came from
        assert await audited(platform, "person.read") >= 1

        strikes = await strike_ids(platform, person_id)
        ban = await ban_in_force(platform, person_id)
        assert ban is not None
        assert ban.startswith("automatic:")
        form = {"csrf": csrf, "person_id": person_id, "reason": "医院误报爽约"}
        shown = await admin.post(f"/console/authority/strikes/{strikes[0]}/remove", data=form)
        assert shown.status_code == 200
        assert "撤销违约不会解除限制" in shown.text  # what it does to the ban built on it
        assert await strike_ids(platform, person_id) == strikes  # nothing changed yet
        done = await admin.post(
            f"/console/authority/strikes/{strikes[0]}/remove", data={**form, "confirm": "yes"}
        )
        assert done.status_code == 303
        assert await strike_ids(platform, person_id) == strikes[1:]
        assert await ban_in_force(platform, person_id) == ban  # lifting is its own decision
        assert await audited(platform, "strike.remove") == 1

        entry_id = ban.split(":")[1]
        form = {"csrf": csrf, "person_id": person_id, "reason": "复核后解除"}
        shown = await admin.post(f"/console/authority/bans/{entry_id}/lift", data=form)
        assert shown.status_code == 200
        assert "此人立即可以重新预约" in shown.text
        assert await ban_in_force(platform, person_id) == ban
        done = await admin.post(
            f"/console/authority/bans/{entry_id}/lift", data={**form, "confirm": "yes"}
        )
        assert done.status_code == 303
        assert await ban_in_force(platform, person_id) is None
        assert await audited(platform, "ban.lift") == 1

        path = f"/console/authority/persons/{person_id}/ban"
        refused = await admin.post(path, data={"csrf": csrf, "days": "x", "reason": "倒号"})
        assert (refused.status_code, "VALIDATION_FAILED" in refused.text) == (422, True)
        refused = await admin.post(path, data={"csrf": csrf, "days": "30", "reason": " "})
        assert (refused.status_code, "REASON_REQUIRED" in refused.text) == (422, True)
        shown = await admin.post(path, data={"csrf": csrf, "days": "30", "reason": "倒号"})
        assert shown.status_code == 200
        assert "30 天内" in shown.text
        assert await ban_in_force(platform, person_id) is None
        done = await admin.post(
            path, data={"csrf": csrf, "days": "30", "reason": "倒号", "confirm": "yes"}
        )
        assert done.status_code == 303
        manual = await ban_in_force(platform, person_id)
        assert manual is not None
        assert manual.startswith("manual:")
        again = await admin.post(path, data={"csrf": csrf, "days": "30", "reason": "倒号"})
        assert (again.status_code, "BAN_ALREADY_ACTIVE" in again.text) == (409, True)

        history = await admin.get(f"/console/authority/persons/{person_id}")
        assert "复核后解除" in history.text  # the lifted ban's history stays on the record
        everything = await admin.get(f"/console/authority/bans?show=all&person={person_id}")
        assert everything.text.count("<tr><td><a href=") == 2
        for page in (record, shown, history, everything):
            assert person.document not in page.text


async def test_a_rule_change_is_validated_inline_previewed_as_a_diff_then_saved(
    platform: Platform, live_server: str
) -> None:
    await hospitals(platform, "h1")
    await staff(platform)
    async with staff_client(live_server, "admin") as (admin, csrf):
        page = await admin.get("/console/authority/rules")
        assert page.status_code == 200
        assert "limits.per_patient_day" in page.text
        form = {"csrf": csrf, "expected_version": "0", "reason": "节假日加强限号"}

        wrong = await admin.post(
            "/console/authority/rules", data={**form, "changes": "limits.per_patient_day = 0"}
        )
        assert wrong.status_code == 422
        assert "RULES_INVALID" in wrong.text
        assert "规则设置无效" in wrong.text  # the platform's message, beside the form
        assert "limits.per_patient_day = 0</textarea>" in wrong.text  # kept to correct
        unknown = await admin.post(
            "/console/authority/rules", data={**form, "changes": "limits.no_such = 1"}
        )
        assert (unknown.status_code, "no such rule" in unknown.text) == (422, True)
        assert await platform.rules.version() == 0

        change = "limits.perPatientDay = 1\nadd_on_per_session = 3"
        preview = await admin.post("/console/authority/rules", data={**form, "changes": change})
        assert preview.status_code == 200
        assert "<code>add_on_per_session</code></td><td><del>5</del></td><td><ins>3</ins>" in (
            preview.text
        )
        assert await platform.rules.version() == 0
        saved = await admin.post(
            "/console/authority/rules", data={**form, "changes": change, "confirm": "yes"}
        )
        assert (saved.status_code, saved.headers["location"]) == (
            303,
            "/console/authority/rules?saved=1",
        )
        platform.rules.forget()
        assert (await platform.rules.region()).add_on_per_session == 3
        assert await audited(platform, "rules.region_changed") == 1
        page = await admin.get("/console/authority/rules?saved=1")
        assert "已保存为第 1 版" in page.text
        assert "<ins>3</ins>" in page.text  # version 1's diff against the defaults
        assert "节假日加强限号" in page.text

        stale = await admin.post(
            "/console/authority/rules",
            data={**form, "changes": "add_on_per_session = 4", "confirm": "yes"},
        )
        assert (stale.status_code, "RULES_CHANGED_MEANWHILE" in stale.text) == (409, True)
        assert await platform.rules.version() == 1


async def test_the_audit_log_filters_pages_exports_and_shows_whether_its_chain_holds(
    platform: Platform, live_server: str
) -> None:
    await hospitals(platform, "h1")
    await staff(platform)
    person = Person()
    await person.of(platform, await new_account(platform))
    person_id = await person.person_id(platform)
    admin = await staff_of(platform, "admin", "authority_admin", None)
    await platform.blacklist.add_ban(person_id, 30, "倒号", admin)
    async with staff_client(live_server, "auditor") as (auditor, _):
        for _ in range(3):  # each listing of bans is itself an audited read
            await auditor.get("/console/authority/bans")
        page = await auditor.get("/console/authority/audit?actor=auditor&action=ban.list")
        assert page.status_code == 200
        assert "共 3 条" in page.text
        assert "<code>ban.add</code>" not in page.text
        by_subject = await auditor.get(
            f"/console/authority/audit?subjectType=person&subjectId={person_id}"
        )
        assert "<code>ban.add</code>" in by_subject.text
        today = platform.ports.clock.now().date()
        later = f"from={today + timedelta(days=2)}&to={today + timedelta(days=3)}"
        empty = await auditor.get(f"/console/authority/audit?{later}")
        assert "没有符合条件的记录" in empty.text
        as_the_form_sends = await auditor.get("/console/authority/audit?actor=auditor&from=&to=")
        assert (as_the_form_sends.status_code, "共 3 条" in as_the_form_sends.text) == (200, True)
        wrong_day = await auditor.get("/console/authority/audit?from=2026-02-30")
        assert (wrong_day.status_code, "VALIDATION_FAILED" in wrong_day.text) == (422, True)

        exported = await auditor.get(
            "/console/authority/audit/export?format=csv&action=ban.list&actor=auditor"
        )
        assert exported.status_code == 200
        lines = exported.content.decode("utf-8-sig").strip().splitlines()
        assert lines[0].startswith("id,actor,actorRole,action")
        assert len(lines) == 4
        assert await audited(platform, "audit.export") == 1
        xlsx = await auditor.get("/console/authority/audit/export?format=xlsx")
        assert xlsx.content[:2] == b"PK"

        chain = await auditor.get("/console/authority/audit/chain")
        assert chain.status_code == 200
        assert "哈希链完整" in chain.text
        async with platform.ports.sessions() as session, session.begin():
            first = await session.scalar(select(func.min(AuditRow.id)))
            await session.execute(
                update(AuditRow).where(AuditRow.id == first).values(actor="someone-else")
            )
        chain = await auditor.get("/console/authority/audit/chain")
        assert "哈希链已断裂" in chain.text
        assert "第一处断点：第 1 条" in chain.text


PAGES = (
    "/console/authority/bans",
    "/console/authority/bans?show=all&page=2",
    "/console/authority/persons",
    "/console/authority/persons/{person}",
    "/console/authority/rules",
    "/console/authority/audit",
    "/console/authority/audit/chain",
    "/console/authority/audit/export?format=csv",
)
CHANGES = (
    ("/console/authority/persons/{person}/ban", {"days": "30", "reason": "x", "confirm": "yes"}),
    ("/console/authority/bans/{ban}/lift", {"person_id": "{person}", "reason": "x"}),
    (
        "/console/authority/strikes/{strike}/remove",
        {"person_id": "{person}", "reason": "x", "confirm": "yes"},
    ),
    (
        "/console/authority/rules",
        {"changes": "add_on_per_session = 1", "reason": "x", "expected_version": "0"},
    ),
)


@SQLITE_ONLY
async def test_auditors_read_and_never_change_and_hospital_staff_never_see_these_pages(
    platform: Platform, live_server: str
) -> None:
    _, person_id = await banned_person(platform)
    await staff(platform)
    ban = await ban_in_force(platform, person_id)
    assert ban is not None
    names = {
        "person": person_id,
        "ban": ban.split(":")[1],
        "strike": (await strike_ids(platform, person_id))[0],
    }
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as nobody:
        for path in PAGES:
            response = await nobody.get(path.format(**names))
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/console/sign-in?next="), path
    async with (
        staff_client(live_server, "auditor") as (auditor, auditor_csrf),
        staff_client(live_server, "desk") as (desk, desk_csrf),
        staff_client(live_server, "admin") as (admin, _),
    ):
        for path in PAGES:
            seen = await auditor.get(path.format(**names))
            assert seen.status_code == 200, path
            hidden = await desk.get(path.format(**names))
            assert (hidden.status_code, "STAFF_ROLE_REQUIRED" in hidden.text) == (403, True), path
        record = await auditor.get(f"/console/authority/persons/{person_id}")
        assert 'action="/console/authority/strikes/' not in record.text
        assert 'action="/console/authority/bans/' not in record.text
        rules = await auditor.get("/console/authority/rules")
        assert 'name="changes"' not in rules.text
        lookup = await desk.post(
            "/console/authority/persons/lookup",
            data={"csrf": desk_csrf, "document_type": "resident_id", "document_number": "x"},
        )
        assert (lookup.status_code, "STAFF_ROLE_REQUIRED" in lookup.text) == (403, True)
        for path, fields in CHANGES:
            form = {k: v.format(**names) for k, v in fields.items()}
            for client, csrf in ((auditor, auditor_csrf), (desk, desk_csrf)):
                refused = await client.post(path.format(**names), data={"csrf": csrf, **form})
                assert (refused.status_code, "STAFF_ROLE_REQUIRED" in refused.text) == (
                    403,
                    True,
                ), path
            forged = await admin.post(path.format(**names), data=form)  # no CSRF token
            assert (forged.status_code, "CSRF_TOKEN_INVALID" in forged.text) == (403, True), path
    assert await ban_in_force(platform, person_id) == ban
    assert len(await strike_ids(platform, person_id)) == 3
    assert await platform.rules.version() == 0
    assert await audited(platform, "ban.add") == 1  # the automatic one only
