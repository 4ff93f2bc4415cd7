"""The authority's figures against values computed by hand on a small constructed region.

Two hospitals of one specialty (心内科, catalog 03.04) on Wednesday ``SESSION_DAY``:

- 朝阳医院 (h1, 朝阳区): four 60-minute segments of 4 units, three online and one on site
  each (16 released, 12 online, 4 on site), released at 08:00. Three bookings: one
  cancelled by the patient, one checked in, one a no-show; a fourth hold never completed;
  one add-on unit given by the hospital's staff.
- 海淀医院 (h2, 海淀区): eight 30-minute segments of 1 unit, all online (8 released, none on
  site), released at midnight. All eight booked; then three other accounts are refused
  ``SLOT_SOLD_OUT`` (one of them twice) and a ninth patient joins the session's waitlist.

Everything runs through the real services, the outbox and the sweep's fold.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import msgspec
import pytest
from sqlalchemy import func, select

from guahao.bootstrap import Platform
from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import PaymentMode, QuotaPolicy, ReleasePolicy
from guahao.platform.persistence.tables import (
    AuditRow,
    BookingRow,
    HospitalRow,
    PatientRow,
    SessionRow,
    SlotRow,
    SupplyDemandAreaRow,
    SupplyDemandDayRow,
    SupplyDemandHospitalRow,
)
from guahao.platform.personal_data import patient_name
from guahao.platform.schedules import HospitalSpec
from guahao.platform.services.authority_figures import FigureScope
from guahao.platform.services.supply_demand import ROLLUP_SUBSCRIBER
from tests.fixtures.platforms import (
    SESSION_DAY,
    at_local,
    bulk_accounts,
    clinic,
    manual_clock,
    new_patient,
)
from tests.fixtures.staff import staff_of

DAY = SESSION_DAY
SCOPE = FigureScope(date_from=DAY - timedelta(days=3), date_to=DAY + timedelta(days=3))


def chaoyang() -> HospitalSpec:
    base = clinic(PaymentMode.PAY_AT_HOSPITAL, units=4, code="h1")
    roster = tuple(msgspec.structs.replace(r, segment_minutes=60) for r in base.roster)
    policies = msgspec.structs.replace(base.policies, quota=QuotaPolicy(online_share=0.75))
    return msgspec.structs.replace(
        base, name="朝阳医院", district="朝阳区", policies=policies, roster=roster
    )


def haidian() -> HospitalSpec:
    base = clinic(PaymentMode.PAY_AT_HOSPITAL, units=1, code="h2")
    policies = msgspec.structs.replace(
        base.policies,
        quota=QuotaPolicy(online_share=1.0),
        release=ReleasePolicy(days_ahead=7, at="00:00"),
    )
    return msgspec.structs.replace(base, name="海淀医院", district="海淀区", policies=policies)


async def publish(platform: Platform, spec: HospitalSpec, days: int = 7) -> None:
    await platform.supply.register_hospital(spec)
    first = DAY - timedelta(days=2)
    await platform.supply.publish_sessions(
        platform.supply.sessions_from_roster(spec, [first + timedelta(days=i) for i in range(days)])
    )


async def slots_of(platform: Platform, code: str, day: date = DAY) -> list[str]:
    async with platform.ports.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(SlotRow.id)
                    .join(SessionRow, SessionRow.id == SlotRow.session_id)
                    .join(HospitalRow, HospitalRow.id == SessionRow.hospital_id)
                    .where(HospitalRow.code == code, SessionRow.date == day)
                    .order_by(SlotRow.starts_at)
                )
            ).all()
        )


async def session_on(platform: Platform, code: str, day: date = DAY) -> str:
    async with platform.ports.sessions() as session:
        found = await session.scalar(
            select(SessionRow.id)
            .join(HospitalRow, HospitalRow.id == SessionRow.hospital_id)
            .where(HospitalRow.code == code, SessionRow.date == day)
        )
    assert found is not None
    return found


async def hold(platform: Platform, account_id: str, slot_id: str) -> str:
    booking = await platform.bookings.hold(
        account_id=account_id, slot_id=slot_id, idempotency_key=uuid.uuid4().hex
    )
    return booking.id


async def book(platform: Platform, account_id: str, slot_id: str) -> tuple[str, str]:
    """A confirmed booking (paid at the hospital); returns (booking id, patient id)."""
    patient_id = await new_patient(platform, account_id)
    booking_id = await hold(platform, account_id, slot_id)
    await platform.bookings.choose_patient(
        account_id=account_id, booking_id=booking_id, patient_id=patient_id
    )
    await platform.bookings.submit(account_id=account_id, booking_id=booking_id, channel="self_pay")
    return booking_id, patient_id


async def deliver(platform: Platform) -> None:
    for _ in range(20):
        if not await platform.dispatcher.dispatch_pending():
            break


async def build_region(platform: Platform) -> dict[str, str]:
    """The constructed region above; returns the names and numbers a leak would show."""
    clock = manual_clock(platform)
    await publish(platform, chaoyang())
    await publish(platform, haidian())
    accounts = await bulk_accounts(platform, 16)
    h1 = await slots_of(platform, "h1")
    h2 = await slots_of(platform, "h2")
    assert (len(h1), len(h2)) == (4, 8)

    cancelled, _ = await book(platform, accounts[0], h1[0])
    checked_in, _ = await book(platform, accounts[1], h1[1])
    await book(platform, accounts[2], h1[2])  # will be a no-show
    await hold(platform, accounts[3], h1[3])  # never completed: not a booking
    await platform.bookings.cancel(account_id=accounts[0], booking_id=cancelled)
    add_on_patient = await new_patient(platform, accounts[4], name="赵六")
    staff = await staff_of(platform, "desk1", "hospital_staff", "h1")
    await platform.add_on_units.add(
        staff=staff,
        session_id=await session_on(platform, "h1"),
        patient_id=add_on_patient,
        reason="复诊病情需要",
    )

    for i, slot_id in enumerate(h2):
        await book(platform, accounts[5 + i], slot_id)
    for account_id in (accounts[13], accounts[14], accounts[15], accounts[15]):
        with pytest.raises(GuahaoError) as refused:
            await hold(platform, account_id, h2[0])
        assert refused.value.code == "SLOT_SOLD_OUT"
    waiting = await new_patient(platform, accounts[13], name="钱七")
    await platform.waitlist.join(
        account_id=accounts[13],
        patient_id=waiting,
        scope="session",
        session_id=await session_on(platform, "h2"),
    )

    clock.set(at_local(DAY, 9, 30))
    await platform.bookings.check_in(checked_in)
    clock.set(at_local(DAY, 19))
    await platform.bookings.mark_no_shows(await session_on(platform, "h1"))
    assert platform.ports.refused_demand is not None
    await platform.ports.refused_demand.flush()
    await deliver(platform)
    assert await platform.rollups.fold_refusals() == 1
    return {"add_on_patient": add_on_patient, "waiting_patient": waiting}


async def rollup_rows(platform: Platform) -> dict[str, SupplyDemandDayRow]:
    async with platform.ports.sessions() as session:
        rows = (
            await session.execute(
                select(HospitalRow.code, SupplyDemandDayRow).join(
                    HospitalRow, HospitalRow.id == SupplyDemandDayRow.hospital_id
                )
            )
        ).all()
    return {code: row for code, row in rows}


def counts(row: SupplyDemandDayRow) -> dict[str, object]:
    """A row's figures: every column but its keys to other tables and its timestamp."""
    skipped = {"department_id", "hospital_id", "updated_at"}
    return {
        c.name: getattr(row, c.name)
        for c in SupplyDemandDayRow.__table__.columns
        if c.name not in skipped
    }


