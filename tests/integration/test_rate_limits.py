"""Rate limits at hold time and at sign-in: per account, device and address, on Redis with the
``limits`` library; the limits are region rules. A refused request names the limit and when to
retry, and changes nothing."""

from __future__ import annotations

from guahao.bootstrap import Platform
from guahao.platform.client_context import ClientContext
from guahao.platform.errors import GuahaoError
from guahao.platform.rate_limiting import RequestLimiter
from guahao.platform.services.hold_grants import HoldAsk, HoldOutcome
from guahao.platform.services.staff import StaffActor, StaffRole
from tests.fixtures.limit_windows import window_stats
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


async def test_a_batchs_limits_only_redis_can_decide_are_asked_together_not_in_turn(
    platform: Platform,
) -> None:
    """A loop turn's grants (``grant_holds``) whose limits this process cannot decide alone
    (here a small per-account limit, always Redis's to decide) ask Redis side by side: in
    turn, a crowd near its limits would hold the whole batch for a round trip each."""
    limiter = platform.ports.limiter
    assert isinstance(limiter, RequestLimiter)
    slots = await publish_clinic(platform)
    await tighten(platform, hold_per_account="10/minute")
    asked = [
        HoldAsk(await new_account(platform), slots[n], f"k{n}", ClientContext()) for n in range(4)
    ]
    in_flight = most = 0
    decide = limiter._decide

    async def counted(counter: int) -> int:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await decide(counter)
        finally:
            in_flight -= 1

    limiter._decide = counted  # type: ignore[method-assign]
    outcomes = await platform.bookings.grant_holds(asked)
    assert [type(o).__name__ for o in outcomes] == ["HoldOutcome"] * 4
    assert most == 4  # each request's account counter, all four on their way at once
    # a refusal by Redis among them is still only that request's
    over = asked[0].account_id
    for _ in range(9):  # with the batch's hit, ten: the account's window is full
        await limiter.hit([("hold:account", "10/minute", over)])
    again = [
        HoldAsk(over, slots[4], "k-over", ClientContext()),
        HoldAsk(await new_account(platform), slots[5], "k5", ClientContext()),
    ]
    refused, granted = await platform.bookings.grant_holds(again)
    assert isinstance(refused, GuahaoError)
    assert (refused.code, refused.detail["limit"]) == ("RATE_LIMITED", "hold:account")
    assert isinstance(granted, HoldOutcome)


async def test_a_new_citizens_hold_is_counted_in_the_librarys_windows_of_each_limit(
    platform: Platform,
) -> None:
    """The region's own limits (two windows an account, one an address): what a hold
    counted, its counters new to the process and to Redis, is what the library reads back
    for each window, and a second citizen behind the address adds to the address's."""
    limits = (await platform.rules.region()).rate_limits
    assert (limits.hold_per_account, limits.hold_per_ip) == ("30/minute;300/hour", "600/minute")
    limiter = platform.ports.limiter
    assert isinstance(limiter, RequestLimiter)
    slots = await publish_clinic(platform)
    office = ClientContext(ip_hash="ip-release-office")
    citizens = [await new_account(platform) for _ in range(2)]
    for n, citizen in enumerate(citizens):
        await platform.bookings.hold(
            account_id=citizen, slot_id=slots[n], idempotency_key="k", client=office
        )
        await limiter.sync()
    for window, left in (("30/minute", 29), ("300/hour", 299)):
        for citizen in citizens:
            stats = await window_stats(limiter, window, "hold:account", citizen)
            assert stats.remaining == left
    address = await window_stats(limiter, "600/minute", "hold:ip", "ip-release-office")
    assert address.remaining == 598
