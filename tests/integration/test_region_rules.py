"""The region's rules as versioned data: who changed what, when and why; overrides a hospital
may make for itself; and a change taking effect on the very next booking."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from guahao.bootstrap import Platform
from guahao.platform.errors import GuahaoError
from guahao.platform.persistence.tables import (
    AuditRow,
    HospitalRuleOverrideRow,
    OutboxRow,
    RegionRulesRow,
)
from guahao.platform.region_rules import RegionRules
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.staff import StaffActor
from tests.fixtures.platforms import (
    SESSION_DAY,
    START,
    add_confirmed,
    assert_refused,
    clinic,
    hold,
    manual_clock,
    new_account,
    publish_clinic,
    resident_id,
)
from tests.fixtures.staff import SQLITE_ONLY, hospital_id_of, staff_of


async def stored(platform: Platform) -> dict[str, int]:
    """How many rule versions, rule audit rows and rule events exist."""
    async with platform.ports.sessions() as session:

        async def count(query: Any) -> int:
            return int(await session.scalar(query) or 0)

        return {
            "region": await count(select(func.count()).select_from(RegionRulesRow)),
            "hospital": await count(select(func.count()).select_from(HospitalRuleOverrideRow)),
            "audit": await count(
                select(func.count()).select_from(AuditRow).where(AuditRow.action.like("rules.%"))
            ),
            "events": await count(
                select(func.count())
                .select_from(OutboxRow)
                .where(OutboxRow.topic == "rules.changed")
            ),
        }


@pytest.fixture
async def people(platform: Platform) -> dict[str, StaffActor]:
    """An administrator, an auditor, and the staff of hospitals h1 and h2."""
    await platform.supply.register_hospital(clinic(code="h1"))
    await platform.supply.register_hospital(clinic(code="h2"))
    return {
        "admin": await staff_of(platform, "chief", "authority_admin", None),
        "auditor": await staff_of(platform, "reader", "authority_auditor", None),
        "h1": await staff_of(platform, "nurse1", "hospital_staff", "h1"),
        "h2": await staff_of(platform, "nurse2", "hospital_staff", "h2"),
    }


async def test_each_change_is_a_new_version_with_who_when_and_why_audited_and_announced(
    platform: Platform, people: dict[str, StaffActor]
) -> None:
    admin = people["admin"]
    assert await platform.rules.version() == 0
    clock = manual_clock(platform)
    first = await platform.rules.change_region(
        {"limits": {"per_patient_day": 2}}, staff=admin, reason="号源紧张"
    )
    clock.advance(hours=1)
    second = await platform.rules.change_region(
        {"limits.per_patient_month": 6}, staff=admin, reason="月度上限", expected_version=1
    )

    assert (first, second) == (1, 2)
    assert await platform.rules.version() == 2
    region = await platform.rules.region()
    assert (region.limits.per_patient_day, region.limits.per_patient_month) == (2, 6)
    history = await platform.rules.history()
    assert [(v.version, v.changed_by, v.reason) for v in history] == [
        (2, "chief", "月度上限"),
        (1, "chief", "号源紧张"),
    ]
    assert [v.changed_at for v in history] == [
        START.replace(hour=START.hour + 1).isoformat(),
        START.isoformat(),
    ]
    assert history[1].rules["limits"]["per_patient_day"] == 2
    assert history[1].rules["limits"]["per_patient_month"] == 8  # version 1 kept as it was
    async with platform.ports.sessions() as session:
        audit = (
            await session.scalars(
                select(AuditRow)
                .where(AuditRow.action == "rules.region_changed")
                .order_by(AuditRow.id)
            )
        ).all()
        events = (
            await session.scalars(
                select(OutboxRow.payload)
                .where(OutboxRow.topic == "rules.changed")
                .order_by(OutboxRow.id)
            )
        ).all()
    assert [(a.actor, a.actor_role, a.subject_id) for a in audit] == [
        ("chief", "authority_admin", "1"),
        ("chief", "authority_admin", "2"),
    ]
    assert audit[0].detail["reason"] == "号源紧张"
    assert [(e["scope"], e["version"]) for e in events] == [("region", 1), ("region", 2)]


@SQLITE_ONLY
async def test_a_change_made_on_a_stale_version_is_refused_and_nothing_is_stored(
    platform: Platform, people: dict[str, StaffActor]
) -> None:
    admin = people["admin"]
    await platform.rules.change_region({"add_on_per_session": 3}, staff=admin, reason="a")
    before = await stored(platform)
    with pytest.raises(GuahaoError) as refused:
        await platform.rules.change_region(
            {"add_on_per_session": 4}, staff=admin, reason="b", expected_version=0
        )
    assert refused.value.code == "RULES_CHANGED_MEANWHILE"
    assert refused.value.detail["version"] == 1
    assert await stored(platform) == before
    assert (await platform.rules.region()).add_on_per_session == 3


async def test_two_administrators_saving_the_same_version_at_once_cannot_both_win(
    platform: Platform, people: dict[str, StaffActor]
) -> None:
    admin = people["admin"]
    results = await asyncio.gather(
        *(
            platform.rules.change_region(
                {"add_on_per_session": n}, staff=admin, reason=f"try {n}", expected_version=0
            )
            for n in range(1, 6)
        ),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, int)]
    assert won == [1], results
    assert all(
        isinstance(r, GuahaoError) and r.code == "RULES_CHANGED_MEANWHILE"
        for r in results
        if not isinstance(r, int)
    ), results
    assert (await stored(platform))["region"] == 1


async def test_concurrent_changes_without_an_expected_version_never_share_a_version(
    platform: Platform, people: dict[str, StaffActor]
) -> None:
    admin = people["admin"]
    results = await asyncio.gather(
        *(
            platform.rules.change_region({"add_on_per_session": n}, staff=admin, reason="x")
            for n in range(1, 6)
        ),
        return_exceptions=True,
    )
    won = sorted(r for r in results if isinstance(r, int))
    assert won == list(range(1, len(won) + 1)), results
    for r in results:
        if not isinstance(r, int):
            assert isinstance(r, GuahaoError), r  # never a raw database error
            assert r.code == "RULES_CHANGED_MEANWHILE"
    assert (await stored(platform))["region"] == len(won)

    h1 = await hospital_id_of(platform, "h1")
    results = await asyncio.gather(
        *(
            platform.rules.change_hospital(
                h1, {"add_on_per_session": n}, staff=people["h1"], reason="x"
            )
            for n in range(1, 6)
        ),
        return_exceptions=True,
    )
    won = sorted(r for r in results if isinstance(r, int))
    assert won == list(range(1, len(won) + 1)), results
    for r in results:
        if not isinstance(r, int):
            assert isinstance(r, GuahaoError), r
            assert r.code == "RULES_CHANGED_MEANWHILE"
    assert [v.version for v in await platform.rules.history(h1)] == won[::-1]


INVALID_CHANGES: list[dict[str, Any]] = [
    {"limits": {"per_patient_day": 0}},
    {"limits.per_patient_day": 21},
    {"limits.per_patient_day": "2"},
    {"limits.per_patient_day": True},
    {"add_on_per_session": -1},
    {"limits.no_such_rule": 1},
    {"no_such_section": {"x": 1}},
    {"limits": 3},
    {"rate_limits.hold_per_ip": "lots"},
    {"limits.per_patient_day": 2, "follow_up_valid_days": 31},  # one bad value spoils all
]


async def test_invalid_rules_are_refused_and_nothing_is_stored(
    platform: Platform, people: dict[str, StaffActor]
) -> None:
    for changes in INVALID_CHANGES:
        with pytest.raises(GuahaoError) as refused:
            await platform.rules.change_region(changes, staff=people["admin"], reason="x")
        assert refused.value.code == "RULES_INVALID", changes
    assert await stored(platform) == {"region": 0, "hospital": 0, "audit": 0, "events": 0}
    assert await platform.rules.version() == 0
    assert await platform.rules.region() == RegionRules()


@SQLITE_ONLY
async def test_only_an_administrator_changes_the_regions_rules_and_always_says_why(
    platform: Platform, people: dict[str, StaffActor]
) -> None:
    for who in ("auditor", "h1"):
        with pytest.raises(GuahaoError) as refused:
            await platform.rules.change_region(
                {"add_on_per_session": 1}, staff=people[who], reason="x"
            )
        assert refused.value.code == "STAFF_ROLE_REQUIRED"
    with pytest.raises(GuahaoError) as refused:
        await platform.rules.change_region(
            {"add_on_per_session": 1}, staff=people["admin"], reason=" "
        )
    assert refused.value.code == "VALIDATION_FAILED"
    with pytest.raises(GuahaoError) as refused:
        await platform.rules.change_hospital(
            await hospital_id_of(platform, "h1"),
            {"add_on_per_session": 1},
            staff=people["auditor"],
            reason="x",
        )
    assert refused.value.code == "STAFF_ROLE_REQUIRED"
    assert await stored(platform) == {"region": 0, "hospital": 0, "audit": 0, "events": 0}


@SQLITE_ONLY
async def test_a_hospital_overrides_only_fields_the_region_allows_and_only_its_own(
    platform: Platform, people: dict[str, StaffActor]
) -> None:
    h1 = await hospital_id_of(platform, "h1")
    h2 = await hospital_id_of(platform, "h2")
    for overrides in ({"limits.per_patient_day": 9}, {"identity": {"max_patients_per_account": 9}}):
        with pytest.raises(GuahaoError) as refused:
            await platform.rules.change_hospital(h1, overrides, staff=people["h1"], reason="x")
        assert refused.value.code == "RULE_NOT_OVERRIDABLE"
    with pytest.raises(GuahaoError) as refused:
        await platform.rules.change_hospital(
            h1, {"follow_up_valid_days": 99}, staff=people["h1"], reason="x"
        )
    assert refused.value.code == "RULES_INVALID"
    with pytest.raises(GuahaoError) as refused:
        await platform.rules.change_hospital(
            h1, {"follow_up_valid_days": 3}, staff=people["h2"], reason="x"
        )
    assert refused.value.code == "PERMISSION_DENIED"
    with pytest.raises(GuahaoError) as refused:
        await platform.rules.change_hospital(
            "nope", {"follow_up_valid_days": 3}, staff=people["admin"], reason="x"
        )
    assert refused.value.code == "HOSPITAL_NOT_FOUND"
    assert await stored(platform) == {"region": 0, "hospital": 0, "audit": 0, "events": 0}
    # the authority may set any hospital's
    await platform.rules.change_hospital(
        h2, {"add_on_per_session": 1}, staff=people["admin"], reason="试点"
    )
    assert (await platform.rules.for_hospital(h2)).add_on_per_session == 1


async def test_the_rules_at_a_hospital_are_the_regions_merged_with_its_own_overrides(
    platform: Platform, people: dict[str, StaffActor]
) -> None:
    h1 = await hospital_id_of(platform, "h1")
    h2 = await hospital_id_of(platform, "h2")
    v1 = await platform.rules.change_hospital(
        h1,
        {"follow_up_valid_days": 3, "limits.per_patient_department_day": 2},
        staff=people["h1"],
        reason="复诊",
    )
    await platform.rules.change_region(
        {"limits.per_patient_day": 2}, staff=people["admin"], reason="全区"
    )

    at_h1, at_h2 = await platform.rules.for_hospital(h1), await platform.rules.for_hospital(h2)
    assert (at_h1.follow_up_valid_days, at_h1.limits.per_patient_department_day) == (3, 2)
    assert at_h1.limits.per_patient_day == 2  # the region's later change reaches it too
    assert (at_h2.follow_up_valid_days, at_h2.limits.per_patient_department_day) == (0, 1)
    assert (await platform.rules.region()).follow_up_valid_days == 0

    v2 = await platform.rules.change_hospital(
        h1, {"follow_up_valid_days": 5}, staff=people["h1"], reason="改为5天"
    )
    assert (v1, v2) == (1, 2)
    at_h1 = await platform.rules.for_hospital(h1)
    # overrides are replaced as a whole, not merged with the previous version's
    assert (at_h1.follow_up_valid_days, at_h1.limits.per_patient_department_day) == (5, 1)
    history = await platform.rules.history(h1)
    assert [(v.version, v.scope, v.rules, v.reason) for v in history] == [
        (2, h1, {"follow_up_valid_days": 5}, "改为5天"),
        (1, h1, {"follow_up_valid_days": 3, "limits.per_patient_department_day": 2}, "复诊"),
    ]
    assert await platform.rules.history(h2) == []
    assert [v.version for v in await platform.rules.history()] == [1]


@SQLITE_ONLY
async def test_an_override_the_region_stops_allowing_is_no_longer_in_force(
    platform: Platform, people: dict[str, StaffActor]
) -> None:
    h1 = await hospital_id_of(platform, "h1")
    await platform.rules.change_hospital(
        h1, {"follow_up_valid_days": 7}, staff=people["h1"], reason="x"
    )
    await platform.rules.change_region(
        {"hospital_overridable": ["add_on_per_session"]}, staff=people["admin"], reason="收紧"
    )
    assert (await platform.rules.for_hospital(h1)).follow_up_valid_days == 0


async def test_a_nested_hospital_override_is_in_force_like_a_dotted_one(
    platform: Platform, people: dict[str, StaffActor]
) -> None:
    h1 = await hospital_id_of(platform, "h1")
    await platform.rules.change_hospital(
        h1, {"limits": {"per_patient_department_day": 2}}, staff=people["h1"], reason="x"
    )
    assert (await platform.rules.for_hospital(h1)).limits.per_patient_department_day == 2


async def test_a_changed_limit_takes_effect_on_the_next_booking(
    platform: Platform, people: dict[str, StaffActor]
) -> None:
    """One person, two accounts, two hospitals the same day: lowering ``per_patient_day`` to
    one refuses the second booking at once; raising it again admits it."""
    await publish_clinic(platform, clinic(code="h3"))
    await publish_clinic(platform, clinic(code="h4"))
    at_h3 = await first_slot_at(platform, "h3")
    at_h4 = await first_slot_at(platform, "h4")
    number = resident_id(99)
    mother, father = await new_account(platform), await new_account(platform)
    patients = [
        (
            await add_confirmed(
                platform,
                account,
                name="张小三",
                document_type="resident_id",
                document_number=number,
                relation="other",
            )
        ).id
        for account in (mother, father)
    ]
    first = await hold(platform, mother, at_h3)
    await platform.bookings.choose_patient(
        account_id=mother, booking_id=first.id, patient_id=patients[0]
    )
    second = await hold(platform, father, at_h4)

    await platform.rules.change_region(
        {"limits.per_patient_day": 1}, staff=people["admin"], reason="收紧"
    )

    error = await assert_refused(
        platform,
        "LIMIT_PATIENT_DAY",
        platform.bookings.choose_patient(
            account_id=father, booking_id=second.id, patient_id=patients[1]
        ),
    )
    assert error.detail["limit"] == 1

    await platform.rules.change_region(
        {"limits.per_patient_day": 2}, staff=people["admin"], reason="放宽"
    )
    chosen = await platform.bookings.choose_patient(
        account_id=father, booking_id=second.id, patient_id=patients[1]
    )
    assert chosen.patient_id == patients[1]


async def first_slot_at(platform: Platform, code: str) -> str:
    """The first slot, in time order, of the hospital ``code`` on SESSION_DAY."""
    from guahao.platform.persistence.tables import SessionRow, SlotRow

    hospital_id = await hospital_id_of(platform, code)
    async with platform.ports.sessions() as session:
        found = await session.scalar(
            select(SlotRow.id)
            .join(SessionRow, SessionRow.id == SlotRow.session_id)
            .where(SessionRow.hospital_id == hospital_id, SessionRow.date == SESSION_DAY)
            .order_by(SlotRow.starts_at)
            .limit(1)
        )
    assert found is not None
    return found


async def test_a_process_keeps_the_rules_of_a_bounded_number_of_hospitals(
    sqlite_platform: Platform,
) -> None:
    rules = RuleBook(sqlite_platform.ports, hospital_memory=2)
    for hospital_id in ("h-a", "h-b", "h-c"):
        assert await rules.for_hospital(hospital_id) == await rules.region()
    assert rules.remembered_hospitals == 2
