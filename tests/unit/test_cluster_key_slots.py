"""Every multi-key script and transaction touches one Redis Cluster hash slot.

A Lua script or a MULTI whose keys fall in two hash slots is refused by a cluster (CROSSSLOT)
and works on a single server, so a key layout that breaks it passes every test on one Redis.
This audit reads each script's source for the highest ``KEYS[n]`` it uses and checks that the
keys its caller passes are that many and share a slot, over awkward ids and prefixes.
"""

from __future__ import annotations

import re

import pytest
from redis.crc import key_slot

from guahao.platform.inventory.hold_batches import HoldRequest, hold_many_call
from guahao.platform.inventory.lua_scripts import (
    ACCOUNT_SCRIPTS,
    HELD_ALL,
    HOLD_MANY,
    SLOT_SCRIPTS,
)
from guahao.platform.inventory.slot_keys import KeyNames
from guahao.platform.jobs import SaqJobs
from guahao.platform.payments import sandbox
from guahao.platform.rate_limiting.redis_limiter import DECIDE_IN_WINDOW
from guahao.platform.refused_demand import DIRTY_KEY, refused_key
from guahao.platform.services import refusal_fold, registrations, sign_in_codes
from guahao.web import idempotency

IDS = ["s1", "01JD0Z8Q4WJ3M6T0V8X2K5N7PA", "slot:with:colons", "中文", "a" * 64]
PREFIXES = ["", "gh:", "test:", "region-7:"]


def keys_used(source: str) -> int:
    """The highest ``KEYS[n]`` a script reads (0 when it reads none)."""
    return max((int(n) for n in re.findall(r"KEYS\[(\d+)\]", source)), default=0)


def one_slot(keys: list[str]) -> bool:
    return len({key_slot(key.encode()) for key in keys}) == 1


@pytest.mark.parametrize("name", sorted(SLOT_SCRIPTS))
def test_each_slot_script_gets_all_its_keys_in_the_slots_one_hash_slot(name: str) -> None:
    script = SLOT_SCRIPTS[name]
    for prefix in PREFIXES:
        names = KeyNames(prefix)
        for slot_id in IDS:
            keys = names.slot_family(slot_id)
            if name == "unhold":  # the request's idempotency record rides along
                keys = [*keys, names.replay_record(slot_id, "idem-key")]
            assert keys_used(script.source) <= len(keys), name
            assert one_slot(keys), (name, keys)


def test_a_hold_call_on_a_cluster_gets_its_slots_keys_in_one_hash_slot() -> None:
    """``hold_many.lua`` reads its keys by computed index, so the audit above cannot count
    them: the call ``hold_many_call`` builds for holds of one slot (as the batcher sends on a
    cluster, with no account marker) must fall in that slot's hash slot."""
    for prefix in PREFIXES:
        names = KeyNames(prefix)
        for slot_id in IDS:
            requests = [
                HoldRequest(
                    names.family(slot_id),
                    names.replay_record(slot_id, f"idem-{n}"),
                    None,
                    f"h{n}",
                    f"a{n}",
                    0,
                    1,
                )
                for n in range(3)
            ]
            keys, args = hold_many_call(requests, 60_000)
            assert len(keys) == 6 + 3
            assert args[:4] == [1, 3, 60_000, 0]
            assert one_slot(keys), keys


@pytest.mark.parametrize("name", sorted(ACCOUNT_SCRIPTS))
def test_account_scripts_touch_only_the_accounts_marker(name: str) -> None:
    assert keys_used(ACCOUNT_SCRIPTS[name].source) == 1


def test_no_inventory_script_names_a_key_of_its_own() -> None:
    """Keys reach a script only as ``KEYS``: a key built inside Lua (the account's marker from
    a slot script, say) is not declared, so a cluster client cannot route by it and the shard
    may not hold it."""
    literal_key = re.compile(r"redis\.call\(\s*'[A-Za-z]+'\s*,\s*['\"]")
    for script in (*SLOT_SCRIPTS.values(), *ACCOUNT_SCRIPTS.values(), HOLD_MANY, HELD_ALL):
        assert not literal_key.search(script.source), script.name
        assert "..KEYS" not in script.source.replace(" ", ""), script.name


@pytest.mark.parametrize(
    "source",
    [
        sign_in_codes.CHECK_CODE,
        registrations._TAKE,
        idempotency._RENEW.source,
        idempotency._CLAIM.source,
        idempotency._SETTLE.source,
        sandbox._CREATE,
        sandbox._PAY,
        sandbox._CLOSE,
    ],
    ids=[
        "sign-in code",
        "registration",
        "idempotency lease",
        "idempotency claim",
        "idempotency answer",
        "create",
        "pay",
        "close",
    ],
)
def test_single_key_scripts_elsewhere_read_one_key(source: str) -> None:
    assert keys_used(source) == 1


def test_a_payment_refund_keeps_order_and_refunds_under_the_order_number() -> None:
    assert keys_used(sandbox._REFUND) == 2
    for order_no in IDS:
        assert one_slot([sandbox._order_key(order_no), sandbox._refunds_key(order_no)])


def test_the_rate_limit_counter_keys_share_their_tag() -> None:
    """The exact path's script reads ``prefix:{key}/-1`` and ``prefix:{key}``."""
    assert keys_used(DECIDE_IN_WINDOW.source) == 2
    for ident in IDS:
        current = f"guahao-limits:{{LIMITER/hold/{ident}/5/1/second}}"
        assert one_slot([f"{current}/-1", current])


def test_the_refusal_fold_moves_the_dirty_set_within_one_slot() -> None:
    """``SUNIONSTORE folding folding dirty`` inside MULTI."""
    assert one_slot([DIRTY_KEY, refusal_fold._FOLDING_KEY])
    assert refused_key("s1") != refused_key("s2")


def test_the_job_queue_keeps_every_key_of_the_queue_on_one_shard_on_a_cluster() -> None:
    """saq's scripts and transactions span a queue's keys and its jobs' keys; on a cluster the
    queue is named ``{guahao}`` so all of them share that tag."""
    queue = SaqJobs("redis+cluster://127.0.0.1:1").queue
    keys = [
        queue.namespace(part) for part in ("incomplete", "queued", "active", "schedule", "stats")
    ]
    keys += [queue.job_id("expire_booking:b1"), f"saq:abort:{queue.job_id('x')}"]
    assert one_slot(keys), keys
    assert SaqJobs("redis://127.0.0.1:1").queue.name == "guahao"  # one server: name unchanged
