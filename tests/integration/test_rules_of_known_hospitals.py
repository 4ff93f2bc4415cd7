"""``RuleBook.for_known_hospital``: the rules at a hospital named from outside (a URL) are
its own, and a made-up id is refused rather than answered with the region's rules. On both
databases."""

from __future__ import annotations

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
