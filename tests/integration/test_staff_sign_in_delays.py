"""Staff sign-in: wrong passwords space out further attempts, as for citizens, and never lock
the officer out (ten wrong passwords used to keep a username out for fifteen minutes, which
anyone could do to the authority's officers just before a release)."""

from __future__ import annotations

import pytest

from guahao.bootstrap import Platform
from guahao.platform.client_context import ClientContext
from guahao.platform.errors import GuahaoError
from guahao.platform.services.sign_in_delays import MAX_DELAY_SECONDS, PHONE_FREE_FAILURES
from tests.fixtures.platforms import manual_clock

PASSWORD = "right-password-1"
RIVAL = ClientContext(device_hash="r" * 64, ip_hash="a" * 64)
OFFICER = ClientContext(device_hash="o" * 64, ip_hash="b" * 64)


async def _guess(
    platform: Platform, username: str = "chief", client: ClientContext = RIVAL
) -> GuahaoError:
    with pytest.raises(GuahaoError) as refused:
        await platform.staff.authenticate(username=username, password="wrong", client=client)
    return refused.value


async def test_a_rivals_guesses_keep_the_officer_out_for_a_minute_at_most(
    platform: Platform,
) -> None:
    clock = manual_clock(platform)
    created = await platform.staff.create(
        username="chief", password=PASSWORD, role="authority_admin"
    )
    delays = []
    for _ in range(20):  # as fast as it is let, well past the old ten-wrong lockout
        refused = await _guess(platform)
        assert refused.code == "STAFF_CREDENTIALS_INVALID", refused
        delays.append(refused.detail["retry_after_seconds"])
        clock.advance(seconds=delays[-1])
    assert delays[: PHONE_FREE_FAILURES + 3] == [0] * PHONE_FREE_FAILURES + [2, 4, 8]
    assert max(delays) == MAX_DELAY_SECONDS
    # too soon after a wrong one: wait, whoever asks
    await _guess(platform)
    with pytest.raises(GuahaoError) as waiting:
        await platform.staff.authenticate(username="chief", password=PASSWORD, client=OFFICER)
    assert waiting.value.code == "SIGN_IN_WAIT"
    assert 1 <= waiting.value.detail["retry_after_seconds"] <= MAX_DELAY_SECONDS
    clock.advance(seconds=MAX_DELAY_SECONDS)
    actor = await platform.staff.authenticate(username="chief", password=PASSWORD, client=OFFICER)
    assert actor.id == created.id
    # the right password starts the username's count again (the rival's address keeps its own)
    assert (await _guess(platform, client=OFFICER)).detail["retry_after_seconds"] == 0


async def test_an_unknown_username_is_refused_and_spaced_out_the_same_way(
    platform: Platform,
) -> None:
    clock = manual_clock(platform)
    delays = []
    for _ in range(PHONE_FREE_FAILURES + 2):
        refused = await _guess(platform, "nobody")
        assert refused.code == "STAFF_CREDENTIALS_INVALID"
        delays.append(refused.detail["retry_after_seconds"])
        clock.advance(seconds=delays[-1])
    assert delays == [0] * PHONE_FREE_FAILURES + [2, 4]
