"""Thresholds of the anti-scalping (黄牛) signals, as data in the region's rules.

A signal is not a verdict: it puts a pattern in front of the authority, who looks at it and
may ban by hand. The thresholds are platform defaults chosen so that an ordinary family (one
phone booking for parents and children, a household sharing a home router) stays below them;
regions tune them in ``RegionRules.suspicion``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["SuspicionRules"]

Positive = Annotated[int, msgspec.Meta(ge=1, le=100_000)]


class SuspicionRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    rebook_within_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 30
    """A unit cancelled (退号) and booked again by an unrelated account and person this soon
    after it came back to the pool: the hand-over a scalper arranges with a buyer."""
    persons_per_account: Positive = 6
    """More distinct persons than this booked by one account within ``persons_window_days``
    (a family of self, spouse, two children and two parents is six)."""
    persons_window_days: Positive = 30
    accounts_per_device: Positive = 3
    """More accounts than this holding from one device within ``device_window_days``."""
    device_window_days: Positive = 7
    accounts_per_ip: Positive = 20
    """More accounts than this holding from one address within ``ip_window_days`` (generous:
    hospitals, offices and mobile carriers put many people behind one address)."""
    ip_window_days: Positive = 1
