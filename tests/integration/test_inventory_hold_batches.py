"""Holds made in the same loop turn are decided together, and exactly as one by one.

A worker's concurrent holds go to Redis as one ``hold_many`` call (one per hash slot on a
cluster): each caller must still get the answer it would have had alone, in the order the
holds were asked, with the slot's units, replay records and account markers as they would
be. These cases run the same requests both ways on one server and on the three-master
cluster, and lose the server under a batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from guahao.platform.embedded_redis import EmbeddedRedis
from guahao.platform.errors import GuahaoError
from guahao.platform.inventory import RedisInventory
from guahao.platform.inventory.redis_inventory import MARKER_GRACE_MS
from guahao.platform.inventory.slot_keys import TAKES_SEPARATOR, KeyNames
from guahao.platform.ports import HoldGrant, SlotState

RELEASE = 1_780_000_000_000
TTL = 15 * 60 * 1000

# (slot, hold id, account, idempotency key, caller time): a release on two hot slots with
# everything that can happen to a hold in one loop turn.
REQUESTS = [
    ("a", "h1", "acct1", "k1", RELEASE),
    ("a", "h2", "acct2", "k2", RELEASE),
    ("a", "h3", "acct3", "k3", RELEASE),  # a's two units are gone: sold out mid-batch
    ("a", "h1b", "acct1", "k1", RELEASE),  # a repeat of k1: h1 again
    ("a", "h4", "acct5", "k2", RELEASE),  # k2 is acct2's request, not acct5's
    ("b", "h6", "acct1", "k6", RELEASE),  # acct1 already holds h1 (ACROSS_SLOTS)
    ("b", "h7", "acct7", "k7", RELEASE),
    ("b", "h7", "acct8", "k8", RELEASE),  # h7 names a hold on b already
    ("later", "h9", "acct9", "k9", RELEASE),  # released tomorrow
    ("closed", "h10", "acct10", "k10", RELEASE),
    ("nowhere", "h11", "acct11", "k11", RELEASE),  # never loaded
    ("b", "h12", "acct12", "k12", RELEASE + 5),  # another caller time: counted again
    ("a", "h13", "acct13", "k13", RELEASE + 5),  # still sold out at that time
]

ACROSS_SLOTS = REQUESTS[5]
"""One account's second hold, on another slot than its first."""

EXPECTED = [
    ("granted", "h1", False),
    ("granted", "h2", False),
    "SLOT_SOLD_OUT",
    ("granted", "h1", True),
    "IDEMPOTENCY_KEY_REUSED",
    "HOLD_ALREADY_ACTIVE",
    ("granted", "h7", False),
    "VALIDATION_FAILED",
    "SLOT_NOT_RELEASED",
    "SLOT_CLOSED",
    "SLOT_NOT_LOADED",
    ("granted", "h12", False),
    "SLOT_SOLD_OUT",
]


async def load_slots(inventory: RedisInventory) -> None:
    await inventory.load(SlotState(slot_id="a", capacity=2, booked=0, release_at_ms=RELEASE))
    await inventory.load(SlotState(slot_id="b", capacity=5, booked=0, release_at_ms=RELEASE))
    await inventory.load(
        SlotState(slot_id="later", capacity=5, booked=0, release_at_ms=RELEASE + 86_400_000)
    )
    await inventory.load(
        SlotState(slot_id="closed", capacity=5, booked=0, release_at_ms=RELEASE, status="closed")
    )


async def with_a_fenced(client: aioredis.Redis, prefix: str) -> RedisInventory:
    """The slots loaded, and slot ``a`` fenced by a rebuild (token ``t1``) until unfenced."""
    inventory = RedisInventory(client, key_prefix=prefix)
    await load_slots(inventory)
    assert await inventory.fence("a", token="t1", ttl_ms=10_000) is not None
    return inventory


async def attempt(
    inventory: RedisInventory, request: tuple[str, str, str, str, int]
) -> tuple[str, str, bool] | str:
    slot_id, hold_id, account_id, key, now_ms = request
    try:
        grant = await inventory.hold(
            slot_id,
            hold_id=hold_id,
            account_id=account_id,
            now_ms=now_ms,
            ttl_ms=TTL,
            idempotency_key=key,
        )
    except GuahaoError as err:
        return err.code
    assert grant.expires_at_ms > now_ms
    return ("granted", grant.hold_id, grant.replayed)


