"""``RuleBook.for_known_hospital``: the rules at a hospital named from outside (a URL) are
its own, and a made-up id is refused rather than answered with the region's rules. On both
databases."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event

from guahao.bootstrap import Platform
from tests.fixtures.platforms import assert_refused, clinic
from tests.fixtures.staff import hospital_id_of, staff_of


async def test_a_known_hospital_gets_the_region_merged_with_its_overrides(
    platform: Platform,
) -> None:
    await platform.supply.register_hospital(clinic(code="h1"))
    await platform.supply.register_hospital(clinic(code="h2"))
    admin = await staff_of(platform, "chief", "authority_admin", None)
    h1 = await hospital_id_of(platform, "h1")
    await platform.rules.change_hospital(h1, {"add_on_per_session": 1}, staff=admin, reason="试点")

    assert (await platform.rules.for_known_hospital(h1)).add_on_per_session == 1
    h2 = await hospital_id_of(platform, "h2")
    assert await platform.rules.for_known_hospital(h2) == await platform.rules.region()


async def test_an_unknown_hospital_is_refused_not_given_the_regions_rules(
    platform: Platform,
) -> None:
    await assert_refused(
        platform, "HOSPITAL_NOT_FOUND", platform.rules.for_known_hospital("made-up")
    )


async def test_choices_arriving_on_a_cold_cache_share_one_read_of_the_hospitals_rules(
    platform: Platform,
) -> None:
    await platform.supply.register_hospital(clinic(code="h1"))
    admin = await staff_of(platform, "chief", "authority_admin", None)
    h1 = await hospital_id_of(platform, "h1")
    await platform.rules.change_hospital(h1, {"add_on_per_session": 1}, staff=admin, reason="试点")
    platform.rules.forget()
    await platform.rules.region()  # only the hospital's overrides are left to read
    reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "hospital_rule_overrides" in statement:
            reads.append(statement)

    event.listen(platform.engine.sync_engine, "before_cursor_execute", count)
    try:
        answers = await asyncio.gather(*(platform.rules.for_hospital(h1) for _ in range(20)))
    finally:
        event.remove(platform.engine.sync_engine, "before_cursor_execute", count)

    assert {a.add_on_per_session for a in answers} == {1}
    assert len(reads) == 1
