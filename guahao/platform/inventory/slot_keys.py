"""Redis key names: one hash tag per slot and one per account.

Everything a slot script touches shares the tag ``{slot:<id>}`` so that, on Redis Cluster,
the script runs on one shard. The account marker has its own tag ``{acct:<id>}``: on a
cluster it lives on another shard, so it is changed by its own scripts there; on one server
the hold script claims it in the same call as the unit (``hold_many.lua``'s ``claims_marker``).
"""

from __future__ import annotations

from functools import lru_cache

from guahao.platform.error_codes import refuse

__all__ = ["FAMILY_MEMORY", "TAKES_SEPARATOR", "KeyNames"]

TAKES_SEPARATOR = "}"
"""Between the slot ids of one ``slot-takes`` message (``hold_many.lua`` announces a call's
grants in one): no slot id may hold a brace (``_tag_safe``)."""

FAMILY_MEMORY = 65_536
"""How many slots' key names a worker keeps built (a few MB at most)."""


class KeyNames:
    """Builds key names under an optional prefix (one Redis shared by several regions/tests).

    >>> k = KeyNames("gh:")
    >>> k.slot_family("s1")[0], k.account_marker("a1")
    ('gh:{slot:s1}:meta', 'gh:{acct:a1}:hold')
    """

    def __init__(self, prefix: str = "") -> None:
        if "{" in prefix or "}" in prefix:
            # Redis hashes the first {...} in a key; a brace in the prefix would move every
            # key of every slot onto the same shard.
            raise ValueError("key_prefix must not contain braces")
        self.prefix = prefix
        self.family = lru_cache(maxsize=FAMILY_MEMORY)(self._family)
        """``slot_family`` as a tuple, remembered for the slots asked most recently: a
        surge asks the same few hundred slots' names for every attempt, and building them
        (seven strings, a check) was a tenth of a grant's Python (bench/profiles/engine2-*)."""

    def slot_family(self, slot_id: str) -> list[str]:
        """KEYS[1..7] of every slot script, in the order the prelude names them (built
        afresh: for slots named once, like a schedule's new slots, see ``family``)."""
        return list(self._family(slot_id))

    def _family(self, slot_id: str) -> tuple[str, ...]:
        tag = f"{self.prefix}{{slot:{_tag_safe('slot_id', slot_id)}}}"
        return (
            f"{tag}:meta",
            f"{tag}:hold_expiry",
            f"{tag}:hold_owner",
            f"{tag}:returning",
            f"{tag}:confirmed",
            f"{tag}:cancelled",
            f"{tag}:fence",
        )

    def replay_record(self, slot_id: str, idempotency_key: str) -> str:
        """Where the first answer to an idempotency key is kept, inside the slot's tag."""
        return f"{self.prefix}{{slot:{_tag_safe('slot_id', slot_id)}}}:replay:{idempotency_key}"

    def returns_channel(self) -> str:
        """The pub/sub channel on which slot scripts announce a unit that may have come back
        (``announce()`` in ``slot_prelude.lua`` builds the same name from the key).

        >>> KeyNames("gh:").returns_channel()
        'gh:guahao:slot-returns'
        """
        return f"{self.prefix}guahao:slot-returns"

    def takes_channel(self) -> str:
        """The channel on which slot scripts announce units taken: a slot id
        (``announce_take()``), or a ``hold_many`` call's slot ids joined by
        ``TAKES_SEPARATOR``.

        >>> KeyNames("gh:").takes_channel()
        'gh:guahao:slot-takes'
        """
        return f"{self.prefix}guahao:slot-takes"

    def account_marker(self, account_id: str) -> str:
        """The key naming an account's one unfinished hold."""
        return f"{self.prefix}{{acct:{_tag_safe('account_id', account_id)}}}:hold"


def _tag_safe(field: str, value: str) -> str:
    if not value or "{" in value or "}" in value:
        refuse("VALIDATION_FAILED", field=field, reason="empty or contains a brace")
    return value