async def what_redis_holds(client: aioredis.Redis, prefix: str) -> dict[str, object]:
    """The state the requests left: each slot's counts, every account's marker."""
    inventory = RedisInventory(client, key_prefix=prefix)
    counts = await inventory.counts(["a", "b", "later", "closed"], now_ms=RELEASE + 5)
    keys = KeyNames(prefix)
    markers = {}
    for n in range(14):
        marker = await client.get(keys.account_marker(f"acct{n}"))
        if marker is not None:
            markers[f"acct{n}"] = marker
    return {
        "counts": {slot: (c.held, c.available) for slot, c in counts.items()},
        "markers": markers,
    }


async def script_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


async def test_a_batch_of_holds_is_decided_in_order_exactly_as_one_by_one(
    slot_pool_redis: aioredis.Redis,
) -> None:
    alone = RedisInventory(slot_pool_redis, key_prefix="alone:")
    together = RedisInventory(slot_pool_redis, key_prefix="together:")
    await load_slots(alone)
    await load_slots(together)

    one_by_one = [await attempt(alone, request) for request in REQUESTS]
    if isinstance(slot_pool_redis, RedisCluster):
        # a cluster decides each hash slot's holds in a call of their own, on its own shard,
        # and those calls are in no fixed order: acct1's hold on ``b`` would race its hold on
        # ``a`` for the account's marker (either may win: see the next test), so it is asked
        # in the next loop turn
        first_turn = [r for r in REQUESTS if r is not ACROSS_SLOTS]
        batched = await asyncio.gather(*(attempt(together, r) for r in first_turn))
        batched.insert(REQUESTS.index(ACROSS_SLOTS), await attempt(together, ACROSS_SLOTS))
    else:
        # the same requests in one loop turn: one batch
        batched = await asyncio.gather(*(attempt(together, request) for request in REQUESTS))

    assert one_by_one == EXPECTED
    assert batched == EXPECTED
    assert await what_redis_holds(slot_pool_redis, "together:") == await what_redis_holds(
        slot_pool_redis, "alone:"
    )


async def test_one_accounts_holds_on_two_slots_in_one_turn_grant_exactly_one(
    slot_pool_redis: aioredis.Redis,
) -> None:
    """Asked together, neither hold comes first: on a cluster they are calls to two shards,
    so which one is granted is not fixed, but never both and never neither."""
    inventory = RedisInventory(slot_pool_redis, key_prefix="two-slots:")
    await load_slots(inventory)
    for round_ in range(5):
        account = f"acct-two-{round_}"
        outcomes = await asyncio.gather(
            attempt(inventory, ("a", f"x{round_}", account, f"kx{round_}", RELEASE)),
            attempt(inventory, ("b", f"y{round_}", account, f"ky{round_}", RELEASE)),
        )
        granted = [
            (slot, o) for slot, o in zip("ab", outcomes, strict=True) if isinstance(o, tuple)
        ]
        assert len(granted) == 1, outcomes
        assert "HOLD_ALREADY_ACTIVE" in outcomes
        slot, (_granted, hold_id, _replayed) = granted[0]
        # given back, so the account may hold again in the next round
        assert await inventory.release(slot, hold_id=hold_id, account_id=account, now_ms=RELEASE)


async def test_on_one_server_a_loop_turns_holds_are_one_script_call(
    redis_client: aioredis.Redis,
) -> None:
    inventory = RedisInventory(redis_client, key_prefix="one-call:")
    await load_slots(inventory)
    await attempt(inventory, ("b", "h0", "acct0", "k0", RELEASE))  # the script is loaded
    await redis_client.config_resetstat()
    outcomes = await asyncio.gather(*(attempt(inventory, request) for request in REQUESTS))
    assert outcomes == EXPECTED
    assert await script_calls(redis_client) == 1


