"""``guahao payments reconcile`` and ``report``: an operator checks a day again by hand."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from guahao.bootstrap import Platform
from tests.fixtures.platforms import held_with_patient, manual_clock, publish_clinic
from tests.integration.test_cli import _env, guahao


async def test_reconcile_settles_the_days_money_and_report_shows_it(
    sqlite_platform: Platform, tmp_path: Path, sqlite_url: str
) -> None:
    # One backend: the commands run the same services the suites test on both; two CLI
    # processes per run are what this costs.
    platform = sqlite_platform
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
    day = platform.payment_reconciliation.business_day().isoformat()
    key = base64.b64encode(b"k" * 32).decode()
    env = _env(
        tmp_path,
        platform.redis_url,
        GUAHAO_DATABASE_URL=sqlite_url,
        GUAHAO_DATA_KEY=key,
        GUAHAO_SECRET_KEY=key,
        GUAHAO_PAYMENT_SECRET=base64.b64encode(b"p" * 32).decode(),
    )

    reconciled = json.loads((await guahao("payments", "reconcile", "--day", day, env=env)).stdout)
    reported = json.loads((await guahao("payments", "report", "--day", day, env=env)).stdout)

    assert [(s["orderNo"], s["action"]) for s in reconciled["settlements"]] == [
        (order.order_no, "refunded")
    ]
    assert reported["settlements"] == reconciled["settlements"]
    assert reported["ordersByStatus"] == {"refunded": 1}
