"""Rate limits at hold time and at sign-in: per account, device and address, on Redis with the
``limits`` library; the limits are region rules. A refused request names the limit and when to
retry, and changes nothing."""

from __future__ import annotations

from guahao.bootstrap import Platform
from guahao.platform.client_context import ClientContext
from guahao.platform.services.staff import StaffActor, StaffRole
from tests.fixtures.platforms import assert_refused, hold, new_account, publish_clinic

ADMIN = StaffActor(id="s1", username="admin", role=StaffRole.AUTHORITY_ADMIN)


async def tighten(platform: Platform, **limits: str) -> None:
    await platform.rules.change_region(
        {f"rate_limits.{k}": v for k, v in limits.items()}, staff=ADMIN, reason="test"
    )


async def test_an_account_hammering_holds_is_turned_away_with_when_to_retry(
    platform: Platform,
) -> None:
    slots = await publish_clinic(platform)
    await tighten(platform, hold_per_account="2/minute")
    account = await new_account(platform)
    for _ in range(2):
        booking = await hold(platform, account, slots[0])
        await platform.bookings.leave(account_id=account, booking_id=booking.id)
    refused = await assert_refused(
        platform,
        "RATE_LIMITED",
        platform.bookings.hold(account_id=account, slot_id=slots[0], idempotency_key="third"),
    )
    assert refused.detail["limit"] == "hold:account"
    assert 1 <= refused.detail["retry_after_seconds"] <= 61
    # another account is not affected
    await hold(platform, await new_account(platform), slots[0])


async def test_many_accounts_behind_one_device_share_its_limit(platform: Platform) -> None:
    slots = await publish_clinic(platform)
    await tighten(platform, hold_per_device="2/minute")
    phone = ClientContext(device_hash="device-1", ip_hash="ip-1")
    for n in range(2):
        await platform.bookings.hold(
            account_id=await new_account(platform),
            slot_id=slots[n],
            idempotency_key="k",
            client=phone,
        )
    refused = await assert_refused(
        platform,
        "RATE_LIMITED",
        platform.bookings.hold(
            account_id=await new_account(platform),
            slot_id=slots[2],
            idempotency_key="k",
            client=phone,
        ),
    )
    assert refused.detail["limit"] == "hold:device"


async def test_one_address_is_limited_too(platform: Platform) -> None:
    slots = await publish_clinic(platform)
    await tighten(platform, hold_per_ip="1/minute")
    office = ClientContext(ip_hash="ip-office")
    await platform.bookings.hold(
        account_id=await new_account(platform), slot_id=slots[0], idempotency_key="k", client=office
    )
    refused = await assert_refused(
        platform,
        "RATE_LIMITED",
        platform.bookings.hold(
            account_id=await new_account(platform),
            slot_id=slots[1],
            idempotency_key="k",
            client=office,
        ),
    )
    assert refused.detail["limit"] == "hold:ip"


async def test_the_hold_records_the_device_and_address_as_keyed_hashes(platform: Platform) -> None:
    from tests.fixtures.platforms import booking_row

    slots = await publish_clinic(platform)
    booking = await platform.bookings.hold(
        account_id=await new_account(platform),
        slot_id=slots[0],
        idempotency_key="k",
        client=ClientContext(device_hash="d" * 64, ip_hash="i" * 64),
    )
    row = await booking_row(platform, booking.id)
    assert (row.device_hash, row.ip_hash) == ("d" * 64, "i" * 64)


async def test_registrations_from_one_address_are_limited(platform: Platform) -> None:
    await tighten(platform, register_per_ip="2/hour")
    farm = ClientContext(ip_hash="ip-farm")
    for phone in ("13800000001", "13800000002"):
        await platform.accounts.register(phone=phone, password="password-1", client=farm)
    refused = await assert_refused(
        platform,
        "RATE_LIMITED",
        platform.accounts.register(phone="13800000003", password="password-1", client=farm),
    )
    assert refused.detail["limit"] == "register:ip"
