"""Pulling a hospital's FHIR R4 schedule from the reference HIS over real HTTP: first pull,
incremental changes, an outage in the middle of a sync with nothing lost, the circuit breaker,
reconciliation drift and a session stop published as busy-unavailable slots."""

from __future__ import annotations

import json

from sqlalchemy import select

from guahao.platform.persistence.connector_tables import SyncRunRow
from guahao.platform.persistence.tables import DoctorRow, SessionRow, SlotRow
from tests.fixtures.his_simulator import SIM_HOSPITAL, sim_hospital
from tests.fixtures.platforms import confirmed_booking, counts, manual_clock


async def onboard(platform, his) -> None:
    await platform.supply.register_hospital(sim_hospital())
    await platform.connectors.registry.register(SIM_HOSPITAL, "fhir", base_url=his.fhir)


async def pool(platform) -> dict[tuple[str, str, str, int], tuple[int, int, str]]:
    """(doctor, date, period, seq) -> (capacity, online quota, session status)."""
    async with platform.ports.sessions() as session:
        rows = (
            await session.execute(
                select(
                    DoctorRow.code, SessionRow.date, SessionRow.period, SlotRow, SessionRow.status
                )
                .join(SessionRow, SessionRow.id == SlotRow.session_id)
                .join(DoctorRow, DoctorRow.id == SessionRow.doctor_id)
            )
        ).all()
    return {
        (code, day.isoformat(), period, slot.seq): (slot.capacity, slot.online_quota, status)
        for code, day, period, slot, status in rows
    }


async def runs(platform) -> list[SyncRunRow]:
    async with platform.ports.sessions() as session:
        return list(
            (await session.scalars(select(SyncRunRow).order_by(SyncRunRow.started_at))).all()
        )


async def test_a_first_pull_publishes_the_his_schedule_and_a_second_changes_nothing(
    platform, his_simulator
):
    his = await his_simulator(doctors=2, capacity=2)
    await onboard(platform, his)

    outcome = await platform.connectors.sync.pull(SIM_HOSPITAL)

    assert outcome.status == "ok", outcome.error
    assert outcome.refusals == []
    assert outcome.report is not None
    assert outcome.report.created == 4
    slots = await pool(platform)
    assert len(slots) == 4 * 8
    assert {v for v in slots.values()} == {(2, 2, "open")}
    async with platform.ports.sessions() as session:
        names = set((await session.scalars(select(DoctorRow.name))).all())
    assert names == {"王伟", "李娜"}
    # the pool is live: a unit can be counted in Redis
    async with platform.ports.sessions() as session:
        any_slot = await session.scalar(select(SlotRow.id).limit(1))
    assert (await counts(platform, any_slot)).capacity == 2

    again = await platform.connectors.sync.pull(SIM_HOSPITAL)
    assert again.status == "ok"
    # incremental from the newest stamp seen (inclusive: the seeded slots share that stamp)
    assert again.report is not None
    assert (again.report.created, again.report.capacity_changed) == (0, 0)
    assert again.report.unchanged == 4
    assert await pool(platform) == slots
    assert [r.status for r in await runs(platform)] == ["ok", "ok"]
    [health] = await platform.connectors.registry.health()
    assert (health.last_status, health.failures, health.error_rate) == ("ok", 0, 0.0)


async def test_an_incremental_capacity_change_reaches_the_pool(platform, his_simulator):
    his = await his_simulator(doctors=1, capacity=2)
    await onboard(platform, his)
    platform.connectors.sync.page_size = 5  # every search follows Bundle next links
    await platform.connectors.sync.pull(SIM_HOSPITAL)
    assert len(await pool(platform)) == 16

    await his.admin("capacity", {"slot": "sch-d001-202603040030", "capacity": 5})  # 08:30
    outcome = await platform.connectors.sync.pull(SIM_HOSPITAL)

    assert outcome.status == "ok"
    assert outcome.report is not None
    assert outcome.report.capacity_changed == 1
    slots = await pool(platform)
    assert slots[("d001", "2026-03-04", "morning", 1)] == (5, 5, "open")
    assert slots[("d001", "2026-03-04", "morning", 0)] == (2, 2, "open")


