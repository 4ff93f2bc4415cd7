"""The garbage collector of a serving process (guahao/collector_settings.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from guahao.collector_settings import settle_collector
from guahao.config import Settings, load_settings


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """The test process's collector as it was, whatever the test did to it."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class _Held:
    """A tracked object a test keeps alive across the settling."""


@pytest.mark.usefixtures("restored_collector")
def test_the_heap_alive_before_serving_is_never_walked_again() -> None:
    held = _Held()
    gc.collect()
    assert any(o is held for o in gc.get_objects(generation=2))
    settle_collector(Settings().gc_young_threshold)
    assert gc.get_freeze_count() > 0
    assert not any(o is held for o in gc.get_objects())  # no generation holds it any more


@pytest.mark.usefixtures("restored_collector")
def test_the_young_generation_is_collected_at_the_setting_and_the_older_ones_as_before() -> None:
    _, middle, oldest = gc.get_threshold()
    settle_collector(12_345)
    assert gc.get_threshold() == (12_345, middle, oldest)


@pytest.mark.usefixtures("restored_collector")
def test_a_request_in_flight_is_not_promoted_by_the_default_threshold() -> None:
    """What the default is for: the objects of a loop turn's requests (a few thousand, all
    alive while their round trips are awaited) are not caught alive by a young collection
    and promoted towards the full collections."""
    settle_collector(Settings().gc_young_threshold)
    gc.collect()
    before = gc.get_stats()
    in_flight = [{"request": [n]} for n in range(2_500)]  # 5 000 tracked objects
    after = gc.get_stats()
    assert len(in_flight) == 2_500
    assert [s["collections"] for s in after] == [s["collections"] for s in before]


def test_the_threshold_is_read_from_the_environment_and_never_below_pythons() -> None:
    assert load_settings({"GUAHAO_GC_YOUNG_THRESHOLD": "50000"}).gc_young_threshold == 50_000
    with pytest.raises(Exception, match="gc_young_threshold"):
        load_settings({"GUAHAO_GC_YOUNG_THRESHOLD": "100"})
