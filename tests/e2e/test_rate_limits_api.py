"""Rate limits over HTTP: 429 with ``Retry-After``, and the device and address a hold came
from kept only as keyed hashes."""

from __future__ import annotations

from sqlalchemy import select

from guahao.platform.persistence.tables import BookingRow
from guahao.platform.services.staff import StaffActor, StaffRole
from tests.e2e.support import assert_refused
from tests.fixtures.platforms import publish_clinic

ADMIN = StaffActor(id="s1", username="admin", role=StaffRole.AUTHORITY_ADMIN)


async def test_a_device_hammering_holds_gets_429_with_retry_after(platform, sign_up):
    slots = await publish_clinic(platform)
    await platform.rules.change_region(
        {"rate_limits.hold_per_device": "2/minute"}, staff=ADMIN, reason="test"
    )
    device = {"X-Device-Id": "bot-phone-1"}
    for n in range(2):
        citizen = await sign_up()
        held = await citizen.post(
            "/api/v1/holds",
            json={"slotId": slots[n]},
            headers=device | {"Idempotency-Key": f"k{n}"},
        )
        assert held.status_code == 201, held.text
    third = await sign_up()
    refused = await third.post(
        "/api/v1/holds", json={"slotId": slots[2]}, headers=device | {"Idempotency-Key": "k"}
    )
    body = assert_refused(refused, 429, "RATE_LIMITED")
    assert body["detail"]["limit"] == "hold:device"
    assert 1 <= int(refused.headers["retry-after"]) <= 61


async def test_a_hold_keeps_the_device_and_address_only_as_keyed_hashes(platform, citizen):
    slots = await publish_clinic(platform)
    held = await citizen.post(
        "/api/v1/holds",
        json={"slotId": slots[0]},
        headers={"X-Device-Id": "my-phone", "Idempotency-Key": "k"},
    )
    assert held.status_code == 201, held.text
    async with platform.ports.sessions() as session:
        row = await session.scalar(select(BookingRow))
    vault = platform.ports.vault
    assert row.device_hash == vault.index("device", "my-phone")
    assert row.ip_hash == vault.index("ip", "127.0.0.1")
    assert "my-phone" not in (row.device_hash + row.ip_hash)
