"""A department's own online/offline split and release policy: set by its hospital's staff
within the region's bounds, versioned and audited, used when slots are generated and when the
hospital changes a capacity, and applied to the department's sessions not yet released (never
to released ones)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from guahao.bootstrap import Platform
from guahao.platform.department_policies import DepartmentPolicy
from guahao.platform.errors import GuahaoError
from guahao.platform.persistence.tables import AuditRow, SessionRow, SlotRow
from guahao.platform.services.department_policies import DepartmentPolicyChange
from tests.fixtures.platforms import (
    SESSION_DAY,
    assert_refused,
    at_local,
    clinic,
    counts,
    publish_clinic,
)
from tests.fixtures.staff import staff_of

LATER_DAY = SESSION_DAY + timedelta(days=14)  # released 2026-03-11, after the clock's now


async def department_of(platform: Platform) -> str:
    (line,) = await platform.department_policies.lines(
        await staff_of(platform, "desk", "hospital_staff", "h1")
    )
    return line.department_id


async def slots_of_day(platform: Platform, day: object) -> list[SlotRow]:
    async with platform.ports.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(SlotRow)
                    .join(SessionRow, SessionRow.id == SlotRow.session_id)
                    .where(SessionRow.date == day)
                    .order_by(SlotRow.seq)
                )
            ).all()
        )


async def test_a_departments_split_is_used_for_slots_published_and_capacities_changed_after(
    platform: Platform,
) -> None:
    await platform.supply.register_hospital(clinic(units=4))  # the hospital: 100 % online
    desk = await staff_of(platform, "desk", "hospital_staff", "h1")
    department_id = await department_of(platform)
    await platform.department_policies.change(
        desk,
        department_id,
        DepartmentPolicy(online_share=0.5, offline_first_segments=1),
        expected_version=0,
        reason="walk-in patients",
    )
    slots = await publish_clinic(platform, clinic(units=4))

    rows = await slots_of_day(platform, SESSION_DAY)
    assert [(r.online_quota, r.offline_quota) for r in rows[:3]] == [(0, 4), (2, 2), (2, 2)]
    assert (await counts(platform, slots[1])).capacity == 2  # the hot pool agrees
    assert await platform.feed.set_slot_capacity(slots[1], 6) == 3


async def test_a_change_moves_sessions_not_yet_released_and_leaves_released_ones(
    platform: Platform,
) -> None:
    spec = clinic(units=4)
    await publish_clinic(platform, spec)
    await platform.supply.publish_sessions(platform.supply.sessions_from_roster(spec, [LATER_DAY]))
    desk = await staff_of(platform, "desk", "hospital_staff", "h1")
    department_id = await department_of(platform)
    released_before = [
        (r.online_quota, r.release_at) for r in await slots_of_day(platform, SESSION_DAY)
    ]

    change = await platform.department_policies.change(
        desk,
        department_id,
        DepartmentPolicy(online_share=0.75, days_ahead=3, release_at="09:30"),
        expected_version=0,
        reason="release closer to the day",
    )

    assert (change.version, change.sessions_updated) == (1, 1)
    released = await slots_of_day(platform, SESSION_DAY)
    assert [(r.online_quota, r.release_at) for r in released] == released_before
    later = await slots_of_day(platform, LATER_DAY)
    new_release = at_local(LATER_DAY - timedelta(days=3), 9, 30)
    assert {(r.online_quota, r.offline_quota, r.release_at) for r in later} == {(3, 1, new_release)}
    async with platform.ports.sessions() as session:
        sess = await session.scalar(select(SessionRow).where(SessionRow.date == LATER_DAY))
    assert sess is not None
    assert sess.release_at == new_release
    pool = await counts(platform, later[0].id)
    assert (pool.capacity, pool.release_at_ms) == (3, int(new_release.timestamp() * 1000))

    (line,) = await platform.department_policies.lines(desk)
    assert (line.version, line.online_share, line.days_ahead, line.release_at) == (
        1,
        0.75,
        3,
        "09:30",
    )
    assert line.offline_first_segments == 0  # not set: the hospital's
    (version,) = await platform.department_policies.history(desk)
    assert (version.before, version.after.online_share, version.changed_by) == (
        DepartmentPolicy(),
        0.75,
        "desk",
    )
    async with platform.ports.sessions() as session:
        audit = (
            await session.scalars(
                select(AuditRow).where(AuditRow.action == "console.department_policy.change")
            )
        ).all()
    assert [(a.actor, a.subject_id) for a in audit] == [("desk", department_id)]

    # back to the hospital's policy: the unreleased session follows it again
    await platform.department_policies.change(
        desk, department_id, DepartmentPolicy(), expected_version=1, reason="undo"
    )
    later = await slots_of_day(platform, LATER_DAY)
    assert {(r.online_quota, r.release_at) for r in later} == {
        (4, at_local(LATER_DAY - timedelta(days=7), 8))
    }


async def test_a_department_cannot_leave_the_regions_bounds_or_overwrite_a_newer_version(
    platform: Platform,
) -> None:
    await publish_clinic(platform)
    desk = await staff_of(platform, "desk", "hospital_staff", "h1")
    department_id = await department_of(platform)
    service = platform.department_policies

    def change(policy: DepartmentPolicy, version: int = 0) -> object:
        return service.change(desk, department_id, policy, expected_version=version, reason="r")

    refused = await assert_refused(
        platform, "DEPARTMENT_POLICY_OUT_OF_BOUNDS", change(DepartmentPolicy(online_share=0.95))
    )
    assert refused.detail == {"field": "online_share", "value": 0.95, "min": 0.5, "max": 0.9}
    await assert_refused(
        platform, "DEPARTMENT_POLICY_OUT_OF_BOUNDS", change(DepartmentPolicy(release_at="00:00"))
    )
    await assert_refused(
        platform, "DEPARTMENT_POLICY_OUT_OF_BOUNDS", change(DepartmentPolicy(days_ahead=30))
    )
    await change(DepartmentPolicy(online_share=0.6))
    await assert_refused(
        platform, "DEPARTMENT_POLICY_CHANGED_MEANWHILE", change(DepartmentPolicy(online_share=0.8))
    )
    await platform.supply.register_hospital(clinic(code="h2"))
    other = await staff_of(platform, "other", "hospital_staff", "h2")
    await assert_refused(
        platform,
        "HOSPITAL_SCOPE_DENIED",
        service.change(other, department_id, DepartmentPolicy(), expected_version=1, reason="r"),
    )
    auditor = await staff_of(platform, "auditor", "authority_auditor", None)
    await assert_refused(platform, "STAFF_ROLE_REQUIRED", service.lines(auditor))
    assert [v.version for v in await service.history(desk)] == [1]


async def test_two_desks_saving_the_same_version_at_once_cannot_both_win(
    platform: Platform,
) -> None:
    spec = clinic(units=4)
    await publish_clinic(platform, spec)
    await platform.supply.publish_sessions(platform.supply.sessions_from_roster(spec, [LATER_DAY]))
    desk = await staff_of(platform, "desk", "hospital_staff", "h1")
    department_id = await department_of(platform)
    shares = (0.5, 0.6, 0.7, 0.8)
    results = await asyncio.gather(
        *(
            platform.department_policies.change(
                desk,
                department_id,
                DepartmentPolicy(online_share=share),
                expected_version=0,
                reason=f"try {share}",
            )
            for share in shares
        ),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, DepartmentPolicyChange)]
    assert [w.version for w in won] == [1], results
    for r in results:
        if not isinstance(r, DepartmentPolicyChange):
            assert isinstance(r, GuahaoError), r  # never a raw database error
            assert r.code == "DEPARTMENT_POLICY_CHANGED_MEANWHILE"
    (line,) = await platform.department_policies.lines(desk)
    (winner,) = [s for s, r in zip(shares, results, strict=True) if r in won]
    assert line.online_share == winner
    assert {r.online_quota for r in await slots_of_day(platform, LATER_DAY)} == {int(4 * winner)}
