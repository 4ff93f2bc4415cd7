"""Priority rebooking offers and the reminder's one-tap 退号 link over HTTP, on a live server."""

from __future__ import annotations

from datetime import timedelta

from guahao.platform.hospitals import PaymentMode, Period
from tests.e2e.support import assert_refused
from tests.fixtures.platforms import SESSION_DAY, at_local, manual_clock, resident_id
from tests.integration.offer_scenarios import (
    THURSDAY,
    deliver,
    one_slot_clinic,
    publish_week,
    session_on,
    slots_of,
)

TWO_DAYS = ((SESSION_DAY.weekday(), Period.MORNING), (THURSDAY.weekday(), Period.MORNING))


async def test_a_citizen_accepts_a_rebooking_offer_and_keeps_the_same_payment(platform, citizen):
    await publish_week(
        platform, one_slot_clinic(PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE, sessions=TWO_DAYS)
    )
    sess = await session_on(platform, SESSION_DAY)
    [slot] = await slots_of(platform, sess.id)
    patient = await citizen.add_patient(number=resident_id(9201))
    booking = await citizen.confirmed_booking(slot, patient["id"])
    await platform.bookings.cancel_by_hospital(booking["id"], reason="HIS lost the patient")
    await deliver(platform)
    listed = await citizen.get("/api/v1/rebooking-offers/")
    assert listed.status_code == 200, listed.text
    [offer] = listed.json()
    assert offer["status"] == "open"
    [proposal] = offer["proposals"]
    assert (proposal["sameDoctor"], proposal["date"]) == (True, THURSDAY.isoformat())
    wrong = await citizen.post(
        f"/api/v1/rebooking-offers/{offer['id']}/accept", json={"slotId": slot}
    )
    assert_refused(wrong, 422, "REBOOKING_UNIT_NOT_OFFERED")
    accepted = await citizen.post(
        f"/api/v1/rebooking-offers/{offer['id']}/accept", json={"slotId": proposal["slotId"]}
    )
    assert accepted.status_code == 200, accepted.text
    rebooked = accepted.json()
    assert rebooked["status"] == "confirmed"
    assert rebooked["paymentOrderNo"] == booking["paymentOrderNo"]
    again = await citizen.post(f"/api/v1/rebooking-offers/{offer['id']}/decline")
    assert_refused(again, 409, "REBOOKING_OFFER_CLOSED")
    inbox = {m["topic"] for m in (await citizen.get("/api/v1/me/notifications")).json()}
    assert "rebooking.offered" in inbox


async def test_the_reminders_one_tap_page_cancels_once(platform, citizen):
    await publish_week(platform, one_slot_clinic(PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE))
    sess = await session_on(platform, SESSION_DAY)
    [slot] = await slots_of(platform, sess.id)
    patient = await citizen.add_patient(number=resident_id(9202))
    booking = await citizen.confirmed_booking(slot, patient["id"])
    await deliver(platform)
    manual_clock(platform).set(at_local(SESSION_DAY - timedelta(days=1), 8, 0))
    await platform.reminders.send_due()
    await deliver(platform)
    [reminder] = [
        m
        for m in (await citizen.get("/api/v1/me/notifications")).json()
        if m["topic"] == "visit.reminder"
    ]
    path = "/one-tap/" + reminder["params"]["link"].rsplit("/one-tap/", 1)[1]
    page = await citizen.http.get(path)
    assert page.status_code == 200
    assert "确认退号" in page.text
    assert (await citizen.booking(booking["id"]))["status"] == "confirmed"  # a GET does nothing
    done = await citizen.http.post(path)
    assert done.status_code == 200
    assert "已退号" in done.text
    assert (await citizen.booking(booking["id"]))["status"] == "cancelled_by_patient"
    twice = await citizen.http.post(path)
    assert "已使用" in twice.text
