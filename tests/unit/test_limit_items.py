"""A counter's key is put together from its limit item's two halves, made once per item: it
must be the key the ``limits`` library names for the same limit and identifier, or its
``get_window_stats`` would read other windows than the limiter counts."""

from __future__ import annotations

import pytest
from limits import parse_many

from guahao.platform.rate_limiting.limit_items import LimitItem


@pytest.mark.parametrize("spec", ["30/minute;300/hour", "600/minute", "5/10 seconds", "1/day"])
@pytest.mark.parametrize("identifier", ["a1", "账号-7", "with/slash", "x" * 64, ""])
def test_a_counters_key_is_the_librarys_own(spec: str, identifier: str) -> None:
    for item in parse_many(spec):
        shared = LimitItem.of("guahao-limits", "hold:account", item)
        assert shared.key(identifier) == (
            f"guahao-limits:{{{item.key_for('hold:account', identifier)}}}"
        )
        assert (shared.amount, shared.expiry) == (item.amount, item.get_expiry())
