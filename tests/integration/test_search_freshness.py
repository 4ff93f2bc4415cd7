"""Freshness: availability in the index follows the platform's events and its clock.

Every step here goes through the real services (holds, payments, cancellations, the outbox
dispatcher, the sweep's refresh); the index is asked exactly what a citizen would ask.
"""

from __future__ import annotations

from datetime import date, timedelta

from guahao.bootstrap import Platform
from guahao.platform.hospitals import HospitalGrade
from guahao.platform.persistence.outbox import OutboxEvent
from guahao.platform.schedules import DepartmentSpec, DoctorSpec, HospitalSpec
from guahao.search.query import SearchFilters, SearchQuery, SearchResult
from tests.fixtures.platforms import (
    SESSION_DAY,
    START,
    at_local,
    clinic,
    confirmed_booking,
    hold,
    manual_clock,
    new_account,
    publish_clinic,
)


async def free_doctors(platform: Platform, q: str = "", within_days: int = 7) -> SearchResult:
    """Doctors matching ``q`` with a free unit today or in the next ``within_days - 1`` days."""
    return await platform.search.search(
        SearchQuery(q=q, filters=SearchFilters(kind=("doctor",), within_days=within_days))
    )


def other_clinic(code: str, district: str, doctor: str) -> HospitalSpec:
    """Another hospital with a cardiology department (catalog 03.04) in ``district``."""
    spec = clinic(code=code)
    return HospitalSpec(
        code=code,
        name=f"{district}医院",
        grade=HospitalGrade.GRADE_2A,
        district=district,
        policies=spec.policies,
        departments=(DepartmentSpec(code="xxgnk", name="心血管内科", catalog_code="03.04"),),
        doctors=(
            DoctorSpec(
                code="d1", name=doctor, title=spec.doctors[0].title, department_code="xxgnk"
            ),
        ),
        roster=spec.roster,
    )


async def doctor_id(platform: Platform, name: str) -> str:
    result = await platform.search.search(
        SearchQuery(q=name, filters=SearchFilters(kind=("doctor",)))
    )
    return result.hits[0].id


async def test_a_booking_that_fills_the_week_removes_the_doctor_from_the_availability_filter(
    sqlite_platform: Platform,
) -> None:
    p = sqlite_platform
    slots = await publish_clinic(p, clinic(units=1))
    await p.search.reindex()
    before = await free_doctors(p, "王伟")
    assert [h.name for h in before.hits] == ["王伟"]
    assert before.hits[0].free_units_7d == len(slots)
    for slot_id in slots:
        await confirmed_booking(p, slot_id)
    # the job worker runs this every 2 s; one round brings the index up to date
    await p.dispatcher.dispatch_pending()
    assert (await free_doctors(p, "王伟")).total == 0
    full = await p.search.search(SearchQuery(q="王伟"))
    assert full.hits[0].free_units_7d == 0
    assert full.hits[0].next_available_date is None


async def test_a_hold_takes_a_unit_and_its_end_gives_it_back(sqlite_platform: Platform) -> None:
    p = sqlite_platform
    slots = await publish_clinic(p, clinic(units=1))
    await p.search.reindex()
    account = await new_account(p)
    booking = await hold(p, account, slots[0])
    await p.dispatcher.dispatch_pending()
    assert (await free_doctors(p, "王伟")).hits[0].free_units_7d == len(slots) - 1
    await p.bookings.leave(account_id=account, booking_id=booking.id)
    await p.dispatcher.dispatch_pending()
    assert (await free_doctors(p, "王伟")).hits[0].free_units_7d == len(slots)


async def test_a_cancelled_unit_comes_back_when_its_return_delay_ends(
    sqlite_platform: Platform,
) -> None:
    p = sqlite_platform
    slots = await publish_clinic(p, clinic(units=1))
    await p.search.reindex()
    account, booking_id, _ = await confirmed_booking(p, slots[0])
    await p.dispatcher.dispatch_pending()
    assert (await free_doctors(p, "王伟")).hits[0].free_units_7d == len(slots) - 1
    await p.bookings.cancel(account_id=account, booking_id=booking_id)
    await p.dispatcher.dispatch_pending()
    assert (await free_doctors(p, "王伟")).hits[0].free_units_7d == len(slots) - 1  # returning
    manual_clock(p).advance(seconds=121)  # past the randomised return delay (60-120 s)
    await p.search.refresh_due()
    assert (await free_doctors(p, "王伟")).hits[0].free_units_7d == len(slots)


