"""Password sign-in: guesses are spaced out, never a lockout; neither the answer nor its time
tells whether a phone has an account; a phone is eleven ASCII digits however it was typed."""

from __future__ import annotations

import statistics
import time

import pytest

from guahao.bootstrap import Platform
from guahao.platform.client_context import ClientContext
from guahao.platform.errors import GuahaoError
from guahao.platform.services.sign_in_delays import (
    ADDRESS_FREE_FAILURES,
    MAX_DELAY_SECONDS,
    PHONE_FREE_FAILURES,
)
from tests.fixtures.platforms import assert_refused, manual_clock, new_account, resident_id

OWNER_PHONE = "13800138000"
PASSWORD = "right-password"
RIVAL = ClientContext(device_hash="r" * 64, ip_hash="a" * 64)
OWNER = ClientContext(device_hash="o" * 64, ip_hash="b" * 64)
ARABIC_INDIC = "٨٠٠١٣٨٠٠٠"
"""Nine Arabic-Indic digits: ``\\d`` takes them, a mainland phone number never has them."""


async def _guess(platform: Platform, phone: str, client: ClientContext | None) -> GuahaoError:
    with pytest.raises(GuahaoError) as refused:
        await platform.accounts.authenticate(phone=phone, password="wrong-guess", client=client)
    return refused.value


async def test_a_rivals_guesses_keep_the_owner_out_for_a_minute_at_most(
    platform: Platform,
) -> None:
    clock = manual_clock(platform)
    owner = await platform.accounts.register(phone=OWNER_PHONE, password=PASSWORD)
    for _ in range(12):  # a rival hammering just before a release, as fast as it is let
        refused = await _guess(platform, OWNER_PHONE, RIVAL)
        assert refused.code in {"CREDENTIALS_INVALID", "SIGN_IN_WAIT"}
        clock.advance(seconds=refused.detail.get("retry_after_seconds", 0))
    assert (await _guess(platform, OWNER_PHONE, RIVAL)).detail["retry_after_seconds"] > 0
    waiting = await assert_refused(
        platform,
        "SIGN_IN_WAIT",
        platform.accounts.authenticate(phone=OWNER_PHONE, password=PASSWORD, client=OWNER),
    )
    assert 1 <= waiting.detail["retry_after_seconds"] <= MAX_DELAY_SECONDS
    clock.advance(seconds=MAX_DELAY_SECONDS)
    signed_in = await platform.accounts.authenticate(
        phone=OWNER_PHONE, password=PASSWORD, client=OWNER
    )
    assert signed_in == owner


async def test_wrong_passwords_for_one_phone_are_spaced_out_progressively(
    platform: Platform,
) -> None:
    clock = manual_clock(platform)
    await platform.accounts.register(phone=OWNER_PHONE, password=PASSWORD)
    delays = []
    for _ in range(PHONE_FREE_FAILURES + 4):
        refused = await _guess(platform, OWNER_PHONE, RIVAL)
        assert refused.code == "CREDENTIALS_INVALID"
        delays.append(refused.detail["retry_after_seconds"])
        if delays[-1]:
            too_soon = await _guess(platform, OWNER_PHONE, RIVAL)
            assert too_soon.code == "SIGN_IN_WAIT"
            assert too_soon.detail["retry_after_seconds"] == delays[-1]
        clock.advance(seconds=delays[-1])
    assert delays == [0] * PHONE_FREE_FAILURES + [2, 4, 8, 16]
    # the right password starts the count again
    await platform.accounts.authenticate(phone=OWNER_PHONE, password=PASSWORD, client=OWNER)
    assert (await _guess(platform, OWNER_PHONE, RIVAL)).detail["retry_after_seconds"] == 0


async def test_one_address_guessing_across_many_phones_is_spaced_out(platform: Platform) -> None:
    for serial in range(ADDRESS_FREE_FAILURES + 1):
        refused = await _guess(platform, f"139{serial:08d}", RIVAL)
        assert refused.code == "CREDENTIALS_INVALID"
    assert refused.detail["retry_after_seconds"] == 2
    assert (await _guess(platform, "13700000000", RIVAL)).code == "SIGN_IN_WAIT"
    # another address is not held up by it
    assert (await _guess(platform, "13700000000", OWNER)).code == "CREDENTIALS_INVALID"


async def test_sign_in_takes_as_long_for_an_unknown_phone_as_for_a_known_one(
    platform: Platform,
) -> None:
    """Wrong passwords for a registered phone and for unknown ones, interleaved so that load
    on the machine touches both alike; the medians must be close (a phone without an account
    skipping the password hash once made it about 50 ms faster)."""
    clock = manual_clock(platform)
    await platform.accounts.register(phone=OWNER_PHONE, password=PASSWORD)
    known: list[float] = []
    unknown: list[float] = []
    for serial in range(9):
        for phone, times in ((OWNER_PHONE, known), (f"136{serial:08d}", unknown)):
            started = time.perf_counter()
            refused = await _guess(platform, phone, None)
            times.append(time.perf_counter() - started)
            assert refused.code == "CREDENTIALS_INVALID"
        clock.advance(seconds=MAX_DELAY_SECONDS)  # no waits: every try checks a password
    known_median, unknown_median = statistics.median(known), statistics.median(unknown)
    assert abs(known_median - unknown_median) < 0.5 * known_median, (known, unknown)


async def test_a_phone_with_other_scripts_digits_is_not_a_phone(platform: Platform) -> None:
    await assert_refused(
        platform,
        "VALIDATION_FAILED",
        platform.accounts.register(phone="13" + ARABIC_INDIC, password=PASSWORD),
    )
    account = await new_account(platform)
    await assert_refused(
        platform,
        "VALIDATION_FAILED",
        platform.accounts.add_patient(
            account_id=account,
            name="张三",
            document_type="resident_id",
            document_number=resident_id(1),
            phone="13" + ARABIC_INDIC,
        ),
    )


async def test_a_phone_typed_full_width_or_with_the_country_code_is_one_account(
    platform: Platform,
) -> None:
    owner = await platform.accounts.register(phone="+86 138-0013-8000", password=PASSWORD)
    signed_in = await platform.accounts.authenticate(
        phone="１３８００１３８０００", password=PASSWORD
    )
    assert signed_in == owner
    await assert_refused(
        platform,
        "ACCOUNT_EXISTS",
        platform.accounts.register(phone=OWNER_PHONE, password=PASSWORD),
    )