async def test_a_batchs_grants_are_announced_in_one_takes_message_naming_each_slot_once(
    redis_client: aioredis.Redis,
) -> None:
    """Listeners of ``slot-takes`` drop a slot's remembered count on its id: one message per
    batch names every slot that gave units in it, once, joined by ``TAKES_SEPARATOR``."""
    inventory = RedisInventory(redis_client, key_prefix="takes:")
    await load_slots(inventory)
    listener = redis_client.pubsub()
    await listener.subscribe(KeyNames("takes:").takes_channel())
    try:
        await listener.get_message(timeout=1.0)  # the subscription's confirmation
        await asyncio.gather(*(attempt(inventory, request) for request in REQUESTS))
        heard = []
        while (message := await listener.get_message(timeout=0.3)) is not None:
            heard.append(message["data"])
    finally:
        await listener.aclose()
    assert len(heard) == 1
    assert sorted(heard[0].decode().split(TAKES_SEPARATOR)) == ["a", "b"]


async def until_busy(url: str) -> None:
    """Return once the server no longer answers a PING at once (a script is running)."""
    while True:
        probe = aioredis.Redis.from_url(url)
        try:
            await asyncio.wait_for(probe.ping(), timeout=0.05)
        except TimeoutError:
            return
        finally:
            await probe.aclose()
        await asyncio.sleep(0.01)


