"""Strike policies as data and the pure decision over a person's strikes (guahao.platform.strikes).

Each test is named after the rule it shows; the property tests check the rules hold for any
history, not just the published examples.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from guahao.platform.reference.catalog import load_catalog
from guahao.platform.strikes import (
    DEFAULT_POLICIES,
    BlacklistRules,
    Strike,
    StrikeKind,
    StrikePolicy,
    ban_exempts,
    evaluate,
    in_window,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NO_SHOW = next(p for p in DEFAULT_POLICIES if p.name == "no_show")
CANCELLATIONS = next(p for p in DEFAULT_POLICIES if p.name == "cancellations")
VIOLATIONS = next(p for p in DEFAULT_POLICIES if p.name == "violations")


def strikes(kind: StrikeKind, *days: float) -> list[Strike]:
    return [Strike(kind, T0 + timedelta(days=d)) for d in days]


def test_published_default_three_no_shows_in_90_days_ban_for_90_days() -> None:
    assert (NO_SHOW.threshold, NO_SHOW.window_days, NO_SHOW.ban_days) == (3, 90, 90)
    now = T0 + timedelta(days=80)
    decision = evaluate(DEFAULT_POLICIES, strikes(StrikeKind.NO_SHOW, 0, 40, 80), now)
    assert decision.outcome == "ban"
    assert decision.policy == "no_show"
    assert decision.ends_at == now + timedelta(days=90)


def test_published_default_three_cancellations_in_a_month_ban_for_a_month() -> None:
    assert (CANCELLATIONS.threshold, CANCELLATIONS.window_days, CANCELLATIONS.ban_days) == (
        3,
        30,
        30,
    )
    now = T0 + timedelta(days=29)
    decision = evaluate(DEFAULT_POLICIES, strikes(StrikeKind.CANCELLATION, 0, 10, 29), now)
    assert (decision.outcome, decision.policy) == ("ban", "cancellations")
    assert decision.ends_at == now + timedelta(days=30)


def test_no_show_older_than_the_window_does_not_count() -> None:
    now = T0 + timedelta(days=91)
    decision = evaluate(DEFAULT_POLICIES, strikes(StrikeKind.NO_SHOW, 0, 45, 91), now)
    assert decision.outcome == "warning"
    assert decision.count == 2


def test_strike_exactly_window_days_old_has_left_the_window() -> None:
    assert in_window(NO_SHOW, strikes(StrikeKind.NO_SHOW, 0), T0 + timedelta(days=90)) == 0
    assert in_window(NO_SHOW, strikes(StrikeKind.NO_SHOW, 0), T0 + timedelta(days=89.99)) == 1


def test_warnings_before_ban_say_how_many_strikes_remain() -> None:
    first = evaluate(DEFAULT_POLICIES, strikes(StrikeKind.NO_SHOW, 0), T0)
    second = evaluate(DEFAULT_POLICIES, strikes(StrikeKind.NO_SHOW, 0, 1), T0 + timedelta(1))
    assert (first.outcome, first.remaining) == ("warning", 2)
    assert (second.outcome, second.remaining) == ("warning", 1)


def test_no_warning_further_from_the_threshold_than_warnings_before_ban() -> None:
    policy = StrikePolicy(
        name="strict",
        counts=frozenset({StrikeKind.NO_SHOW}),
        window_days=90,
        threshold=5,
        warnings_before_ban=1,
        ban_days=10,
    )
    history = strikes(StrikeKind.NO_SHOW, 0, 1, 2)
    assert evaluate([policy], history, T0 + timedelta(days=2)).outcome == "none"
    four = evaluate([policy], strikes(StrikeKind.NO_SHOW, 0, 1, 2, 3), T0 + timedelta(3))
    assert (four.outcome, four.remaining) == ("warning", 1)


def test_unpaid_expiries_and_late_cancellations_count_together_as_violations() -> None:
    history = [
        *strikes(StrikeKind.UNPAID_EXPIRY, 0, 10),
        *strikes(StrikeKind.LATE_CANCELLATION, 20),
    ]
    decision = evaluate(DEFAULT_POLICIES, history, T0 + timedelta(days=20))
    assert (decision.outcome, decision.policy) == ("ban", "violations")
    assert decision.ends_at == T0 + timedelta(days=20 + VIOLATIONS.ban_days)


def test_kinds_a_policy_does_not_count_never_add_up() -> None:
    history = [
        *strikes(StrikeKind.NO_SHOW, 0, 1),
        *strikes(StrikeKind.CANCELLATION, 2, 3),
        *strikes(StrikeKind.UNPAID_EXPIRY, 4, 5),
    ]
    assert evaluate(DEFAULT_POLICIES, history, T0 + timedelta(days=5)).outcome == "warning"


def test_a_ban_answers_the_strikes_that_caused_it() -> None:
    history = strikes(StrikeKind.NO_SHOW, 0, 1, 2)
    banned_at = T0 + timedelta(days=2)
    later = evaluate(
        DEFAULT_POLICIES,
        [*history, *strikes(StrikeKind.NO_SHOW, 3)],
        T0 + timedelta(days=3),
        counted_since={"no_show": banned_at},
    )
    assert (later.outcome, later.count) == ("warning", 1)


def test_the_longest_ban_wins_when_several_policies_ban() -> None:
    history = [*strikes(StrikeKind.NO_SHOW, 0, 1, 2), *strikes(StrikeKind.CANCELLATION, 0, 1, 2)]
    decision = evaluate(DEFAULT_POLICIES, history, T0 + timedelta(days=2))
    assert decision.policy == "no_show"  # 90 days beats 30


def test_future_strikes_are_not_counted() -> None:
    assert evaluate(DEFAULT_POLICIES, strikes(StrikeKind.NO_SHOW, 1, 2, 3), T0).outcome == "none"


def test_blacklist_rules_round_trip_as_json_and_refuse_unknown_fields() -> None:
    rules = BlacklistRules()
    again = msgspec.json.decode(msgspec.json.encode(rules), type=BlacklistRules)
    assert again == rules
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"late_cancelation_hours": 3}, BlacklistRules)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(
            {
                "policies": [
                    {
                        "name": "x",
                        "counts": ["no_show"],
                        "window_days": 0,
                        "threshold": 1,
                        "ban_days": 1,
                    }
                ]
            },
            BlacklistRules,
        )


def test_every_default_policy_names_its_source() -> None:
    for policy in DEFAULT_POLICIES:
        assert policy.source
    assert len({p.name for p in DEFAULT_POLICIES}) == len(DEFAULT_POLICIES)


def test_exempt_catalog_code_is_the_national_catalog_emergency_department() -> None:
    catalog = {entry.code: entry.name for entry in load_catalog()}
    for code in BlacklistRules().exempt_catalog_codes:
        assert catalog[code] == "急诊医学科"


@pytest.mark.parametrize(
    ("catalog_code", "name", "exempt"),
    [
        ("20", "急诊科", True),
        ("20.02", "急诊内科", True),
        ("07", "儿科发热门诊", True),
        ("03", "发热 门诊", True),
        ("03.04", "心内科", False),
        ("200", "专科", False),
        ("07", "儿科", False),
    ],
)
def test_ban_exempts_emergency_and_fever_clinics(
    catalog_code: str, name: str, exempt: bool
) -> None:
    assert ban_exempts(BlacklistRules(), catalog_code, name) is exempt


def test_exemptions_are_configurable() -> None:
    rules = BlacklistRules(exempt_catalog_codes=frozenset({"07"}), exempt_department_names=())
    assert ban_exempts(rules, "07.01", "儿科")
    assert not ban_exempts(rules, "20", "发热门诊")


kinds = st.sampled_from(list(StrikeKind))
offsets = st.floats(min_value=0, max_value=400, allow_nan=False)
histories = st.lists(st.tuples(kinds, offsets), max_size=30)


def _history(items: list[tuple[StrikeKind, float]]) -> list[Strike]:
    return [Strike(k, T0 + timedelta(days=d)) for k, d in items]


@given(histories, st.floats(min_value=0, max_value=400, allow_nan=False))
def test_ban_exactly_when_some_policy_reaches_its_threshold(
    items: list[tuple[StrikeKind, float]], at: float
) -> None:
    now = T0 + timedelta(days=at)
    history = _history(items)
    decision = evaluate(DEFAULT_POLICIES, history, now)
    reached = [p for p in DEFAULT_POLICIES if in_window(p, history, now) >= p.threshold]
    assert (decision.outcome == "ban") == bool(reached)
    if reached:
        assert decision.ends_at == now + timedelta(days=max(p.ban_days for p in reached))


@given(histories, st.floats(min_value=0, max_value=400, allow_nan=False))
def test_a_warning_always_leaves_at_least_one_strike_before_a_ban(
    items: list[tuple[StrikeKind, float]], at: float
) -> None:
    decision = evaluate(DEFAULT_POLICIES, _history(items), T0 + timedelta(days=at))
    if decision.outcome == "warning":
        policy = next(p for p in DEFAULT_POLICIES if p.name == decision.policy)
        assert 1 <= decision.remaining <= policy.warnings_before_ban
        assert decision.count + decision.remaining == policy.threshold


@given(histories, st.floats(min_value=0, max_value=400, allow_nan=False), kinds)
def test_one_more_strike_never_makes_the_decision_milder(
    items: list[tuple[StrikeKind, float]], at: float, kind: StrikeKind
) -> None:
    now = T0 + timedelta(days=at)
    history = _history(items)
    before = evaluate(DEFAULT_POLICIES, history, now)
    after = evaluate(DEFAULT_POLICIES, [*history, Strike(kind, now)], now)
    order = {"none": 0, "warning": 1, "ban": 2}
    assert order[after.outcome] >= order[before.outcome]
    if before.outcome == "ban":
        assert after.ends_at is not None
        assert before.ends_at is not None
        assert after.ends_at >= before.ends_at


@given(histories, st.floats(min_value=0, max_value=400, allow_nan=False))
def test_the_order_of_strikes_does_not_matter(
    items: list[tuple[StrikeKind, float]], at: float
) -> None:
    now = T0 + timedelta(days=at)
    history = _history(items)
    assert evaluate(DEFAULT_POLICIES, history, now) == evaluate(
        DEFAULT_POLICIES, list(reversed(history)), now
    )
