"""The sold-out view's bookkeeping: an answer overtaken by a give-back is never kept.

The subscription itself is tested against a real Redis (tests/integration/
test_inventory_local_refusals.py, tests/e2e/test_sold_out_answers.py); here the order of
events a worker can see is driven by hand: a sold-out answer from Redis arrives after the
worker asked, and an announcement of the same slot may arrive in between.
"""

from __future__ import annotations

from guahao.platform.inventory.sold_out_view import SoldOutView


def live_view(size: int = 100) -> SoldOutView:
    view = SoldOutView("test:guahao:slot-returns", size=size)
    view._live = True  # as after the channel's subscribe confirmation
    return view


def test_an_answer_is_believed_until_its_slot_could_free_a_unit_by_itself() -> None:
    view = live_view()
    assert view.mark("s1", view.ticket(), until_ms=1_000, holders=["a1"])
    assert view.refuses("s1", "a2", now_ms=999)
    assert not view.refuses("s1", "a2", now_ms=1_000)  # the first hold ran out
    assert len(view) == 0


def test_accounts_holding_on_the_slot_are_never_refused_from_memory() -> None:
    view = live_view()
    view.mark("s1", view.ticket(), until_ms=1_000, holders=["a1", "a9"])
    assert not view.refuses("s1", "a1", now_ms=10)
    assert not view.refuses("s1", "a9", now_ms=10)
    assert view.refuses("s1", "a2", now_ms=10)


def test_an_answer_overtaken_by_a_give_back_of_its_slot_is_not_kept() -> None:
    view = live_view()
    asked = view.ticket()
    view.announced("s1")  # a unit came back after Redis was asked, before its answer
    assert not view.mark("s1", asked, until_ms=1_000, holders=[])
    assert not view.refuses("s1", "a2", now_ms=10)
    # an announcement of another slot does not matter
    asked = view.ticket()
    view.announced("s2")
    assert view.mark("s1", asked, until_ms=1_000, holders=[])


def test_an_announcement_drops_a_kept_answer() -> None:
    view = live_view()
    view.mark("s1", view.ticket(), until_ms=1_000, holders=[])
    view.announced("s1")
    assert not view.refuses("s1", "a2", now_ms=10)


def test_a_forgotten_announcement_still_keeps_older_answers_out() -> None:
    """Past ``size`` announced slots the oldest are forgotten; an answer asked before any
    forgotten announcement cannot tell whether its slot was among them, so it is not kept."""
    view = live_view(size=2)
    asked = view.ticket()
    for slot in ("s1", "x", "y"):  # s1's announcement is pushed out of the memory
        view.announced(slot)
    assert not view.mark("s1", asked, until_ms=1_000, holders=[])
    assert view.mark("s1", view.ticket(), until_ms=1_000, holders=[])


def test_a_view_not_subscribed_keeps_and_answers_nothing() -> None:
    view = SoldOutView("test:guahao:slot-returns")
    assert not view.mark("s1", view.ticket(), until_ms=1_000, holders=[])
    live = live_view()
    asked = live.ticket()
    live.mark("s1", asked, until_ms=1_000, holders=[])
    live._go_blind()  # the subscription was lost
    assert not live.refuses("s1", "a2", now_ms=10)
    live._live = True  # subscribed again: answers asked before the loss are not kept
    assert not live.mark("s2", asked, until_ms=1_000, holders=[])
