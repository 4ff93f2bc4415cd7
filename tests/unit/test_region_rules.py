"""The region's rules as a pure value: changes applied and validated, hospital overrides."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guahao.platform.errors import GuahaoError
from guahao.platform.region_rules import RegionRules, apply_changes, merged_for_hospital


def refused_code(action: Any, *args: Any) -> str:
    with pytest.raises(GuahaoError) as refused:
        action(*args)
    return refused.value.code


def leaf_paths(value: Any, prefix: str = "") -> dict[str, Any]:
    """Every dotted rule path with its default value."""
    if isinstance(value, dict):
        found: dict[str, Any] = {}
        for key, child in value.items():
            found.update(leaf_paths(child, f"{prefix}{key}."))
        return found
    return {prefix[:-1]: value}


DEFAULTS = msgspec.to_builtins(RegionRules())
PATHS = leaf_paths(DEFAULTS)


def test_the_defaults_are_sane() -> None:
    rules = RegionRules()
    assert 1 <= rules.limits.per_patient_department_day <= rules.limits.per_patient_day
    assert rules.limits.per_patient_day <= rules.limits.per_patient_month
    assert rules.limits.per_patient_month <= rules.limits.per_account_month
    assert rules.identity.max_patients_per_account >= 1
    assert rules.follow_up_valid_days == 0  # hospitals opt in
    assert rules.add_on_per_session > 0
    # every field a hospital may override names a real rule
    for path in rules.hospital_overridable:
        assert path in PATHS, path
    assert "limits.per_patient_day" not in rules.hospital_overridable  # region-wide
    # the defaults validate as they are
    assert msgspec.convert(DEFAULTS, RegionRules) == rules


def test_nested_and_dotted_changes_mean_the_same() -> None:
    nested = apply_changes(RegionRules(), {"limits": {"per_patient_day": 2}, "identity": {}})
    dotted = apply_changes(RegionRules(), {"limits.per_patient_day": 2})
    assert nested.limits == dotted.limits
    assert dotted.limits.per_patient_day == 2
    assert dotted.limits.per_patient_month == RegionRules().limits.per_patient_month
    assert dotted.identity == RegionRules().identity
    mixed = apply_changes(
        RegionRules(), {"limits": {"per_patient_month": 5}, "limits.per_account_month": 9}
    )
    assert (mixed.limits.per_patient_month, mixed.limits.per_account_month) == (5, 9)


def test_changes_never_alter_the_value_they_start_from() -> None:
    start = RegionRules()
    apply_changes(start, {"add_on_per_session": 1})
    assert start == RegionRules()


@pytest.mark.parametrize(
    "changes",
    [
        {"no_such_rule": 1},
        {"limits.no_such_rule": 1},
        {"limits": {"no_such_rule": 1}},
        {"limits.per_patient_day.deeper": 1},
        {"": 1},
        {"limits": 1},
    ],
)
def test_unknown_rules_are_refused(changes: dict[str, Any]) -> None:
    assert refused_code(apply_changes, RegionRules(), changes) == "RULES_INVALID"


@pytest.mark.parametrize(
    "changes",
    [
        {"limits.per_patient_day": 0},
        {"limits.per_patient_day": 21},
        {"identity.max_patients_per_account": 0},
        {"add_on_per_session": 51},
        {"follow_up_valid_days": -1},
        {"follow_up_valid_days": 31},
        {"limits.per_patient_day": "3"},
        {"limits.per_patient_day": 2.0},
        {"limits.per_patient_day": True},
        {"limits.per_patient_day": None},
        {"rate_limits.hold_per_ip": "fast"},
    ],
)
def test_out_of_range_or_mistyped_values_are_refused(changes: dict[str, Any]) -> None:
    assert refused_code(apply_changes, RegionRules(), changes) == "RULES_INVALID"


def test_a_hospital_override_merges_over_the_regions_rules() -> None:
    region = apply_changes(RegionRules(), {"limits.per_patient_day": 2})
    merged = merged_for_hospital(
        region, {"follow_up_valid_days": 7, "limits": {"per_patient_department_day": 2}}
    )
    assert merged.follow_up_valid_days == 7
    assert merged.limits.per_patient_department_day == 2
    assert merged.limits.per_patient_day == 2  # the region's own change stays
    assert merged_for_hospital(region, {}) == region


def test_a_hospital_cannot_override_a_region_wide_rule_nor_the_list_of_overridable_ones() -> None:
    for overrides in (
        {"limits.per_patient_day": 9},
        {"limits": {"per_patient_day": 9}},
        {"hospital_overridable": ["limits.per_patient_day"]},
    ):
        assert refused_code(merged_for_hospital, RegionRules(), overrides) == (
            "RULE_NOT_OVERRIDABLE"
        )
    assert (
        refused_code(merged_for_hospital, RegionRules(), {"follow_up_valid_days": 31})
        == "RULES_INVALID"
    )


def test_the_region_decides_which_fields_hospitals_may_override() -> None:
    region = apply_changes(RegionRules(), {"hospital_overridable": ["limits.per_patient_day"]})
    assert merged_for_hospital(region, {"limits.per_patient_day": 1}).limits.per_patient_day == 1
    assert (
        refused_code(merged_for_hospital, region, {"follow_up_valid_days": 3})
        == "RULE_NOT_OVERRIDABLE"
    )


def test_an_empty_section_in_a_change_changes_nothing() -> None:
    region = apply_changes(RegionRules(), {"limits.per_patient_day": 2})
    assert apply_changes(region, {"limits": {}}) == region


def test_the_overridable_list_names_only_real_rules() -> None:
    assert (
        refused_code(apply_changes, RegionRules(), {"hospital_overridable": ["limit.per_day"]})
        == "RULES_INVALID"
    )


SCALARS = st.one_of(
    st.integers(min_value=-5, max_value=1200),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["5/minute", "10/hour;100/day", "1/2minutes"]),
    st.none(),
)


def plausible(default: Any) -> st.SearchStrategy[Any]:
    """Values of the rule's own type near its usual range (most of them valid)."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(min_value=max(1, default // 2), max_value=max(1, default))
    if isinstance(default, str):
        return st.sampled_from([default, "5/minute", "10/hour;100/day"])
    return st.just(default)


