"""Each step after the hold answers with the booking as the step left it, built from what the
step wrote and the slot's cached facts instead of read back: the answer must be exactly what
reading the booking afterwards shows, field for field, whatever the step did."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from guahao.bootstrap import Platform
from guahao.platform.clock import ManualClock
from guahao.platform.hospitals import PaymentMode
from tests.e2e.support import VALID_ID, Citizen, find_doctor, pay_path
from tests.fixtures.platforms import SESSION_DAY, at_local, clinic, publish_clinic

RELEASE_DAY = SESSION_DAY - timedelta(days=7)


async def _held(
    platform: Platform,
    http: httpx.AsyncClient,
    citizen: Citizen,
    payment_mode: PaymentMode = PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE,
) -> dict[str, Any]:
    await publish_clinic(platform, clinic(payment_mode))
    clock = platform.ports.clock
    assert isinstance(clock, ManualClock)
    clock.set(at_local(RELEASE_DAY, 9))
    doctor_id = await find_doctor(http, "h1", "心内科")
    slots = (
        await http.get(
            f"/api/v1/doctors/{doctor_id}/availability",
            params={"from": SESSION_DAY.isoformat(), "to": SESSION_DAY.isoformat()},
        )
    ).json()[0]["slots"]
    held = await citizen.hold(next(s["id"] for s in slots if s["available"] > 0))
    assert held.status_code == 201, held.text
    return dict(held.json())


async def _answer_is_the_view(citizen: Citizen, answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    shown = dict(answer.json())
    assert shown == await citizen.booking(shown["id"])
    return shown


async def _chosen_and_submitted(
    platform: Platform, http: httpx.AsyncClient, citizen: Citizen
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A held unit, its patient chosen, submitted for self-pay: the booking's path and the
    answers of both steps, each checked against the booking read back."""
    patient = await citizen.add_patient("张三", VALID_ID)
    booking = await _held(platform, http, citizen)
    path = f"/api/v1/bookings/{booking['id']}"
    chosen = await _answer_is_the_view(
        citizen, await citizen.put(f"{path}/patient", json={"patientId": patient["id"]})
    )
    assert chosen["patientId"] == patient["id"]
    awaiting = await _answer_is_the_view(
        citizen, await citizen.post(f"{path}/submit", json={"channel": "self_pay"})
    )
    return path, chosen, awaiting


async def test_choosing_submitting_and_cancelling_answer_the_booking_as_read_back(
    platform: Platform, http: httpx.AsyncClient, citizen: Citizen
) -> None:
    path, chosen, awaiting = await _chosen_and_submitted(platform, http, citizen)
    assert chosen["status"] == "patient_chosen"
    assert awaiting["status"] == "awaiting_payment"
    assert awaiting["payUrl"].endswith(f"/sandbox/pay/{awaiting['paymentOrderNo']}")
    assert awaiting["paymentExpiresAt"]

    paid = await http.post(pay_path(awaiting["payUrl"]), params={"channel": "self_pay"})
    assert paid.json()["result"] == "confirmed", paid.text
    cancelled = await _answer_is_the_view(citizen, await citizen.post(f"{path}/cancel"))
    assert cancelled["status"] == "cancelled_by_patient"
    assert (cancelled["paid"], cancelled["payUrl"]) == (True, None)


async def test_leaving_with_an_open_order_answers_it_closed_as_read_back(
    platform: Platform, http: httpx.AsyncClient, citizen: Citizen
) -> None:
    path, _, awaiting = await _chosen_and_submitted(platform, http, citizen)

    left = await _answer_is_the_view(citizen, await citizen.post(f"{path}/leave"))
    assert left["status"] == "abandoned"
    assert left["paymentOrderNo"] == awaiting["paymentOrderNo"]
    assert left["payUrl"] is None  # the order was closed: no link to pay it any more


async def test_a_submit_confirmed_without_payment_answers_the_booking_as_read_back(
    platform: Platform, http: httpx.AsyncClient, citizen: Citizen
) -> None:
    patient = await citizen.add_patient("张三", VALID_ID)
    booking = await _held(platform, http, citizen, PaymentMode.PAY_AT_HOSPITAL)
    path = f"/api/v1/bookings/{booking['id']}"
    await citizen.put(f"{path}/patient", json={"patientId": patient["id"]})

    # everyone pays on site: nothing to pay online, confirmed at once
    confirmed = await _answer_is_the_view(
        citizen, await citizen.post(f"{path}/submit", json={"channel": "self_pay"})
    )
    assert confirmed["status"] == "confirmed"
    assert (confirmed["paymentOrderNo"], confirmed["payUrl"]) == (None, None)
    cancelled = await _answer_is_the_view(citizen, await citizen.post(f"{path}/cancel"))
    assert cancelled["status"] == "cancelled_by_patient"
