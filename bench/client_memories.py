"""The per-process memories a release crowd grows, measured in process (issue 15, branch clients).

For each memory changed on the branch: the CPU of a lookup that hits, of a miss and its insert,
and of an insert while the memory is full (min of repeats, timeit, so the collector is off while
timing), and the objects the collector tracks that each new key leaves behind. Run it on a tree
and on an older one to compare, e.g.::

    PYTHONPATH=. .venv/bin/python bench/client_memories.py
    git archive 5cc9ebf guahao | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old .venv/bin/python bench/client_memories.py

Nothing here touches a network, Redis or a database.
"""

from __future__ import annotations

import base64
import gc
import timeit
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from guahao.platform.personal_data import PersonalDataVault
from guahao.platform.services import availability_answers as aa
from guahao.search.columns import KEPT_NEEDLES, Columns
from guahao.web import front_answers
from guahao.web.front_answers import FrontAnswers
from guahao.web.metrics import WebMetrics


def per_call(call: Callable[[], object], number: int, repeat: int = 5) -> float:
    """Nanoseconds a call, the min of ``repeat`` runs."""
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e9


def tracked_by(make: Callable[[int], object], keys: int = 2_000) -> float:
    """Objects the collector tracks that each of ``keys`` new keys leaves."""
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        for n in range(keys):
            make(n)
        return (len(gc.get_objects()) - before) / keys
    finally:
        gc.enable()


async def _nothing(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError


def clients() -> None:
    vault = PersonalDataVault(base64.b64encode(bytes(range(32))).decode())
    hosts = [f"10.0.{n // 250}.{n % 250}" for n in range(2_000)]  # a crowd behind NATs
    front = FrontAnswers(_nothing, WebMetrics())
    for host in hosts:
        front._client(vault, host, b"warm-" + host.encode())
    hit = per_call(lambda: front._client(vault, "10.0.0.7", b"warm-10.0.0.7"), 200_000)
    devices = iter([f"phone-{n:012d}".encode() for n in range(2_000_000)])
    counter = iter(range(10**9))
    known_address = per_call(
        lambda: front._client(vault, hosts[next(counter) % 2_000], next(devices)), 20_000
    )
    new_address = per_call(
        lambda: front._client(vault, f"172.16.{next(counter)}", next(devices)), 20_000
    )
    full = FrontAnswers(_nothing, WebMetrics())
    kept = front_answers._CLIENTS_KEPT
    for n in range(kept - 1):
        full._client(vault, hosts[n % 2_000], f"full-{n}".encode())
    # a crowd going on past the bound: the clears are in the figure, spread over the inserts
    while_full = per_call(
        lambda: full._client(vault, hosts[next(counter) % 2_000], next(devices)), 100_000, 3
    )
    other = FrontAnswers(_nothing, WebMetrics())
    left = tracked_by(lambda n: other._client(vault, hosts[n % 2_000], f"new-{n}".encode()))
    print(
        f"FrontAnswers._client: hit {hit:.0f} ns; miss+insert {known_address:.0f} ns (known "
        f"address, new device), {new_address:.0f} ns (both new); insert past full "
        f"{while_full:.0f} ns; tracked objects a new device leaves {left:.1f}"
    )


class _View:
    live = True

    def listen(self, listener: object) -> None:
        pass


class _Clock:
    def now(self) -> datetime:
        return datetime(2026, 12, 7, tzinfo=UTC)


def availability(slots: int = 40) -> None:
    start, end = date(2026, 12, 7), date(2026, 12, 20)

    def answer(n: int) -> Any:
        ids = tuple(f"slot-{n}-{k}" for k in range(slots))
        return aa._Answer(b"x" * 2_000, 1e12, 1e12, None, ids)

    def memory(size: int) -> Any:
        return aa.AvailabilityAnswers(
            None,  # type: ignore[arg-type]
            _View(),  # type: ignore[arg-type]
            _Clock(),
            size=size,
            ticker=lambda: 1_000.0,
        )

    full = memory(aa.ANSWERS_SIZE)
    for n in range(aa.ANSWERS_SIZE):
        full._keep((f"doctor-{n}", start, end), answer(n))
    hit = per_call(lambda: full.remembered("doctor-777", start=start, end=end), 100_000)
    prepared = iter([((f"new-{n}", start, end), answer(10**6 + n)) for n in range(31_000)])

    def keep_next(into: Any) -> None:
        key, found = next(prepared)
        into.remembered(key[0], start=start, end=end)
        into._keep(key, found)

    while_full = per_call(lambda: keep_next(full), 5_000, 3)
    growing = memory(10**7)
    miss = per_call(lambda: keep_next(growing), 5_000, 3)
    other = memory(10**7)
    left = tracked_by(lambda n: other._keep((f"g-{n}", start, end), answer(3 * 10**6 + n)))
    print(
        f"AvailabilityAnswers ({slots} slots an answer, {aa.ANSWERS_SIZE} kept when full): hit "
        f"{hit:.0f} ns; miss+keep {miss:.0f} ns; keep while full {while_full:.0f} ns; tracked "
        f"objects a new doctor leaves {left:.1f}"
    )


def columns() -> None:
    empty = np.zeros(0, dtype=np.int32)
    calls: list[tuple[str, Callable[[Columns, str], object]]] = [
        ("_names_containing", lambda c, k: c._names_containing(k)),
        ("_aliases_containing", lambda c, k: c._aliases_containing(k)),
        ("with_catalog", lambda c, k: c.with_catalog(empty, [k])),
    ]
    for name, call in calls:
        warm = Columns(date(2026, 12, 7))
        call(warm, "warm")
        hit = per_call(lambda call=call, warm=warm: call(warm, "warm"), 50_000, 7)
        full = Columns(date(2026, 12, 7))
        for n in range(KEPT_NEEDLES + 1):
            call(full, f"old-{n}")
        news = iter([f"new-{n}" for n in range(200_000)])
        while_full = per_call(
            lambda call=call, full=full, news=news: call(full, next(news)), 20_000
        )
        print(
            f"Columns.{name} (an empty index: the miss's numpy work is its least): hit {hit:.0f} "
            f"ns; miss while full {while_full:.0f} ns"
        )


if __name__ == "__main__":
    clients()
    availability()
    columns()
