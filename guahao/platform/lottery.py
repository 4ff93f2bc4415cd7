"""Lottery release (摇号) as pure rules: the window, the draw and its fairness.

For the scarcest sessions speed is the only thing a bot is better at. A lottery session takes
requests during a window and then draws: every eligible entry has the same chance, so arriving
in the first millisecond of the window is worth exactly as much as arriving in the last.

The draw is a uniform shuffle (Fisher–Yates, ``random.Random.shuffle``) seeded with 32 bytes
from ``secrets`` at the moment of the draw. The entries are sorted by id first, so the order
depends only on the set of entries and the seed: publishing the seed afterwards lets anyone
re-run the draw and check it, and nobody can know the seed before the draw.

Why not weighted (by waiting time, by earlier losses, by age): every weight is something an
applicant can shape — enter many draws to collect losses, register early accounts — and it
makes an independent check of a published draw depend on data the public cannot see. The one
group the platform does put first, patients whose session the hospital stopped, is served by
the waitlist's priority instead, and one entry per person per session keeps the odds equal
per person rather than per account.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable
from typing import Annotated, Any

import msgspec

__all__ = ["SEED_BYTES", "LotteryRules", "draw", "draw_order", "lottery_rules_of", "new_seed"]

SEED_BYTES = 32


class LotteryRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The region's lottery rules (part of the versioned region rules as ``lottery``)."""

    window_hours: Annotated[int, msgspec.Meta(ge=1, le=168)] = 24
    """When a hospital marks a session as lottery without naming a window: entries open this
    many hours before the session's release time, and the draw is at the release time."""
    max_entries_per_person_per_day: Annotated[int, msgspec.Meta(ge=1, le=10)] = 2
    """Draws one person may enter for sessions on the same visit day (no one can enter every
    scarce doctor of a day and keep the best)."""
    losers_join_waitlist: bool = True
    """Entries that lose join the session's waitlist in their drawn order, so a unit freed
    later goes to the next in the draw rather than to the fastest clicker."""


def lottery_rules_of(rules: Any) -> LotteryRules:
    """The ``lottery`` part of the region's rules, or the defaults when the rules carry none.

    >>> lottery_rules_of(object()).window_hours
    24
    """
    found = getattr(rules, "lottery", None)
    return found if isinstance(found, LotteryRules) else LotteryRules()


def new_seed() -> bytes:
    """A fresh, unpredictable seed for one draw."""
    return secrets.token_bytes(SEED_BYTES)


def draw_order(entry_ids: Iterable[str], seed: bytes) -> list[str]:
    """Every entry in a uniformly random order fixed by ``seed`` (and not by input order).

    >>> draw_order(["c", "a", "b"], b"x") == draw_order(["b", "c", "a"], b"x")
    True
    >>> sorted(draw_order(["c", "a", "b"], b"x"))
    ['a', 'b', 'c']
    """
    order = sorted(set(entry_ids))
    random.Random(seed).shuffle(order)
    return order


def draw(entry_ids: Iterable[str], units: int, seed: bytes) -> tuple[list[str], list[str]]:
    """(winners, losers): the first ``units`` of the drawn order win, the rest lose in order.

    >>> winners, losers = draw(["a", "b", "c"], 2, b"seed")
    >>> len(winners), len(losers), sorted(winners + losers)
    (2, 1, ['a', 'b', 'c'])
    """
    if units < 0:
        raise ValueError("units must not be negative")
    order = draw_order(entry_ids, seed)
    return order[:units], order[units:]
