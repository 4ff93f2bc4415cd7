"""The waitlist (候补) and lottery (摇号) over HTTP, as an app would use them, on a live server."""

from __future__ import annotations

from datetime import timedelta

from guahao.platform.hospitals import PaymentMode, Period
from tests.e2e.support import assert_refused, pay_path
from tests.fixtures.platforms import SESSION_DAY, manual_clock, resident_id
from tests.integration.offer_scenarios import (
    deliver,
    one_slot_clinic,
    publish,
    session_on,
    slots_of,
)


async def test_a_citizen_waits_sees_their_place_and_is_booked_when_a_unit_frees_up(
    platform, sign_up
):
    await publish(
        platform, one_slot_clinic(PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE), [SESSION_DAY]
    )
    sess = await session_on(platform, SESSION_DAY)
    [slot] = await slots_of(platform, sess.id)
    holder, waiter, late = await sign_up(), await sign_up(), await sign_up()
    holder_patient = await holder.add_patient(number=resident_id(9101))
    booking = await holder.confirmed_booking(slot, holder_patient["id"])
    patient = await waiter.add_patient(number=resident_id(9102))
    joined = await waiter.post(
        "/api/v1/waitlist/",
        json={"patientId": patient["id"], "scope": "session", "sessionId": sess.id},
    )
    assert joined.status_code == 201, joined.text
    wait = joined.json()
    assert (wait["status"], wait["position"], wait["sessionId"]) == ("waiting", 1, sess.id)
    manual_clock(platform).advance(seconds=1)
    late_patient = await late.add_patient(number=resident_id(9103))
    second = await late.post(
        "/api/v1/waitlist/",
        json={"patientId": late_patient["id"], "scope": "session", "sessionId": sess.id},
    )
    assert second.json()["position"] == 2
    again = await waiter.post(
        "/api/v1/waitlist/",
        json={"patientId": patient["id"], "scope": "session", "sessionId": sess.id},
    )
    assert_refused(again, 409, "WAITLIST_ALREADY_WAITING")

    cancelled = await holder.post(f"/api/v1/bookings/{booking['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    await deliver(platform)

    [offer] = await waiter.bookings()
    assert offer["status"] == "awaiting_payment"
    paid = await waiter.http.post(pay_path(offer["payUrl"]), params={"channel": "self_pay"})
    assert paid.status_code == 200, paid.text
    assert (await waiter.booking(offer["id"]))["status"] == "confirmed"
    await deliver(platform)
    [done] = (await waiter.get("/api/v1/waitlist/")).json()
    assert (done["status"], done["position"], done["bookingId"]) == ("fulfilled", None, offer["id"])
    # The one behind is now first.
    [still] = (await late.get("/api/v1/waitlist/")).json()
    assert still["position"] == 1
    left = await late.post(f"/api/v1/waitlist/{still['id']}/leave")
    assert left.status_code == 200
    assert left.json()["status"] == "cancelled"
    assert_refused(
        await late.post(f"/api/v1/waitlist/{still['id']}/leave"), 409, "WAITLIST_ENTRY_NOT_WAITING"
    )
    assert_refused(
        await holder.post(f"/api/v1/waitlist/{still['id']}/leave"), 404, "WAITLIST_ENTRY_NOT_FOUND"
    )
    inbox = await waiter.get("/api/v1/me/notifications")
    assert inbox.status_code == 200, inbox.text
    told = {m["topic"]: m["params"] for m in inbox.json()}
    assert {"waitlist.granted", "booking.awaiting_payment", "booking.confirmed"} <= set(told)
    assert told["booking.awaiting_payment"]["pay_by"] in told["booking.awaiting_payment"]["zh"]


async def test_bad_waits_are_refused_with_their_codes(platform, citizen):
    await publish(platform, one_slot_clinic(), [SESSION_DAY])
    sess = await session_on(platform, SESSION_DAY)
    patient = await citizen.add_patient(number=resident_id(9104))
    unknown = await citizen.post(
        "/api/v1/waitlist/",
        json={"patientId": patient["id"], "scope": "session", "sessionId": sess.id, "x": 1},
    )
    assert_refused(unknown, 422, "VALIDATION_FAILED")
    scope = await citizen.post(
        "/api/v1/waitlist/", json={"patientId": patient["id"], "scope": "doctor"}
    )
    assert_refused(scope, 422, "WAITLIST_SCOPE_INVALID")
    available = await citizen.post(
        "/api/v1/waitlist/",
        json={"patientId": patient["id"], "scope": "session", "sessionId": sess.id},
    )
    assert_refused(available, 409, "WAITLIST_UNITS_AVAILABLE")
    unauthenticated = await citizen.http.get("/api/v1/waitlist/")
    assert_refused(unauthenticated, 401, "UNAUTHENTICATED")


async def test_a_citizen_enters_a_lottery_withdraws_enters_again_and_is_drawn(platform, citizen):
    later = SESSION_DAY + timedelta(days=7)
    await publish(platform, one_slot_clinic(sessions=((later.weekday(), Period.MORNING),)), [later])
    sess = await session_on(platform, later)
    view = await platform.lottery.mark_lottery(sess.id)
    patient = await citizen.add_patient(number=resident_id(9105))
    body = {"sessionId": sess.id, "patientId": patient["id"]}
    early = await citizen.post("/api/v1/lottery/entries/", json=body)
    assert_refused(early, 409, "LOTTERY_NOT_OPEN")
    manual_clock(platform).set(view.opens_at)
    entered = await citizen.post("/api/v1/lottery/entries/", json=body)
    assert entered.status_code == 201, entered.text
    entry = entered.json()
    assert (entry["status"], entry["sessionId"]) == ("entered", sess.id)
    assert_refused(
        await citizen.post("/api/v1/lottery/entries/", json=body), 409, "LOTTERY_ALREADY_ENTERED"
    )
    withdrawn = await citizen.post(f"/api/v1/lottery/entries/{entry['id']}/withdraw")
    assert withdrawn.json()["status"] == "withdrawn"
    again = await citizen.post("/api/v1/lottery/entries/", json=body)
    assert again.status_code == 201
    assert again.json()["id"] == entry["id"]
    manual_clock(platform).set(view.draw_at)
    await platform.lottery.draw_due()
    [drawn] = (await citizen.get("/api/v1/lottery/entries/")).json()
    assert drawn["status"] == "won"
    assert (await citizen.booking(drawn["bookingId"]))["status"] == "confirmed"
    assert_refused(
        await citizen.post(f"/api/v1/lottery/entries/{entry['id']}/withdraw"),
        409,
        "LOTTERY_ALREADY_DRAWN",
    )