async def test_units_appear_at_their_release_time_without_an_event(
    sqlite_platform: Platform,
) -> None:
    p = sqlite_platform
    spec = clinic(units=1)
    await p.supply.register_hospital(spec)
    next_week = SESSION_DAY + timedelta(days=7)  # released 7 days ahead at 08:00
    await p.supply.publish_sessions(p.supply.sessions_from_roster(spec, [next_week]))
    await p.search.reindex()
    result = await free_doctors(p, "王伟", within_days=14)
    assert result.total == 0
    listed = await p.search.search(SearchQuery(q="王伟"))
    assert listed.hits[0].next_release_at == at_local(next_week - timedelta(days=7), 8)
    manual_clock(p).set(at_local(next_week - timedelta(days=7), 8, 1))
    await p.search.refresh_due()
    result = await free_doctors(p, "王伟", within_days=14)
    assert [h.name for h in result.hits] == ["王伟"]
    assert result.hits[0].next_available_date == next_week


async def test_redelivered_events_change_nothing(sqlite_platform: Platform) -> None:
    p = sqlite_platform
    slots = await publish_clinic(p, clinic(units=1))
    await p.search.reindex()
    await confirmed_booking(p, slots[0])
    await p.dispatcher.dispatch_pending()
    once = await p.search.search(SearchQuery(q="王伟"))
    doctor = once.hits[0].id
    event = OutboxEvent(
        id=1,
        topic="booking.confirmed",
        aggregate_id="b",
        payload={"doctor_id": doctor},
        created_at=START,
    )
    await p.search.indexer.handle(event)
    await p.search.indexer.handle(event)
    again = await p.search.search(SearchQuery(q="王伟"))
    assert again.hits == once.hits
    # events of things search does not know are ignored, not failed
    await p.search.indexer.handle(
        OutboxEvent(
            id=2,
            topic="booking.held",
            aggregate_id="x",
            payload={"session_id": "nope"},
            created_at=START,
        )
    )
    await p.search.indexer.handle(
        OutboxEvent(id=3, topic="account.created", aggregate_id="x", payload={}, created_at=START)
    )


async def test_a_new_hospital_is_searchable_after_its_event(sqlite_platform: Platform) -> None:
    p = sqlite_platform
    await publish_clinic(p, clinic(units=1))
    await p.search.reindex()
    await p.supply.register_hospital(other_clinic("h2", "兴华区", "李娜"))
    assert (await p.search.search(SearchQuery(q="李娜"))).total == 0
    await p.dispatcher.dispatch_pending()
    assert [h.name for h in (await p.search.search(SearchQuery(q="lina"))).hits] == ["李娜"]


async def test_a_full_doctor_gets_alternatives_nearest_district_first(
    sqlite_platform: Platform,
) -> None:
    p = sqlite_platform
    slots = await publish_clinic(p, clinic(units=1))  # 王伟, 朝阳区
    days = [SESSION_DAY - timedelta(days=2) + timedelta(days=i) for i in range(7)]
    for code, district, name in (("far", "六合区", "赵敏"), ("near", "兴华区", "李娜")):
        spec = other_clinic(code, district, name)
        await p.supply.register_hospital(spec)
        await p.supply.publish_sessions(p.supply.sessions_from_roster(spec, days))
    await p.search.reindex()
    wang = await doctor_id(p, "王伟")
    assert (await p.search.alternatives(wang)).full is False
    for slot_id in slots:
        await confirmed_booking(p, slot_id)
    await p.dispatcher.dispatch_pending()
    found = await p.search.alternatives(wang)
    assert found.full is True
    assert [a.department.district for a in found.alternatives] == ["兴华区", "六合区"]
    assert [a.doctors[0].name for a in found.alternatives] == ["李娜", "赵敏"]
    assert found.alternatives[0].distance_km is not None
    assert found.alternatives[0].department.next_available_date == SESSION_DAY


async def test_the_sweep_refresh_is_quiet_when_nothing_is_due(sqlite_platform: Platform) -> None:
    p = sqlite_platform
    await publish_clinic(p, clinic(units=1))
    await p.search.reindex()
    manual_clock(p).set(at_local(date(2026, 3, 2), 9, 30))
    assert await p.search.refresh_due() == 0


async def test_midnight_rebuilds_the_index_so_the_seven_day_window_moves(
    sqlite_platform: Platform,
) -> None:
    p = sqlite_platform
    slots = await publish_clinic(p, clinic(units=1))  # sessions on Wednesday 4 March
    await p.search.reindex()
    assert (await free_doctors(p, "王伟", within_days=3)).total == 1  # Mon, Tue, Wed
    manual_clock(p).set(at_local(SESSION_DAY, 0, 5))  # Wednesday, just after midnight
    assert await p.search.refresh_due() == 3  # hospital, department, doctor rebuilt
    hit = (await free_doctors(p, "王伟", within_days=1)).hits[0]
    assert hit.next_available_date == SESSION_DAY
    assert hit.free_units_7d == len(slots)