H1_ROW = {
    "day": DAY,
    "district": "朝阳区",
    "catalog_code": "03.04",
    "sessions": 1,
    "released": 16,
    "online_released": 12,
    "offline_released": 4,
    "booked": 3,
    "cancelled": 1,
    "no_shows": 1,
    "checked_in": 1,
    "add_on_units": 1,
    "add_on_untraced": 0,
    "refused": 0,
    "waitlist_joined": 0,
    "waitlist_served": 0,
    "waitlist_unserved": 0,
    "waitlist_waiting": 0,
    "max_segment_minutes": 60,
    "midnight_releases": 0,
}
H2_ROW = {
    **H1_ROW,
    "district": "海淀区",
    "released": 8,
    "online_released": 8,
    "offline_released": 0,
    "booked": 8,
    "cancelled": 0,
    "no_shows": 0,
    "checked_in": 0,
    "add_on_units": 0,
    "refused": 3,
    "waitlist_joined": 1,
    "waitlist_waiting": 1,
    "max_segment_minutes": 30,
    "midnight_releases": 1,
}


async def test_rollups_from_the_outbox_match_the_hand_counts(platform: Platform) -> None:
    await build_region(platform)
    rows = await rollup_rows(platform)
    assert counts(rows["h1"]) == H1_ROW
    assert counts(rows["h2"]) == H2_ROW
    assert ROLLUP_SUBSCRIBER in platform.dispatcher.subscribers


