"""Sign-in by SMS code: sent through the notifier, stored hashed, single use, expiring, rate
limited, and guessing slows the guesser down without locking the phone's owner out."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest
from sqlalchemy import func, select

from guahao.bootstrap import Platform
from guahao.platform.errors import GuahaoError
from guahao.platform.persistence.tables import AccountRow, NotificationRow
from guahao.platform.services.sign_in_codes import (
    CODE_LIFETIME,
    FREE_FAILURES,
    TRIES_PER_CODE,
    SignInCodes,
    delay_after,
)
from guahao.platform.services.staff import StaffActor, StaffRole
from tests.fixtures.platforms import manual_clock

PHONE = "13800138000"
ADMIN = StaffActor(id="s1", username="admin", role=StaffRole.AUTHORITY_ADMIN)


class Outbox:
    """A notifier that keeps what it was asked to send (a real adapter of the port, the
    embedded kind a demo uses, not an imitation of a service the test depends on)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Mapping[str, str]]] = []

    async def notify(self, *, account_id: str, template: str, params: Mapping[str, str]) -> None:
        self.sent.append((account_id, params))

    def last_code(self) -> str:
        found = re.search(r"(\d{6})", self.sent[-1][1]["en"])
        assert found
        return found.group(1)


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def codes(platform: Platform, outbox: Outbox) -> SignInCodes:
    return SignInCodes(platform.ports, platform.redis, outbox, platform.rules)


async def refused(code: str, awaitable: object) -> GuahaoError:
    with pytest.raises(GuahaoError) as caught:
        await awaitable  # type: ignore[misc]
    assert caught.value.code == code, caught.value
    return caught.value


async def test_the_right_code_signs_in_and_makes_the_account_once(
    platform: Platform, codes: SignInCodes, outbox: Outbox
) -> None:
    await platform.rules.change_region(
        {"rate_limits.sign_in_code_per_phone": "5/minute"}, staff=ADMIN, reason="test"
    )
    await codes.send(PHONE)
    first = await codes.verify(PHONE, outbox.last_code())
    assert first.created
    await codes.send(PHONE.replace("138", "+86 138", 1))  # the same phone, typed otherwise
    again = await codes.verify("１３８００１３８０００", outbox.last_code())
    assert (again.account_id, again.created) == (first.account_id, False)
    async with platform.ports.sessions() as session:
        accounts = await session.scalar(select(func.count()).select_from(AccountRow))
        inbox = await session.scalar(select(func.count()).select_from(NotificationRow))
    assert accounts == 1
    assert inbox == 0  # codes go to the phone (this port), not to a stored inbox


async def test_a_code_is_stored_only_as_a_keyed_hash(
    platform: Platform, codes: SignInCodes, outbox: Outbox
) -> None:
    await codes.send(PHONE)
    code = outbox.last_code()
    stored = [k async for k in platform.redis.scan_iter(match="sign-in:*")]
    assert stored
    for key in stored:
        values = await platform.redis.hgetall(key)
        assert all(code.encode() not in v for v in values.values())
        assert PHONE.encode() not in key


async def test_a_code_works_once(codes: SignInCodes, outbox: Outbox) -> None:
    await codes.send(PHONE)
    code = outbox.last_code()
    await codes.verify(PHONE, code)
    await refused("SIGN_IN_CODE_INVALID", codes.verify(PHONE, code))


async def test_a_code_expires(platform: Platform, codes: SignInCodes, outbox: Outbox) -> None:
    await codes.send(PHONE)
    manual_clock(platform).advance(seconds=CODE_LIFETIME.total_seconds())
    await refused("SIGN_IN_CODE_INVALID", codes.verify(PHONE, outbox.last_code()))


async def test_a_new_code_replaces_the_old_one(
    platform: Platform, codes: SignInCodes, outbox: Outbox
) -> None:
    await platform.rules.change_region(
        {"rate_limits.sign_in_code_per_phone": "5/minute"}, staff=ADMIN, reason="test"
    )
    await codes.send(PHONE)
    old = outbox.last_code()
    await codes.send(PHONE)
    new = outbox.last_code()
    if old != new:  # one in a million draws the same six digits twice
        await refused("SIGN_IN_CODE_INVALID", codes.verify(PHONE, old))
    assert (await codes.verify(PHONE, new)).account_id


async def test_guessing_is_slowed_down_but_the_owner_still_gets_in(
    platform: Platform, codes: SignInCodes, outbox: Outbox
) -> None:
    await codes.send(PHONE)
    for _ in range(FREE_FAILURES + 1):  # the first few wrong codes cost nothing
        await refused("SIGN_IN_CODE_INVALID", codes.verify(PHONE, "999999"))
    wait = await refused("SIGN_IN_CODE_WAIT", codes.verify(PHONE, outbox.last_code()))
    assert wait.detail["retry_after_seconds"] == delay_after(FREE_FAILURES + 1) > 0
    manual_clock(platform).advance(seconds=delay_after(FREE_FAILURES + 1))
    signed_in = await codes.verify(PHONE, outbox.last_code())  # the owner, with the SMS
    assert signed_in.account_id


async def test_a_code_dies_after_a_few_wrong_tries(
    platform: Platform, codes: SignInCodes, outbox: Outbox
) -> None:
    await codes.send(PHONE)
    for failures in range(TRIES_PER_CODE):
        manual_clock(platform).advance(seconds=delay_after(failures))
        await refused("SIGN_IN_CODE_INVALID", codes.verify(PHONE, "999999"))
    manual_clock(platform).advance(seconds=delay_after(TRIES_PER_CODE))
    await refused("SIGN_IN_CODE_INVALID", codes.verify(PHONE, outbox.last_code()))


async def test_sending_is_rate_limited_per_phone(codes: SignInCodes) -> None:
    await codes.send(PHONE)
    limited = await refused("RATE_LIMITED", codes.send(PHONE))
    assert limited.detail["limit"] == "sign_in_code:phone"


@pytest.mark.parametrize(
    "typed", ["1380013800", "12800138000", "138001380001", "abc", "١٣٨٠٠١٣٨٠٠٠"]
)
async def test_a_phone_that_is_not_a_mainland_mobile_is_refused(
    codes: SignInCodes, typed: str
) -> None:
    await refused("VALIDATION_FAILED", codes.send(typed))
