"""The inventory's Lua scripts, read from the ``*.lua`` files beside this module.

Scripts run by SHA1 (EVALSHA) so a surge sends a few dozen bytes per call instead of the
script text. A server that has not seen a script yet (first call, restart, failover, SCRIPT
FLUSH) answers NOSCRIPT; `pipelining.AutoPipeline` then loads it once and resends, so nothing
has to be loaded ahead.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files

__all__ = [
    "ACCOUNT_SCRIPTS",
    "HELD_ALL",
    "HOLD_MANY",
    "LOAD_MISSING",
    "SLOT_SCRIPTS",
    "LuaScript",
]

_PACKAGE = "guahao.platform.inventory"


class LuaScript:
    """One script and its SHA1; every slot script carries the shared prelude in front."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    @classmethod
    def from_package(cls, name: str, *, prelude: str = "") -> LuaScript:
        body = files(_PACKAGE).joinpath(f"{name}.lua").read_text(encoding="utf-8")
        return cls(name, prelude + body)


def _slot_scripts() -> dict[str, LuaScript]:
    prelude = files(_PACKAGE).joinpath("slot_prelude.lua").read_text(encoding="utf-8")
    names = (
        "extend",
        "confirm",
        "release",
        "cancel_booked",
        "set_capacity",
        "set_status",
        "counts",
        "load",
        "unhold",
        "claim_returning",
        "unclaim_returning",
        "grant_drawn",
        "fence",
        "unfence",
    )
    return {name: LuaScript.from_package(name, prelude=prelude) for name in names}


SLOT_SCRIPTS: dict[str, LuaScript] = _slot_scripts()
SLOT_SCRIPTS["load_if_missing"] = LuaScript(
    "load_if_missing",
    # The hold path's lazy load after a Redis loss: several first attempts may race to load
    # the same slot, and the later loads must not wipe holds the first one already granted.
    SLOT_SCRIPTS["load"].source.replace(
        "redis.call('DEL', META,",
        "if redis.call('EXISTS', META) == 1 then return {'PRESENT'} end\nredis.call('DEL', META,",
        1,
    ),
)
"""Scripts on one slot's key family (KEYS[1..7], plus the idempotency record for unhold)."""

ACCOUNT_SCRIPTS: dict[str, LuaScript] = {
    name: LuaScript.from_package(name)
    for name in ("account_claim", "account_forget", "account_extend")
}
"""Scripts on one account's unfinished-hold marker (KEYS[1])."""

LOAD_MISSING = LuaScript.from_package("load_missing")
"""``load_if_missing`` for a batch of new slots in one call (KEYS: 7 per slot, any number of
slots whose keys one call may touch: see ``RedisInventory.load_missing``)."""

HOLD_MANY = LuaScript.from_package("hold_many")
"""The one hold script: a batch of holds in one call, decided in order (KEYS: 6 per slot, then
the holds' idempotency records and, on one server, their account markers; see
``hold_many.lua`` and ``hold_batches``). A hold that waits alone is a call of one."""

HELD_ALL = LuaScript.from_package("held_all")
"""Whether holds are still in the pool, many in one call (KEYS: four per slot, over as many
slots as one call may touch, ARGV: each slot's count of holds, then their ids and nows; no
slot prelude; see ``RedisInventory.holds_all``); ``holds`` asks it about one."""