async def figures_of(platform: Platform) -> bytes:
    """Every figure the region's and the hospitals' rollups feed, as one document."""
    admin = await staff_of(platform, "admin", "authority_admin", None)
    return msgspec.json.encode(
        [
            await platform.figures.supply_demand(admin, SCOPE),
            await platform.figures.rankings(admin, DAY),
            await platform.figures.compliance(admin, SCOPE),
        ]
    )


async def test_redelivered_events_and_a_rebuild_change_nothing(platform: Platform) -> None:
    await build_region(platform)
    before = {k: counts(v) for k, v in (await rollup_rows(platform)).items()}
    shown = await figures_of(platform)
    async with platform.ports.sessions() as session, session.begin():
        from guahao.platform.persistence.connector_tables import OutboxCursorRow

        cursor = await session.get(OutboxCursorRow, ROLLUP_SUBSCRIBER)
        assert cursor is not None
        cursor.position = 0  # at-least-once: every event delivered a second time
    await deliver(platform)
    assert {k: counts(v) for k, v in (await rollup_rows(platform)).items()} == before
    assert await figures_of(platform) == shown
    async with platform.ports.sessions() as session, session.begin():
        for table in (SupplyDemandDayRow, SupplyDemandAreaRow, SupplyDemandHospitalRow):
            await session.execute(table.__table__.delete())
    assert await platform.rollups.rebuild() == 2
    assert {k: counts(v) for k, v in (await rollup_rows(platform)).items()} == before
    assert await figures_of(platform) == shown
    assert await platform.rollups.fold_refusals() == 0  # nothing new refused


async def test_supply_and_demand_by_district_specialty_and_day(platform: Platform) -> None:
    await build_region(platform)
    admin = await staff_of(platform, "admin", "authority_admin", None)
    lines = {f.district: f for f in await platform.figures.supply_demand(admin, SCOPE)}
    assert set(lines) == {"朝阳区", "海淀区"}
    h1, h2 = lines["朝阳区"], lines["海淀区"]
    assert (h1.day, h1.catalog_code, h1.hospitals, h1.departments) == (DAY, "03.04", 1, 1)
    assert (h1.released, h1.online_released, h1.booked) == (16, 12, 3)
    assert h1.booking_rate == 0.25  # 3 / 12
    assert h1.online_share == 0.75  # 12 / 16
    assert h1.utilisation == 0.1667  # (3 - 1) / 12
    assert h1.no_show_rate == 0.5  # 1 / (3 - 1)
    assert h1.cancellation_rate == 0.3333  # 1 / 3
    assert (h1.refused, h1.waitlist_length, h1.unmet_demand) == (0, 0, 0)
    assert (h2.booking_rate, h2.online_share, h2.utilisation) == (1.0, 1.0, 1.0)
    assert (h2.no_show_rate, h2.cancellation_rate) == (0.0, 0.0)
    assert (h2.refused, h2.waitlist_length, h2.unmet_demand) == (3, 1, 3)
    only_haidian = msgspec.structs.replace(SCOPE, district="海淀区")
    assert [f.district for f in await platform.figures.supply_demand(admin, only_haidian)] == [
        "海淀区"
    ]


async def test_monthly_rankings_and_compliance(platform: Platform) -> None:
    await build_region(platform)
    auditor = await staff_of(platform, "auditor", "authority_auditor", None)
    ranked = await platform.figures.rankings(auditor, DAY)
    assert [(r.rank, r.hospital_name) for r in ranked] == [(1, "海淀医院"), (2, "朝阳医院")]
    assert (ranked[0].release_rate, ranked[0].booking_rate, ranked[0].booking_ratio) == (
        1.0,
        1.0,
        1.0,
    )
    assert (ranked[1].release_rate, ranked[1].booking_rate, ranked[1].booking_ratio) == (
        0.75,  # 12 / 16
        0.25,  # 3 / 12
        0.1875,  # 3 / 16
    )
    checks = {
        c.hospital_name: {k.rule: k.passed for k in c.checks}
        for c in await platform.figures.compliance(auditor, SCOPE)
    }
    assert checks["朝阳医院"] == {
        "segment_minutes": False,  # 60-minute segments
        "online_share": True,
        "midnight_releases": True,
        "onsite_quota": True,
        "add_on_traceable": True,
    }
    assert checks["海淀医院"] == {
        "segment_minutes": True,
        "online_share": True,
        "midnight_releases": False,  # released at 00:00
        "onsite_quota": False,  # nothing kept on site
        "add_on_traceable": True,
    }


