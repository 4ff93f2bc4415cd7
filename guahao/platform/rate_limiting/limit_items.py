"""What every counter of one item of a named limit shares, made once per item.

Every grant of a release is by a citizen new to the process: its account's limit
(``30/minute;300/hour``) makes two counters at once. Each was given its key through the
library's ``RateLimitItem.key_for`` (a join of five strings made safe one by one) and its
window's RESP bytes encoded again, a counter at a time: with the lists grown an item at a
time, that was most of the limiter's CPU a new account (bench/profiles/limiter3-1-*). An
item's key differs between identifiers only by the identifier, and its window and amount not
at all, so they are made here once, and a counter's key is its identifier put between the two
halves of its item's.
"""

from __future__ import annotations

from dataclasses import dataclass

from limits import RateLimitItem

from guahao.platform.rate_limiting.packed_commands import bulk

__all__ = ["LimitItem"]

_IDENTIFIER = "\x00"
"""Stands for the identifier in the key the library names, to split it around it."""


@dataclass(frozen=True, slots=True)
class LimitItem:
    """One item of a named limit, as each of its counters uses it."""

    limit_name: str
    """The limit's name, as a refusal names it."""
    key_head: str
    """A counter's current-window key up to its identifier."""
    key_tail: str
    """The key after the identifier."""
    amount: int
    """The hits the item allows a window."""
    expiry: int
    """The item's window in seconds (``RateLimitItem.get_expiry``), which the scripts take."""
    packed_expiry: bytes
    """``expiry`` as the sync sends it (RESP)."""
    packed_hit: bytes
    """``expiry`` and one hit, the arguments the sync sends most (a hit since the last one)."""
    packed_first_hit: bytes
    """``expiry`` and one hit of a counter never sent before (``add_to_windows.lua``: the
    amount negative)."""

    @classmethod
    def of(cls, key_prefix: str, limit_name: str, item: RateLimitItem) -> LimitItem:
        """The item's shared parts, its key split from the library's own naming (the windows
        must stay where the library's ``get_window_stats`` reads them).

        >>> from limits import parse
        >>> shared = LimitItem.of("guahao-limits", "hold:ip", parse("600/minute"))
        >>> shared.key("a1"), shared.expiry, shared.packed_first_hit
        ('guahao-limits:{LIMITER/hold:ip/a1/600/1/minute}', 60, b'$2\\r\\n60\\r\\n$2\\r\\n-1\\r\\n')
        """
        head, _, tail = item.key_for(limit_name, _IDENTIFIER).partition(_IDENTIFIER)
        expiry = item.get_expiry()
        return cls(
            limit_name=limit_name,
            key_head=f"{key_prefix}:{{{head}",
            key_tail=f"{tail}}}",
            amount=item.amount,
            expiry=expiry,
            packed_expiry=bulk(expiry),
            packed_hit=bulk(expiry) + bulk(1),
            packed_first_hit=bulk(expiry) + bulk(-1),
        )

    def key(self, identifier: str) -> str:
        """The current-window key of the counter of ``identifier`` (the library's
        ``prefix:{key_for(limit name, identifier)}``)."""
        return f"{self.key_head}{identifier}{self.key_tail}"