def value_of(default: Any) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes anything (which must then be refused cleanly)."""
    return st.integers(min_value=0, max_value=4).flatmap(
        lambda n: SCALARS if n == 0 else plausible(default)
    )


CHANGES = st.lists(st.sampled_from(sorted(PATHS)), max_size=4, unique=True).flatmap(
    lambda paths: st.fixed_dictionaries({path: value_of(PATHS[path]) for path in paths})
)


@settings(max_examples=300, deadline=None)
@given(changes=CHANGES)
def test_any_change_that_validates_round_trips_through_json(changes: dict[str, Any]) -> None:
    try:
        rules = apply_changes(RegionRules(), changes)
    except GuahaoError as refused:
        code = refused.code
    else:
        code = None
    if code is not None:
        assert code == "RULES_INVALID"
        return
    encoded = msgspec.json.encode(rules)
    assert msgspec.json.decode(encoded, type=RegionRules) == rules
    for path, value in changes.items():
        # Compared as values of the field's own type: sets (hospital_overridable, a strike
        # policy's counts) come out of JSON in string-hashing order, which changes per process.
        *parents, name = path.split(".")
        owner: Any = rules
        for part in parents:
            owner = owner[part] if isinstance(owner, dict) else getattr(owner, part)
        field = (
            next((f for f in msgspec.structs.fields(owner) if f.encode_name == name), None)
            if isinstance(owner, msgspec.Struct)
            else None
        )
        if field is None:
            node: Any = msgspec.to_builtins(owner)[name]
            assert node == value, path
        else:
            assert getattr(owner, field.name) == msgspec.convert(value, field.type), path
    # what a stored version holds (to_builtins, as the database keeps it) converts back
    assert msgspec.convert(msgspec.to_builtins(rules), RegionRules) == rules