async def test_an_his_outage_in_the_middle_of_a_sync_loses_nothing(platform, his_simulator):
    his = await his_simulator(doctors=2, capacity=2)
    await onboard(platform, his)
    await platform.connectors.sync.pull(SIM_HOSPITAL)
    await his.admin("capacity", {"slot": "sch-d001-202603040000", "capacity": 4})
    await his.admin("capacity", {"slot": "sch-d002-202603040600", "capacity": 1})

    # the HIS dies after answering five more requests: part of the pull has happened
    await his.admin("outage", {"after": 5})
    failed = await platform.connectors.sync.pull(SIM_HOSPITAL)
    assert failed.status == "failed"
    assert "HIS_UNAVAILABLE" in failed.error
    before = await pool(platform)
    assert before[("d001", "2026-03-04", "morning", 0)] == (2, 2, "open")  # not yet applied

    await his.admin("outage", {"down": False})
    recovered = await platform.connectors.sync.pull(SIM_HOSPITAL)

    assert recovered.status == "ok"
    after = await pool(platform)
    assert after[("d001", "2026-03-04", "morning", 0)] == (4, 4, "open")
    assert after[("d002", "2026-03-04", "afternoon", 1)] == (1, 1, "open")  # 14:00 local
    assert [r.status for r in await runs(platform)] == ["ok", "failed", "ok"]
    [health] = await platform.connectors.registry.health()
    assert health.failures == 1
    assert health.last_error is not None
    assert "HIS_UNAVAILABLE" in health.last_error


async def test_the_circuit_opens_after_repeated_failures_and_half_opens_after_cooldown(
    platform, his_simulator
):
    his = await his_simulator(doctors=1)
    await onboard(platform, his)
    await his.admin("outage", {"down": True})
    for _ in range(5):
        assert (await platform.connectors.sync.pull(SIM_HOSPITAL)).status == "failed"

    skipped = await platform.connectors.sync.pull(SIM_HOSPITAL)
    assert "HIS_CIRCUIT_OPEN" in skipped.error
    assert (await runs(platform))[-1].status == "skipped"

    await his.admin("outage", {"down": False})
    manual_clock(platform).advance(minutes=3)
    assert (await platform.connectors.sync.pull(SIM_HOSPITAL)).status == "ok"


async def test_a_stop_published_as_unavailable_slots_cancels_the_session(platform, his_simulator):
    his = await his_simulator(doctors=1, capacity=2)
    await onboard(platform, his)
    await platform.connectors.sync.pull(SIM_HOSPITAL)
    async with platform.ports.sessions() as session:
        slot_id = await session.scalar(
            select(SlotRow.id)
            .join(SessionRow, SessionRow.id == SlotRow.session_id)
            .where(SessionRow.period == "morning")
            .order_by(SlotRow.seq)
            .limit(1)
        )
    _, booking_id, _ = await confirmed_booking(platform, slot_id)

    await his.admin(
        "stop", {"doctor": "d001", "date": "2026-03-04", "period": "morning", "reason": "停诊"}
    )
    outcome = await platform.connectors.sync.pull(SIM_HOSPITAL)

    assert outcome.status == "ok"
    assert outcome.stopped == 1
    slots = await pool(platform)
    assert slots[("d001", "2026-03-04", "morning", 0)][2] == "stopped"
    assert slots[("d001", "2026-03-04", "afternoon", 0)][2] == "open"
    booking = await platform.bookings.get(booking_id)
    assert booking.status.value == "cancelled_by_hospital"
    # a later pull seeing the same stop changes nothing
    manual_clock(platform).advance(seconds=1)
    assert (await platform.connectors.sync.pull(SIM_HOSPITAL, full=True)).status == "ok"


