"""How a serving process sets Python's garbage collector, before its first request.

Two settings, both about what the collector walks while requests are answered:

- **The heap alive at start-up is frozen.** The open platform holds a large heap that lives
  as long as the process (the search planner's dictionaries, the demo and ORM mappings,
  compiled templates); every full collection walked all of it, and a profile of sold-out
  holds put about half the serving time in collections triggered while spawning the
  dependencies' tasks (bench/profiles/).
- **The young generation is collected at ``young_threshold`` objects, not Python's 700.** A
  request's objects die by reference counting, not by the collector; at 700 a young
  collection ran about 90 times a second under a release's granted holds and each caught the
  requests then in flight, promoting them to the middle and then the oldest generation. What
  was promoted died there soon after, but counted towards the oldest generation's growth,
  and that set off a full collection every second (13-21 ms during the granted holds, 30-100
  ms during a 1 000-connection crowd: the paced crowd's tail). With the threshold at 20 000 a
  young collection finds mostly finished requests, and the one-worker sequence ran no full
  collection at all (bench/README.md, branch front4).
"""

from __future__ import annotations

import gc

__all__ = ["settle_collector"]


def settle_collector(young_threshold: int) -> None:
    """Freeze what is alive now and collect the young generation at ``young_threshold``
    objects (``Settings.gc_young_threshold``); the older generations' thresholds stay."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, oldest)
