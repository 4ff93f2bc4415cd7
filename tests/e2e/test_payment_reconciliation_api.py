"""The authority reads the day's payment reconciliation (对账) over real HTTP; citizens and
anonymous callers cannot."""

from __future__ import annotations

import httpx

from guahao.bootstrap import Platform
from tests.e2e.support import Citizen
from tests.fixtures.platforms import held_with_patient, manual_clock, publish_clinic

PASSWORD = "staff-password-1"


async def test_an_auditor_reads_the_days_reconciliation_and_a_citizen_cannot(
    http: httpx.AsyncClient, platform: Platform, citizen: Citizen
) -> None:
    slots = await publish_clinic(platform)
    account, _, booking_id = await held_with_patient(platform, slots[0])
    _, order = await platform.bookings.submit(
        account_id=account, booking_id=booking_id, channel="self_pay"
    )
    assert order is not None
    clock = manual_clock(platform)
    clock.advance(minutes=14)
    await platform.gateway.pay(order.order_no, channel="self_pay")  # its notice is lost
    clock.advance(minutes=10)
    await platform.bookings.expire_due()
    await platform.payment_reconciliation.reconcile_due()  # refunds the money kept
    await platform.staff.create(
        username="reader", password=PASSWORD, role="authority_auditor", hospital_code=None
    )
    token = (
        await http.post("/api/v1/staff/token", json={"username": "reader", "password": PASSWORD})
    ).json()["accessToken"]

    day = platform.payment_reconciliation.business_day().isoformat()
    answer = await http.get(
        "/api/v1/authority/payments/reconciliation",
        params={"day": day},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["day"] == day
    assert report["ordersByStatus"] == {"refunded": 1}
    assert [(s["orderNo"], s["action"]) for s in report["settlements"]] == [
        (order.order_no, "refunded")
    ]
    assert report["refundsPending"] == 1
    refused = await http.get(
        "/api/v1/authority/payments/reconciliation",
        headers={"Authorization": f"Bearer {citizen.token}"},
    )
    assert refused.status_code in (401, 403)
    anonymous = await http.get("/api/v1/authority/payments/reconciliation")
    assert anonymous.status_code == 401