async def test_reconciliation_reports_drift_it_does_not_apply(platform, his_simulator):
    his = await his_simulator(doctors=1, capacity=2)
    await onboard(platform, his)
    await platform.connectors.sync.pull(SIM_HOSPITAL)
    async with platform.ports.sessions() as session:
        slot_id = await session.scalar(select(SlotRow.id).order_by(SlotRow.starts_at).limit(1))
    await confirmed_booking(platform, slot_id)
    await confirmed_booking(platform, slot_id)

    await his.admin("capacity", {"slot": "sch-d001-202603040000", "capacity": 1})
    outcome = await platform.connectors.sync.pull(SIM_HOSPITAL, full=True)

    assert outcome.status == "ok"
    assert outcome.report is not None
    [drift] = outcome.report.drift
    assert (drift.kind, drift.doctor_code, drift.period) == (
        "capacity_below_taken",
        "d001",
        "morning",
    )
    assert (await pool(platform))[("d001", "2026-03-04", "morning", 0)] == (2, 2, "open")
    run = (await runs(platform))[-1]
    assert run.drift["items"][0]["kind"] == "capacity_below_taken"


async def test_a_his_requiring_smart_backend_services_is_pulled_with_a_signed_assertion(
    platform, his_simulator, tmp_path
):
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048)
    public = tmp_path / "client.jwk.json"
    public.write_text(json.dumps(key.as_dict(private=False)))
    his = await his_simulator(doctors=1, client_jwks={"guahao-region": public})
    await platform.supply.register_hospital(sim_hospital())
    base = his.fhir.removesuffix("/fhir")
    await platform.connectors.registry.register(SIM_HOSPITAL, "fhir", base_url=his.fhir)
    refused = await platform.connectors.sync.pull(SIM_HOSPITAL)
    assert refused.status == "failed"
    assert "HIS_REFUSED" in refused.error
    assert "401" in refused.error

    await platform.connectors.registry.register(
        SIM_HOSPITAL,
        "fhir",
        base_url=his.fhir,
        config={
            "client_id": "guahao-region",
            "token_url": f"{base}/auth/token",
            "private_key_pem": key.as_pem(private=True).decode(),
        },
    )
    outcome = await platform.connectors.sync.pull(SIM_HOSPITAL)
    assert outcome.status == "ok", outcome.error
    assert outcome.report is not None
    assert outcome.report.created == 2

    stranger = RSAKey.generate_key(2048)
    await platform.connectors.registry.register(
        SIM_HOSPITAL,
        "fhir",
        base_url=his.fhir,
        config={
            "client_id": "guahao-region",
            "token_url": f"{base}/auth/token",
            "private_key_pem": stranger.as_pem(private=True).decode(),
        },
    )
    forged = await platform.connectors.sync.pull(SIM_HOSPITAL)
    assert forged.status == "failed"
    assert "token endpoint" in forged.error


async def test_a_his_offering_ihe_scheduling_gets_bookings_by_book(platform, his_simulator):
    his = await his_simulator(doctors=1, capacity=1)
    await platform.supply.register_hospital(sim_hospital())
    await platform.connectors.registry.register(
        SIM_HOSPITAL, "fhir", base_url=his.fhir, notify=True, config={"ihe_scheduling": True}
    )
    await platform.connectors.sync.pull(SIM_HOSPITAL)
    async with platform.ports.sessions() as session:
        slot_id = await session.scalar(select(SlotRow.id).order_by(SlotRow.starts_at).limit(1))
    account_id, booking_id, _ = await confirmed_booking(platform, slot_id)

    await platform.dispatcher.dispatch_pending()
    await platform.dispatcher.dispatch_pending()  # nothing is sent twice

    [booked] = await his.admin("appointments")
    assert booked["status"] == "booked"
    assert booked["identifier"][0]["value"] == booking_id
    await platform.bookings.cancel(account_id=account_id, booking_id=booking_id)
    await platform.dispatcher.dispatch_pending()
    [cancelled] = await his.admin("appointments")
    assert cancelled["status"] == "cancelled"
