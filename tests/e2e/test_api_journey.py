"""The citizen's whole journey over HTTP against a real server: sign up, browse, hold, choose
the patient, pay at the sandbox cashier, see the booking confirmed, cancel it, read the inbox.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from guahao.bootstrap import Platform
from guahao.platform.clock import ManualClock
from tests.e2e.support import VALID_ID, Citizen, availability, find_doctor, pay_path
from tests.fixtures.platforms import SESSION_DAY, at_local, publish_clinic

RELEASE_DAY = SESSION_DAY - timedelta(days=7)  # the clinic releases 7 days ahead at 08:00


def _clock(platform: Platform) -> ManualClock:
    clock = platform.ports.clock
    assert isinstance(clock, ManualClock)
    return clock


async def test_book_pay_confirm_cancel_and_be_told(
    platform: Platform, http: httpx.AsyncClient, citizen: Citizen
) -> None:
    await publish_clinic(platform)
    clock = _clock(platform)
    clock.set(at_local(RELEASE_DAY, 8, 5))

    # The account's patient, shown masked.
    patient = await citizen.add_patient("张三", VALID_ID)
    assert patient["documentMasked"] != VALID_ID
    assert VALID_ID not in (await citizen.get("/api/v1/me/patients")).text
    assert [p["id"] for p in (await citizen.get("/api/v1/me/patients")).json()] == [patient["id"]]

    # Browse: hospital → department → doctor → the released session.
    doctor_id = await find_doctor(http, "h1", "心内科")
    sessions = (
        await http.get(
            f"/api/v1/doctors/{doctor_id}/availability",
            params={"from": SESSION_DAY.isoformat(), "to": SESSION_DAY.isoformat()},
        )
    ).json()
    assert len(sessions) == 1
    session = sessions[0]
    assert session["released"] is True
    assert session["feeCents"] == 3000
    slot = next(s for s in session["slots"] if s["available"] > 0)
    before = await availability(http, doctor_id, SESSION_DAY)

    # 锁号. Repeating the request with the same key gives the same hold back, never a second.
    held = await citizen.hold(slot["id"], key="journey-hold-1")
    assert held.status_code == 201, held.text
    booking = held.json()
    assert booking["status"] == "held"
    assert booking["slotId"] == slot["id"]
    assert (booking["hospitalName"], booking["departmentName"]) == ("测试医院", "心内科")
    again = await citizen.hold(slot["id"], key="journey-hold-1")
    assert again.status_code == 201, again.text
    assert again.json()["id"] == booking["id"]
    assert (await availability(http, doctor_id, SESSION_DAY))[slot["id"]] == (
        before[slot["id"]] - 1
    )

    # 选择就诊人, then submit: online self-pay opens an order with a cashier URL.
    chosen = await citizen.put(
        f"/api/v1/bookings/{booking['id']}/patient", json={"patientId": patient["id"]}
    )
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["status"] == "patient_chosen"
    assert chosen.json()["patientId"] == patient["id"]
    submitted = await citizen.post(
        f"/api/v1/bookings/{booking['id']}/submit", json={"channel": "self_pay"}
    )
    assert submitted.status_code == 200, submitted.text
    awaiting = submitted.json()
    assert awaiting["status"] == "awaiting_payment"
    assert awaiting["paymentOrderNo"]
    assert awaiting["payUrl"].endswith(f"/sandbox/pay/{awaiting['paymentOrderNo']}")

    # The payer at the sandbox cashier: the page, then paying self-pay.
    cashier = pay_path(awaiting["payUrl"])
    page = await http.get(cashier)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert awaiting["paymentOrderNo"] in page.text
    assert "30.00" in page.text
    paid = await http.post(cashier, params={"channel": "self_pay"})
    assert paid.status_code == 200, paid.text
    assert paid.json() == {
        "bookingId": booking["id"],
        "orderNo": awaiting["paymentOrderNo"],
        "result": "confirmed",
    }

    confirmed = await citizen.booking(booking["id"])
    assert confirmed["status"] == "confirmed"
    assert confirmed["paid"] is True
    assert confirmed["payUrl"] is None
    assert [b["id"] for b in await citizen.bookings()] == [booking["id"]]
    assert (await availability(http, doctor_id, SESSION_DAY))[slot["id"]] == (
        before[slot["id"]] - 1
    )

    # 退号 before the deadline; the unit comes back after the hospital's randomised delay.
    cancelled = await citizen.post(f"/api/v1/bookings/{booking['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled_by_patient"
    assert (await citizen.booking(booking["id"]))["status"] == "cancelled_by_patient"
    clock.advance(seconds=121)  # past cancel_return_delay_seconds=(60, 120)
    assert (await availability(http, doctor_id, SESSION_DAY)) == before

    # The inbox, once the outbox has been dispatched.
    assert (await citizen.get("/api/v1/me/notifications")).json() == []
    assert await platform.dispatcher.dispatch_pending() > 0
    inbox = await citizen.get("/api/v1/me/notifications")
    assert inbox.status_code == 200, inbox.text
    messages = {m["topic"]: m for m in inbox.json()}
    assert {"booking.confirmed", "booking.cancelled_by_patient"} <= set(messages)
    for topic in ("booking.confirmed", "booking.cancelled_by_patient"):
        assert messages[topic]["params"]["booking_id"] == booking["id"]
        assert messages[topic]["params"]["zh"]
        assert messages[topic]["params"]["en"]


async def test_leaving_the_flow_gives_the_unit_back_at_once(
    platform: Platform, http: httpx.AsyncClient, citizen: Citizen
) -> None:
    await publish_clinic(platform)
    _clock(platform).set(at_local(RELEASE_DAY, 9))
    doctor_id = await find_doctor(http, "h1", "心内科")
    before = await availability(http, doctor_id, SESSION_DAY)
    slot_id = next(iter(before))

    held = await citizen.hold(slot_id)
    assert held.status_code == 201, held.text
    assert (await availability(http, doctor_id, SESSION_DAY))[slot_id] == before[slot_id] - 1
    left = await citizen.post(f"/api/v1/bookings/{held.json()['id']}/leave")
    assert left.status_code == 200, left.text
    assert left.json()["status"] == "abandoned"
    assert await availability(http, doctor_id, SESSION_DAY) == before


async def test_health_and_openapi_are_served(http: httpx.AsyncClient) -> None:
    health = await http.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"

    schema = await http.get("/schema/openapi.json")
    assert schema.status_code == 200
    document = schema.json()
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    assert {
        "registerAccount",
        "issueToken",
        "addPatient",
        "listHospitals",
        "doctorAvailability",
        "holdSlot",
        "choosePatient",
        "submitBooking",
        "cancelBooking",
        "paymentNotify",
    } <= operations
    assert not any(p.startswith("/sandbox") for p in document["paths"])
    assert (await http.get("/schema")).status_code == 200
