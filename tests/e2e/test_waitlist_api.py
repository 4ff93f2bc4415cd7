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


async def test_a_citizen_prepays_a_wait_sees_their_place_and_is_booked_with_no_payment_step(
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

    # 候补预付: the hospital takes payment online, so the wait is paid for when joined.
    assert wait["prepayment"]["status"] == "created"
    assert wait["prepayment"]["amountCents"] == 3000
    prepaid = await waiter.http.post(
        pay_path(wait["prepayment"]["payUrl"]), params={"channel": "self_pay"}
    )
    assert prepaid.status_code == 200, prepaid.text
    assert prepaid.json()["result"] == "prepaid"
    late_wait = second.json()  # the one behind never pays its prepayment

    cancelled = await holder.post(f"/api/v1/bookings/{booking['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    await deliver(platform)

    # Booked and confirmed with the money paid when joining: no payment step at all.
    [granted] = await waiter.bookings()
    assert (granted["status"], granted["paymentOrderNo"]) == (
        "confirmed",
        wait["prepayment"]["orderNo"],
    )
    [done] = (await waiter.get("/api/v1/waitlist/")).json()
    assert (done["status"], done["position"], done["bookingId"]) == (
        "fulfilled",
        None,
        granted["id"],
    )
    assert (done["prepayment"]["status"], done["prepayment"]["appliedCents"]) == ("applied", 3000)
    [still] = (await late.get("/api/v1/waitlist/")).json()
    assert still["position"] == 1
    left = await late.post(f"/api/v1/waitlist/{still['id']}/leave")
    assert left.status_code == 200
    assert left.json()["status"] == "cancelled"
    await deliver(platform)
    [closed] = (await late.get("/api/v1/waitlist/")).json()
    assert closed["prepayment"]["status"] == "closed"  # never paid: nothing to give back
    assert late_wait["prepayment"]["orderNo"] == closed["prepayment"]["orderNo"]
    assert_refused(
        await late.post(f"/api/v1/waitlist/{still['id']}/leave"), 409, "WAITLIST_ENTRY_NOT_WAITING"
    )
    assert_refused(
        await holder.post(f"/api/v1/waitlist/{still['id']}/leave"), 404, "WAITLIST_ENTRY_NOT_FOUND"
    )
    inbox = await waiter.get("/api/v1/me/notifications")
    assert inbox.status_code == 200, inbox.text
    told = {m["topic"]: m["params"] for m in inbox.json()}
    assert {
        "waitlist.prepayment_opened",
        "waitlist.prepaid",
        "waitlist.granted",
        "booking.confirmed",
    } <= set(told)
    assert "booking.awaiting_payment" not in told
    opened = told["waitlist.prepayment_opened"]
    assert opened["pay_by"] == wait["prepayment"]["payBy"]
    assert opened["pay_by"] in opened["zh"]
    assert "30.00" in opened["zh"]


async def test_a_prepaid_wait_left_unserved_is_refunded_in_full_and_the_patient_told(
    platform, sign_up
):
    await publish(
        platform, one_slot_clinic(PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE), [SESSION_DAY]
    )
    sess = await session_on(platform, SESSION_DAY)
    [slot] = await slots_of(platform, sess.id)
    holder, waiter = await sign_up(), await sign_up()
    await holder.confirmed_booking(slot, (await holder.add_patient(number=resident_id(9111)))["id"])
    patient = await waiter.add_patient(number=resident_id(9112))
    wait = (
        await waiter.post(
            "/api/v1/waitlist/",
            json={"patientId": patient["id"], "scope": "session", "sessionId": sess.id},
        )
    ).json()
    await waiter.http.post(pay_path(wait["prepayment"]["payUrl"]), params={"channel": "self_pay"})
    left = await waiter.post(f"/api/v1/waitlist/{wait['id']}/leave")
    assert left.status_code == 200, left.text
    await deliver(platform)
    [ended] = (await waiter.get("/api/v1/waitlist/")).json()
    assert (ended["prepayment"]["status"], ended["prepayment"]["refundedCents"]) == (
        "refunded",
        3000,
    )
    order = await platform.gateway.query_order(wait["prepayment"]["orderNo"])
    assert (order.status, order.refunded_cents) == ("refunded", 3000)
    told = {m["topic"]: m["params"] for m in (await waiter.get("/api/v1/me/notifications")).json()}
    assert "30.00" in told["waitlist.prepayment_refunded"]["zh"]


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
