"""What a process remembers of doctors' availability answers: dropped with any of their slots,
and nothing the garbage collector's young collections walk for each new doctor."""

from __future__ import annotations

import gc
from datetime import UTC, date, datetime

from guahao.platform.services.availability_answers import AvailabilityAnswers, _Answer

START, END, LATER = date(2026, 12, 7), date(2026, 12, 20), date(2026, 12, 27)


class FollowingView:
    """The sold-out view of a process that follows the pool's channel."""

    live = True

    def listen(self, listener: object) -> None:
        pass


class StillClock:
    def now(self) -> datetime:
        return datetime(2026, 12, 7, tzinfo=UTC)


def answers() -> AvailabilityAnswers:
    return AvailabilityAnswers(
        None,  # type: ignore[arg-type]  # nothing is read: answers are kept by hand
        FollowingView(),  # type: ignore[arg-type]
        StillClock(),
        ticker=lambda: 1_000.0,
    )


def kept(body: bytes, *slot_ids: str) -> _Answer:
    return _Answer(body, 2_000.0, 2_000.0, None, slot_ids)


def test_a_slots_change_drops_every_answer_showing_it_and_no_other() -> None:
    memory = answers()
    memory._keep(("d1", START, END), kept(b"two weeks", "s1", "s2"))
    memory._keep(("d1", START, LATER), kept(b"three weeks", "s1", "s2", "s3"))
    memory._keep(("d2", START, END), kept(b"another doctor", "s4"))
    memory.slot_changed("s2")
    assert memory.remembered("d1", start=START, end=END) is None
    assert memory.remembered("d1", start=START, end=LATER) is None
    assert memory.remembered("d2", start=START, end=END) == b"another doctor"
    assert memory._key_of_slot == {"s4": ("d2", START, END)}
    assert memory._more_keys_of_slot == {}


def test_a_slot_stays_tied_to_its_other_answer_when_one_is_forgotten() -> None:
    memory = answers()
    memory._keep(("d1", START, END), kept(b"two weeks", "s1"))
    memory._keep(("d1", START, LATER), kept(b"three weeks", "s1", "s3"))
    memory._keep(("d1", START, END), kept(b"two weeks again", "s1"))  # read again
    memory._forget(("d1", START, LATER))
    memory.slot_changed("s1")
    assert memory.remembered("d1", start=START, end=END) is None
    assert len(memory) == 0
    assert (memory._key_of_slot, memory._more_keys_of_slot) == ({}, {})


def test_a_crowds_new_doctors_leave_little_a_young_collection_walks() -> None:
    """An answer is an untracked struct and its slots point at its key, not at a set each. As
    a dataclass and a set per slot, every doctor read for the first time at a release left
    one tracked object per slot until the next young collection, while the frees of the
    read's own objects kept that collection from coming. On the previous code this counted
    86 002 (43 a doctor of 40 slots), now 4 002: the key and the tuple of slot ids."""
    memory = answers()
    gc.collect()
    gc.disable()  # nothing untracked meanwhile: what is tracked is what a collection walks
    try:
        before = len(gc.get_objects())
        for n in range(2_000):
            slot_ids = tuple(f"slot-{n}-{k}" for k in range(40))
            memory._keep((f"doctor-{n}", START, END), kept(b"[]", *slot_ids))
        grown = len(gc.get_objects()) - before
    finally:
        gc.enable()
    assert len(memory) == 2_000
    assert grown < 5_000
