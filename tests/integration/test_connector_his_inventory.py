"""Hospitals whose HIS owns its inventory (IHE ITI Scheduling): a platform hold is a hold in
the HIS too, against the reference HIS over real sockets. The HIS may say no, and then the
citizen is refused with nothing held anywhere; a confirmation books the HIS's hold; an expiry,
a patient leaving and a cancellation give it back; other hospitals never reach the HIS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from guahao.hospital_connectors.simulator.store import HisStore
from guahao.platform.client_context import ClientContext
from guahao.platform.services.hold_grants import HoldAsk, HoldOutcome
from tests.fixtures.his_simulator import SIM_HOSPITAL, sim_hospital
from tests.fixtures.platforms import (
    assert_refused,
    available,
    confirmed_booking,
    counts,
    held_with_patient,
    hold,
    manual_clock,
    new_account,
    publish_clinic,
)
from tests.integration.test_hl7_mllp import first_slot


async def owning(platform, his_simulator, *, owns: bool = True):
    his = await his_simulator(doctors=1, capacity=2)
    await platform.supply.register_hospital(sim_hospital())
    await platform.connectors.registry.register(
        SIM_HOSPITAL, "fhir", base_url=his.fhir, config={"owns_inventory": owns}
    )
    assert (await platform.connectors.sync.pull(SIM_HOSPITAL)).status == "ok"
    return his, await first_slot(platform)


def appointments(tmp_path: Path) -> dict[str, str]:
    """The reference HIS's appointments by the platform's booking id: their status."""
    store = HisStore.load(tmp_path / "his-0.json")
    found = {}
    for appointment in store.resources.get("Appointment", {}).values():
        for ident in appointment.get("identifier", []):
            if ident.get("system") == "urn:guahao:booking":
                found[ident["value"]] = appointment["status"]
    return found


async def sold_at_the_window(his, start: str, units: int) -> None:
    """The hospital's own window sells ``units`` of the slot starting at ``start``."""
    async with httpx.AsyncClient(timeout=15) as http:
        for n in range(units):
            created = await http.post(
                f"{his.fhir}/Appointment",
                json={
                    "resourceType": "Appointment",
                    "status": "booked",
                    "identifier": [{"system": "urn:his:window", "value": f"w{n}"}],
                    "start": start,
                    "participant": [{"actor": {"reference": "Practitioner/d001"}}],
                },
            )
            assert created.status_code == 201, created.text


async def test_a_hold_is_a_hold_in_the_his_and_a_confirmation_books_it(
    platform, his_simulator, tmp_path
):
    _, slot_id = await owning(platform, his_simulator)

    _, booking_id, _ = await confirmed_booking(platform, slot_id)
    assert appointments(tmp_path) == {booking_id: "pending"}  # held there before the SQL row

    await platform.dispatcher.dispatch_pending()
    assert appointments(tmp_path) == {booking_id: "booked"}
    await platform.dispatcher.dispatch_pending()
    assert appointments(tmp_path) == {booking_id: "booked"}  # once


async def test_a_unit_the_his_sold_itself_is_refused_with_nothing_held(
    platform, his_simulator, tmp_path
):
    his, slot_id = await owning(platform, his_simulator)
    facts = await platform.bookings.slot_facts(slot_id)
    await sold_at_the_window(his, facts.starts_at.isoformat(), units=2)
    account_id = await new_account(platform)
    before = await available(platform, slot_id)
    assert before > 0  # the platform's pool still thinks the unit is free

    await assert_refused(platform, "HIS_SLOT_REFUSED", hold(platform, account_id, slot_id))

    assert await available(platform, slot_id) == before
    assert (await counts(platform, slot_id)).held == 0
    assert appointments(tmp_path) == {}
    # the account holds no unit anywhere: it may hold another slot at once
    other = await first_slot(platform, "afternoon")
    held = await hold(platform, account_id, other)
    assert appointments(tmp_path) == {held.id: "pending"}


