"""Lottery release (摇号): the draw is uniform, reproducible from its seed, and sized right."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from guahao.platform.lottery import (
    SEED_BYTES,
    LotteryRules,
    draw,
    draw_order,
    lottery_rules_of,
    new_seed,
)

ids = st.lists(st.uuids().map(lambda u: u.hex), unique=True, max_size=40)
seeds = st.binary(min_size=1, max_size=32)


@given(ids, st.integers(0, 50), seeds)
def test_exactly_the_units_are_won_and_everyone_else_loses(
    entries: list[str], units: int, seed: bytes
) -> None:
    winners, losers = draw(entries, units, seed)
    assert len(winners) == min(units, len(entries))
    assert sorted(winners + losers) == sorted(entries)
    assert not set(winners) & set(losers)


@given(ids, seeds)
def test_the_order_depends_only_on_the_set_of_entries_and_the_seed(
    entries: list[str], seed: bytes
) -> None:
    assert draw_order(entries, seed) == draw_order(list(reversed(entries)), seed)


def test_every_entry_is_equally_likely_to_win() -> None:
    """Four entries, one unit, 8000 fixed seeds: each wins about a quarter of the draws.

    The seeds are fixed, so this cannot flake; the bound is about five standard deviations
    (sd of a binomial(8000, 1/4) is about 39)."""
    wins: Counter[str] = Counter()
    for n in range(8000):
        winners, _ = draw(["a", "b", "c", "d"], 1, n.to_bytes(4, "big"))
        wins.update(winners)
    assert set(wins) == {"a", "b", "c", "d"}
    assert all(abs(count - 2000) < 200 for count in wins.values()), wins


def test_every_position_is_equally_likely_for_every_entry() -> None:
    """Speed buys nothing: the entry listed first (entered first) is not favoured anywhere."""
    places: Counter[tuple[str, int]] = Counter()
    for n in range(6000):
        for place, entry in enumerate(draw_order(["a", "b", "c"], n.to_bytes(4, "big"))):
            places[(entry, place)] += 1
    assert all(abs(count - 2000) < 200 for count in places.values()), places


def test_each_draw_gets_a_fresh_secret_seed() -> None:
    first, second = new_seed(), new_seed()
    assert len(first) == SEED_BYTES
    assert first != second


def test_a_negative_number_of_units_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        draw(["a"], -1, b"s")


def test_the_lottery_rules_have_defaults_and_refuse_unknown_fields() -> None:
    assert msgspec.convert({}, LotteryRules) == LotteryRules()
    assert LotteryRules().window_hours == 24
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"window": 3}, LotteryRules)
    assert lottery_rules_of(object()) == LotteryRules()
