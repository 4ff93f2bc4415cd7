"""On one server the hold batcher writes each ``hold_many`` call from slot families packed
once: the bytes must be exactly what hiredis packs for ``hold_many_call``'s KEYS and ARGV, or
Redis would decide the holds on other keys or arguments."""

from __future__ import annotations

import hiredis
from hypothesis import given
from hypothesis import strategies as st

from guahao.platform.inventory.hold_batches import HoldRequest, hold_many_call, packed_hold_many
from guahao.platform.inventory.lua_scripts import HOLD_MANY
from guahao.platform.inventory.slot_keys import KeyNames

NAMES = KeyNames("test:")
IDS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="{}"),
    min_size=1,
    max_size=12,
)
HOLD = st.tuples(
    st.integers(min_value=0, max_value=4),  # the slot: calls take some slots more than once
    IDS,  # hold id
    IDS,  # account id
    IDS,  # idempotency key
    st.integers(min_value=0, max_value=2**53),  # now_ms
    st.integers(min_value=1, max_value=10**9),  # ttl_ms
)


def hiredis_own(requests: list[HoldRequest], replay_ttl_ms: int) -> bytes:
    keys, args = hold_many_call(requests, replay_ttl_ms)
    return hiredis.pack_command(("EVALSHA", HOLD_MANY.sha, len(keys), *keys, *args))  # type: ignore[arg-type]


def request(hold: tuple[int, str, str, str, int, int], *, claims: bool) -> HoldRequest:
    slot, hold_id, account_id, key, now_ms, ttl_ms = hold
    slot_id = f"s{slot}"
    return HoldRequest(
        NAMES.family(slot_id),
        NAMES.replay_record(slot_id, key),
        NAMES.account_marker(account_id) if claims else None,
        hold_id,
        account_id,
        now_ms,
        now_ms + ttl_ms,
        f'["{slot_id}","{hold_id}","{now_ms + ttl_ms}"]' if claims else "",
        ttl_ms + 60_000 if claims else 0,
    )


@given(holds=st.lists(HOLD, min_size=1, max_size=70), claims=st.booleans())
def test_a_packed_hold_call_is_hiredis_own(
    holds: list[tuple[int, str, str, str, int, int]], claims: bool
) -> None:
    requests = [request(hold, claims=claims) for hold in holds]
    assert packed_hold_many(requests, 86_400_000) == hiredis_own(requests, 86_400_000)


def test_a_slots_packed_family_is_kept_between_calls_and_still_the_same_bytes() -> None:
    first = [request((1, "h1", "a1", "k1", 10, 5), claims=True)]
    second = [
        request((1, "h2", "a2", "k2", 10, 5), claims=True),
        request((2, "h3", "账号", "键", 10, 5), claims=True),
    ]
    assert packed_hold_many(first, 1_000) == hiredis_own(first, 1_000)
    assert packed_hold_many(second, 1_000) == hiredis_own(second, 1_000)