async def test_a_lost_server_answers_every_caller_of_a_batch_with_an_error_and_applies_nothing(
    tmp_path: Path,
) -> None:
    """The server dies while the batch waits behind another client's script: every caller is
    told the inventory is unavailable (none is left waiting, none told a grant), and the
    server's data, back from its append-only file, has none of the batch's holds."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = EmbeddedRedis(tmp_path / "lost", port=port, persist=True)
    await asyncio.to_thread(server.start)
    client = aioredis.Redis.from_url(server.url)
    blocker = aioredis.Redis.from_url(server.url)
    try:
        inventory = RedisInventory(client, key_prefix="lost:")
        await load_slots(inventory)
        await attempt(inventory, ("b", "h0", "acct0", "k0", RELEASE))  # warm: script, socket
        pid = int((await client.info("server"))["process_id"])
        await blocker.ping()
        spin = asyncio.create_task(
            blocker.eval(
                "local t = redis.call('TIME') local e = t[1] * 1000000 + t[2] + 2000000 "
                "repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= e return 1",
                0,
            )
        )
        await until_busy(server.url)  # the spin runs: the batch will wait behind it
        batch = asyncio.gather(*(attempt(inventory, request) for request in REQUESTS[:8]))
        await asyncio.sleep(0.2)  # the batch is sent and queued on the server
        os.kill(pid, signal.SIGKILL)
        outcomes = await asyncio.wait_for(batch, timeout=30)
        with pytest.raises(RedisConnectionError):  # the other client lost it too
            await spin
        assert outcomes == ["INVENTORY_UNAVAILABLE"] * 8
    finally:
        await client.aclose()
        await blocker.aclose()
        await asyncio.to_thread(server.stop)
    # back from disk: the warm-up hold only
    again = EmbeddedRedis(tmp_path / "lost", port=port, persist=True)
    await asyncio.to_thread(again.start)
    client = aioredis.Redis.from_url(again.url)
    try:
        state = await what_redis_holds(client, "lost:")
        assert state["counts"] == {"a": (0, 2), "b": (1, 4), "later": (0, 5), "closed": (0, 5)}
        assert set(state["markers"]) == {"acct0"}  # type: ignore[arg-type]
        assert await client.keys("lost:*:replay:*") == [b"lost:{slot:b}:replay:k0"]
    finally:
        await client.aclose()
        await asyncio.to_thread(again.stop)


async def test_a_crowd_on_one_hot_slot_in_large_batches_gets_exactly_its_units(
    slot_pool_redis: aioredis.Redis,
) -> None:
    """Several workers, each sending its crowd's holds in batches of the default size: the
    batches of different workers interleave on the server, and still the slot gives exactly
    its capacity, the rest sold out."""
    inventories = [RedisInventory(slot_pool_redis, key_prefix="hot:") for _ in range(3)]
    await inventories[0].load(
        SlotState(slot_id="hot", capacity=37, booked=0, release_at_ms=RELEASE)
    )

    async def one(n: int) -> HoldGrant | str:
        try:
            return await inventories[n % 3].hold(
                "hot",
                hold_id=f"h{n}",
                account_id=f"acct{n}",
                now_ms=RELEASE,
                ttl_ms=TTL,
                idempotency_key=f"k{n}",
            )
        except GuahaoError as err:
            return err.code

    outcomes = await asyncio.gather(*(one(n) for n in range(600)))
    grants = [o for o in outcomes if isinstance(o, HoldGrant)]
    assert len(grants) == 37
    assert len({g.hold_id for g in grants}) == 37
    assert {o for o in outcomes if not isinstance(o, HoldGrant)} == {"SLOT_SOLD_OUT"}
    counts = (await inventories[0].counts(["hot"], now_ms=RELEASE))["hot"]
    assert (counts.held, counts.available) == (37, 0)


async def test_a_fenced_slot_in_a_batch_waits_for_its_rebuild_while_the_others_are_answered(
    slot_pool_redis: aioredis.Redis,
) -> None:
    inventory = await with_a_fenced(slot_pool_redis, "fenced:")
    on_a = asyncio.ensure_future(attempt(inventory, ("a", "h1", "acct1", "k1", RELEASE)))
    on_b = asyncio.ensure_future(attempt(inventory, ("b", "h2", "acct2", "k2", RELEASE)))
    assert await asyncio.wait_for(on_b, 5) == ("granted", "h2", False)
    await asyncio.sleep(0.1)
    assert not on_a.done()  # nothing is decided on a slot a rebuild is reloading
    await inventory.unfence("a", token="t1")
    assert await asyncio.wait_for(on_a, 5) == ("granted", "h1", False)


async def with_a_returning_unit(inventory: RedisInventory) -> None:
    """Slot ``back``: its one unit booked and cancelled, returning to the pool only at
    ``RELEASE + 1000`` (until then it is sold out)."""
    await inventory.load(SlotState(slot_id="back", capacity=1, booked=1, release_at_ms=RELEASE))
    assert await inventory.cancel_booked(
        "back", unit_id="u1", now_ms=RELEASE, return_at_ms=RELEASE + 1000
    )


async def test_a_batch_counts_returning_units_and_confirmed_holds_where_its_slots_have_them(
    slot_pool_redis: aioredis.Redis,
) -> None:
    """The hold script asks once a call whether any of its slots has a fence, a returning
    unit or a confirmed hold (at a release none has), and only then each slot for its own: a
    slot that has them, decided in one call beside slots that have none, must still count
    its returning unit and know its confirmed hold id."""
    inventory = RedisInventory(slot_pool_redis, key_prefix="kept:")
    await load_slots(inventory)
    await with_a_returning_unit(inventory)
    await inventory.load(SlotState(slot_id="done", capacity=5, booked=0, release_at_ms=RELEASE))
    assert await attempt(inventory, ("done", "h1", "acct1", "k1", RELEASE)) == (
        "granted",
        "h1",
        False,
    )
    assert await inventory.confirm("done", hold_id="h1", account_id="acct1", now_ms=RELEASE)

    outcomes = await asyncio.gather(
        attempt(inventory, ("b", "h2", "acct2", "k2", RELEASE)),
        attempt(inventory, ("back", "h3", "acct3", "k3", RELEASE)),
        attempt(inventory, ("done", "h1", "acct4", "k4", RELEASE)),  # h1 names a booked unit
        attempt(inventory, ("a", "h5", "acct5", "k5", RELEASE)),
    )
    assert outcomes == [
        ("granted", "h2", False),
        "SLOT_SOLD_OUT",
        "VALIDATION_FAILED",
        ("granted", "h5", False),
    ]
    counts = await inventory.counts(["back", "done"], now_ms=RELEASE)
    assert (counts["back"].returning, counts["back"].available) == (1, 0)
    assert (counts["done"].booked, counts["done"].held) == (1, 0)
    # the unit is back at its time
    back = await attempt(inventory, ("back", "h6", "acct6", "k6", RELEASE + 1000))
    assert back == ("granted", "h6", False)


async def test_a_fenced_slot_and_a_slot_with_a_returning_unit_in_one_batch(
    slot_pool_redis: aioredis.Redis,
) -> None:
    """Both kinds in one call: the fenced slot's hold waits for the rebuild, the other slot
    still counts its returning unit."""
    inventory = await with_a_fenced(slot_pool_redis, "fenced-kept:")
    await with_a_returning_unit(inventory)
    on_a = asyncio.ensure_future(attempt(inventory, ("a", "h1", "acct1", "k1", RELEASE)))
    on_back = asyncio.ensure_future(attempt(inventory, ("back", "h2", "acct2", "k2", RELEASE)))
    assert await asyncio.wait_for(on_back, 5) == "SLOT_SOLD_OUT"
    await asyncio.sleep(0.1)
    assert not on_a.done()
    await inventory.unfence("a", token="t1")
    assert await asyncio.wait_for(on_a, 5) == ("granted", "h1", False)


async def test_the_platforms_offer_on_a_fenced_slot_waits_for_its_rebuild_and_claims_no_marker(
    slot_pool_redis: aioredis.Redis,
) -> None:
    """An offer is one hold sent alone (a ``hold_many`` call of one, without a marker)."""
    inventory = await with_a_fenced(slot_pool_redis, "offer:")
    offer = asyncio.ensure_future(
        inventory.offer_hold(
            "a", hold_id="o1", account_id="acct1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="o1"
        )
    )
    await asyncio.sleep(0.1)
    assert not offer.done()
    await inventory.unfence("a", token="t1")
    grant = await asyncio.wait_for(offer, 5)
    assert (grant.hold_id, grant.replayed) == ("o1", False)
    assert await slot_pool_redis.exists(KeyNames("offer:").account_marker("acct1")) == 0
    # the account may still hold a unit of its own, on the same slot
    assert await attempt(inventory, ("a", "h1", "acct1", "k1", RELEASE)) == ("granted", "h1", False)
    assert await attempt(inventory, ("a", "h2", "acct2", "k2", RELEASE)) == "SLOT_SOLD_OUT"
    again = await inventory.offer_hold(
        "a", hold_id="o1", account_id="acct1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="o1"
    )
    assert (again.hold_id, again.replayed) == ("o1", True)


async def test_asking_whether_a_hold_stands_waits_out_a_fence_and_knows_confirmed_holds(
    slot_pool_redis: aioredis.Redis,
) -> None:
    """``holds`` is ``held_all.lua`` asked about one hold: it waits for a rebuild where
    ``holds_all`` answers that it cannot say."""
    inventory = RedisInventory(slot_pool_redis, key_prefix="stands:")
    await load_slots(inventory)
    await attempt(inventory, ("a", "h1", "acct1", "k1", RELEASE))
    await attempt(inventory, ("b", "h2", "acct2", "k2", RELEASE))
    await inventory.confirm("b", hold_id="h2", account_id="acct2", now_ms=RELEASE)
    assert await inventory.holds("a", hold_id="h1", now_ms=RELEASE) is True
    assert await inventory.holds("a", hold_id="h1", now_ms=RELEASE + TTL) is False  # ran out
    assert await inventory.holds("a", hold_id="nobody", now_ms=RELEASE) is False
    assert await inventory.holds("b", hold_id="h2", now_ms=RELEASE + TTL) is True  # confirmed
    with pytest.raises(GuahaoError) as caught:
        await inventory.holds("nowhere", hold_id="h1", now_ms=RELEASE)
    assert caught.value.code == "SLOT_NOT_LOADED"
    assert await inventory.fence("a", token="t1", ttl_ms=10_000) is not None
    assert await inventory.holds_all([("a", "h1", RELEASE)]) == {"h1": False}
    asked = asyncio.ensure_future(inventory.holds("a", hold_id="h1", now_ms=RELEASE))
    await asyncio.sleep(0.1)
    assert not asked.done()
    await inventory.unfence("a", token="t1")
    assert await asyncio.wait_for(asked, 5) is True


async def test_a_commits_holds_over_several_slots_are_each_answered_as_alone(
    slot_pool_redis: aioredis.Redis,
) -> None:
    """``holds_all`` sends the holds grouped by slot (``held_all.lua`` reads a slot's fence
    and meta once for all its holds): asked in any order, over slots fenced, missing or
    loaded, each hold gets the answer it gets alone."""
    inventory = RedisInventory(slot_pool_redis, key_prefix="grouped:")
    await load_slots(inventory)
    await inventory.load(SlotState(slot_id="c", capacity=5, booked=0, release_at_ms=RELEASE))
    early, now = RELEASE, RELEASE + TTL // 2
    for request in [
        ("a", "h2", "acct2", "k2", early),  # runs out before the others
        ("a", "h1", "acct1", "k1", now),
        ("b", "h3", "acct3", "k3", now),
        ("b", "h4", "acct4", "k4", now),
        ("c", "h5", "acct5", "k5", now),
    ]:
        assert (await attempt(inventory, request))[0] == "granted"  # type: ignore[index]
    await inventory.confirm("b", hold_id="h4", account_id="acct4", now_ms=now)
    assert await inventory.fence("c", token="t1", ttl_ms=10_000) is not None
    later = early + TTL + 1  # h2 ran out, the others stand
    checks = [
        ("a", "h1", later),
        ("b", "h3", later),
        ("nowhere", "h6", later),  # the slot is not loaded
        ("a", "nobody", later),  # never held
        ("c", "h5", later),  # a rebuild's fence stands
        ("b", "h4", now + 2 * TTL),  # confirmed: held however late
        ("a", "h2", later),  # ran out
        ("b", "h3", now + 2 * TTL),  # asked again, later: ran out by then
    ]

    together = await inventory.holds_all(checks)

    assert together == {
        "h1": True,
        "h3": False,  # the last answer about h3 (its later time) stands
        "h6": False,
        "nobody": False,
        "h5": False,
        "h4": True,
        "h2": False,
    }
    for slot_id, hold_id, now_ms in checks:
        if slot_id not in ("nowhere", "c"):  # holds alone refuses the one, waits out the other
            alone = await inventory.holds(slot_id, hold_id=hold_id, now_ms=now_ms)
            assert alone is (await inventory.holds_all([(slot_id, hold_id, now_ms)]))[hold_id]
    await inventory.unfence("c", token="t1")
    assert await inventory.holds_all([("c", "h5", later), ("a", "h1", later)]) == {
        "h5": True,
        "h1": True,
    }


async def test_a_commits_survival_check_reads_each_slot_once_not_each_hold(
    redis_client: aioredis.Redis,
) -> None:
    """Twenty holds of one slot (a release's grants crowd onto a few): the fence is read once,
    each hold's expiry once, and the meta not at all (every hold was found)."""
    inventory = RedisInventory(redis_client, key_prefix="once:")
    await inventory.load(SlotState(slot_id="s", capacity=20, booked=0, release_at_ms=RELEASE))
    for n in range(20):
        await attempt(inventory, ("s", f"h{n}", f"acct{n}", f"k{n}", RELEASE))
    await redis_client.config_resetstat()

    held = await inventory.holds_all([("s", f"h{n}", RELEASE) for n in range(20)])

    assert held == {f"h{n}": True for n in range(20)}
    stats = await redis_client.info("commandstats")
    assert stats["cmdstat_exists"]["calls"] == 1  # the fence, once for the slot
    assert stats["cmdstat_zscore"]["calls"] == 20


async def test_on_one_server_a_grant_writes_the_accounts_marker_as_the_rebuild_would(
    redis_client: aioredis.Redis,
) -> None:
    """The marker the hold script writes on one server is the JSON ``load`` claims after a
    Redis loss, with a PX of the hold's time plus the grace, also for a slot id JSON has to
    escape."""
    inventory = RedisInventory(redis_client, key_prefix="marker:")
    slot_id = 'slot/"中文"\\x'
    await inventory.load(SlotState(slot_id=slot_id, capacity=2, booked=0, release_at_ms=RELEASE))
    grant = await inventory.hold(
        slot_id, hold_id="h1", account_id="acct1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k1"
    )
    marker = KeyNames("marker:").account_marker("acct1")
    written = await redis_client.get(marker)
    assert written is not None
    assert json.loads(written) == [slot_id, "h1", str(grant.expires_at_ms)]
    assert TTL + MARKER_GRACE_MS - 5_000 < await redis_client.pttl(marker) <= TTL + MARKER_GRACE_MS
    await inventory.load(SlotState(slot_id="s2", capacity=2, booked=0, release_at_ms=RELEASE))
    with pytest.raises(GuahaoError) as caught:
        await inventory.hold(
            "s2", hold_id="h2", account_id="acct1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k2"
        )
    assert caught.value.code == "HOLD_ALREADY_ACTIVE"
    assert caught.value.detail["active_slot_id"] == slot_id
    assert await inventory.release(slot_id, hold_id="h1", account_id="acct1", now_ms=RELEASE)
    assert await redis_client.exists(marker) == 0  # released: the marker named this hold