async def test_an_unreachable_his_refuses_the_hold_and_keeps_nothing(
    platform, his_simulator, tmp_path
):
    his, slot_id = await owning(platform, his_simulator)
    account_id = await new_account(platform)
    before = await available(platform, slot_id)
    await his.admin("outage", {"down": True})

    await assert_refused(platform, "HIS_HOLD_UNAVAILABLE", hold(platform, account_id, slot_id))

    assert await available(platform, slot_id) == before
    await his.admin("outage", {"down": False})
    assert (await hold(platform, account_id, slot_id)).status.value == "held"
    assert list(appointments(tmp_path).values()) == ["pending"]


async def test_expiry_leaving_and_cancelling_give_the_his_hold_back(
    platform, his_simulator, tmp_path
):
    _, slot_id = await owning(platform, his_simulator)
    clock = manual_clock(platform)
    expiring = await hold(platform, await new_account(platform), slot_id)
    leaver, _, leaving = await held_with_patient(platform, slot_id)
    assert set(appointments(tmp_path).values()) == {"pending"}

    await platform.bookings.leave(account_id=leaver, booking_id=leaving)
    clock.advance(minutes=11)
    assert await platform.bookings.expire(expiring.id) is True
    await platform.dispatcher.dispatch_pending()

    assert appointments(tmp_path) == {expiring.id: "cancelled", leaving: "cancelled"}
    # the HIS has both units free again: two citizens can hold them
    _, cancelled, _ = await confirmed_booking(platform, slot_id)
    await platform.bookings.cancel_by_hospital(cancelled, reason="患者信息无法核实")
    await platform.dispatcher.dispatch_pending()
    assert appointments(tmp_path)[cancelled] == "cancelled"


async def test_a_hospital_whose_platform_owns_the_inventory_never_reaches_the_his(
    platform, his_simulator, tmp_path
):
    _, slot_id = await owning(platform, his_simulator, owns=False)
    await confirmed_booking(platform, slot_id)
    await platform.dispatcher.dispatch_pending()
    assert appointments(tmp_path) == {}


async def test_a_slow_his_hold_in_a_batch_does_not_hold_up_the_others_answers(
    platform, his_simulator
):
    """A loop turn's grants go as one batch; one whose hospital's HIS owns the unit goes on
    alone (a call to the hospital's system), and the batch's other grants are answered as
    soon as their own records are written, not when the HIS has answered."""
    _, his_slot = await owning(platform, his_simulator)
    his_hospital = (await platform.bookings.slot_facts(his_slot)).hospital_id
    plain_slot = ""
    for slot in await publish_clinic(platform):  # the HIS hospital's slots are listed too
        if (await platform.bookings.slot_facts(slot)).hospital_id != his_hospital:
            plain_slot = slot
            break
    his = platform.ports.his_inventory
    hold_in_his = his.hold
    plain_answered = asyncio.Event()
    events: list[object] = []

    async def slow_hold(hospital_id, slot_id, booking_id):
        # a hospital's system answering slowly: here, only once the plain grant has been
        # answered (ordered by events, not by timings a loaded machine can stretch); a
        # batch that waited for the HIS would leave this wait to run out
        try:
            await asyncio.wait_for(plain_answered.wait(), 10.0)
        except TimeoutError:
            events.append("the HIS gave up waiting")
        events.append("the HIS answers")
        await hold_in_his(hospital_id, slot_id, booking_id)

    his.hold = slow_hold
    asked = [
        HoldAsk(await new_account(platform), his_slot, "k-his", ClientContext()),
        HoldAsk(await new_account(platform), plain_slot, "k-plain", ClientContext()),
    ]

    def answered(n, outcome):
        assert isinstance(outcome, HoldOutcome), outcome
        events.append(f"grant {n} answered")
        if n == 1:
            plain_answered.set()

    outcomes = await platform.bookings.grant_holds(asked, answered)
    assert [type(o).__name__ for o in outcomes] == ["HoldOutcome", "HoldOutcome"]
    assert events == ["grant 1 answered", "the HIS answers", "grant 0 answered"]