async def test_unmet_demand_suggests_more_online_units_and_nearby_hospitals(
    platform: Platform,
) -> None:
    await build_region(platform)
    # alternatives are units free now: 朝阳医院's next Wednesday, released on SESSION_DAY
    await publish(platform, chaoyang(), days=14)
    manual_clock(platform).set(at_local(DAY + timedelta(days=1), 9))
    await platform.search.indexer.reindex()
    admin = await staff_of(platform, "admin", "authority_admin", None)
    (line,) = await platform.figures.unmet_demand(admin, SCOPE)
    assert (line.hospital_name, line.refused, line.waitlist_unserved) == ("海淀医院", 3, 0)
    assert (line.days, line.unmet_demand, line.suggested_more_online_per_day) == (1, 3, 3)
    assert line.of_which_from_onsite_per_day == 0  # nothing on site to move
    assert [n.hospital_name for n in line.nearby] == ["朝阳医院"]


async def test_hospital_staff_see_only_their_hospital(platform: Platform) -> None:
    await build_region(platform)
    desk = await staff_of(platform, "desk", "hospital_staff", "h1")
    lines = await platform.figures.supply_demand(desk, SCOPE)
    assert [f.district for f in lines] == ["朝阳区"]
    assert [r.hospital_name for r in await platform.figures.rankings(desk, DAY)] == ["朝阳医院"]
    assert [c.hospital_name for c in await platform.figures.compliance(desk, SCOPE)] == ["朝阳医院"]
    assert await platform.figures.unmet_demand(desk, SCOPE) == []
    async with platform.ports.sessions() as session:
        other = await session.scalar(select(HospitalRow.id).where(HospitalRow.code == "h2"))
    with pytest.raises(GuahaoError) as denied:
        await platform.figures.supply_demand(
            desk, msgspec.structs.replace(SCOPE, hospital_id=other)
        )
    assert denied.value.code == "HOSPITAL_SCOPE_DENIED"


async def test_figures_carry_no_personal_data_and_read_nothing_audited(
    platform: Platform,
) -> None:
    leaks = await build_region(platform)
    await platform.rollups.measure_access()
    admin = await staff_of(platform, "admin", "authority_admin", None)
    async with platform.ports.sessions() as session:
        audited = await session.scalar(select(func.count()).select_from(AuditRow))
        personal = [
            str(value)
            for row in (
                await session.execute(
                    select(
                        PatientRow.id,
                        PatientRow.account_id,
                        PatientRow.person_id,
                        PatientRow.document_masked,
                    )
                )
            ).all()
            for value in row
        ]
        personal += [
            patient_name(platform.ports.vault, row)
            for row in (await session.scalars(select(PatientRow))).all()
        ]
        personal += list((await session.scalars(select(BookingRow.id))).all())
    figures = [
        await platform.figures.supply_demand(admin, SCOPE),
        await platform.figures.access(admin, SCOPE),
        await platform.figures.rankings(admin, DAY),
        await platform.figures.compliance(admin, SCOPE),
        await platform.figures.unmet_demand(admin, SCOPE),
    ]
    text = msgspec.json.encode(figures).decode()
    for value in [*personal, *leaks.values(), "赵六", "钱七", "张三"]:
        assert value not in text
    async with platform.ports.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AuditRow)) == audited


@pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
async def test_a_reversed_period_is_refused(platform: Platform) -> None:
    admin = await staff_of(platform, "admin", "authority_admin", None)
    with pytest.raises(GuahaoError) as refused:
        await platform.figures.supply_demand(
            admin, FigureScope(date_from=DAY, date_to=DAY - timedelta(days=1))
        )
    assert refused.value.code == "FIGURES_RANGE_INVALID"
