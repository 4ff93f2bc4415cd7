"""Hospital OAuth2 clients: revocation takes effect at once, and checking secrets never
holds the event loop (scrypt runs in worker threads, a few at a time)."""

from __future__ import annotations

import asyncio
import time

import pytest

from guahao.platform.errors import GuahaoError
from guahao.platform.passwords import hash_password
from tests.fixtures.platforms import clinic


async def test_a_revoked_client_can_no_longer_sign_in_and_is_listed_as_revoked(platform):
    await platform.supply.register_hospital(clinic(code="h1"))
    registry = platform.connectors.registry
    first = await registry.issue_client("h1", ["hospital:push"])
    second = await registry.issue_client("h1", ["hospital:read"])
    assert await registry.authenticate(first.client_id, first.client_secret) == (
        "h1",
        ["hospital:push"],
    )
    assert await registry.client_active(first.client_id)

    revoked = await registry.revoke_client(first.client_id)
    assert revoked.revoked_at is not None
    again = await registry.revoke_client(first.client_id)
    assert again.revoked_at == revoked.revoked_at  # the first revocation stands

    assert not await registry.client_active(first.client_id)
    assert await registry.client_active(second.client_id)
    assert not await registry.client_active("h1.unknown")
    with pytest.raises(GuahaoError) as refused:
        await registry.authenticate(first.client_id, first.client_secret)
    assert refused.value.code == "HOSPITAL_CLIENT_INVALID"
    listed = {c.client_id: c.revoked_at is not None for c in await registry.clients("h1")}
    assert listed == {first.client_id: True, second.client_id: False}
    with pytest.raises(GuahaoError):
        await registry.revoke_client("h1.unknown")


async def test_forty_sign_ins_with_unknown_clients_cost_the_event_loop_next_to_nothing(
    platform,
):
    """Forty parallel token requests with unknown client ids once held the loop 2-4 s
    (scrypt on it, twice per unknown id)."""
    await platform.supply.register_hospital(clinic(code="h1"))
    registry = platform.connectors.registry

    async def attempt(n: int) -> str:
        try:
            await registry.authenticate(f"nobody.{n}", "guess")
        except GuahaoError as exc:
            return exc.code
        return "accepted"

    one_scrypt = time.thread_time()
    hash_password("a scrypt measured on this machine, now")
    one_scrypt = time.thread_time() - one_scrypt

    loop_cpu = time.thread_time()
    codes = await asyncio.gather(*(attempt(n) for n in range(40)))
    loop_cpu = time.thread_time() - loop_cpu
    assert set(codes) == {"HOSPITAL_CLIENT_INVALID"}
    # Forty unknown ids verified on the loop's thread cost at least forty scrypts of its CPU
    # (about 50 ms each); off it, the loop does only the lookups and refusals. Bounded by half
    # of forty scrypts measured just now rather than by a fixed figure: a fixed 0.5 s failed
    # once at 0.91 s while other test runs shared the machine's two cores.
    assert loop_cpu < 20 * one_scrypt, (
        f"the event loop's thread spent {loop_cpu:.2f} s of CPU, one scrypt {one_scrypt:.3f} s"
    )
