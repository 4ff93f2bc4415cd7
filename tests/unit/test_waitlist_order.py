"""The waitlist's line (候补排队): who is served first, what a wait covers, where one stands."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from guahao.platform.waitlist import (
    Wait,
    WaitlistRules,
    could_compete,
    covers,
    in_line,
    line_key,
    position,
    waitlist_rules_of,
)

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
DAY = date(2026, 3, 4)


def wait(
    id: str,
    *,
    scope: str = "session",
    priority: int = 0,
    minutes: int = 0,
    department: str = "dep",
    doctor: str | None = "d1",
    session: str | None = "s1",
    first: date = DAY,
    last: date = DAY,
) -> Wait:
    return Wait(
        id=id,
        scope=scope,  # type: ignore[arg-type]
        priority=priority,
        joined_at=T0 + timedelta(minutes=minutes),
        department_id=department,
        date_from=first,
        date_to=last,
        doctor_id=doctor if scope != "department" else None,
        session_id=session if scope == "session" else None,
    )


def test_the_first_to_join_is_served_first() -> None:
    assert [w.id for w in in_line([wait("b", minutes=5), wait("a", minutes=1)])] == ["a", "b"]


def test_patients_whose_session_was_stopped_go_before_everyone() -> None:
    early = wait("early", minutes=0)
    stopped = wait("stopped", priority=WaitlistRules().hospital_stop_priority, minutes=60)
    assert [w.id for w in in_line([early, stopped])] == ["stopped", "early"]


def test_waits_joined_at_the_same_instant_are_ordered_by_id_everywhere() -> None:
    assert [w.id for w in in_line([wait("z"), wait("m"), wait("a")])] == ["a", "m", "z"]


def test_a_session_wait_covers_only_its_session() -> None:
    w = wait("w")
    assert covers(w, session_id="s1", doctor_id="d1", department_id="dep", day=DAY)
    assert not covers(w, session_id="s2", doctor_id="d1", department_id="dep", day=DAY)


def test_a_doctor_wait_covers_that_doctors_sessions_within_its_dates() -> None:
    w = wait("w", scope="doctor", first=DAY, last=DAY + timedelta(days=2))
    assert covers(w, session_id="x", doctor_id="d1", department_id="dep", day=DAY)
    assert not covers(w, session_id="x", doctor_id="d2", department_id="dep", day=DAY)
    assert not covers(
        w, session_id="x", doctor_id="d1", department_id="dep", day=DAY + timedelta(days=3)
    )


def test_a_department_wait_covers_any_doctor_of_the_department_within_its_dates() -> None:
    w = wait("w", scope="department", first=DAY, last=DAY)
    assert covers(w, session_id="x", doctor_id="d9", department_id="dep", day=DAY)
    assert not covers(w, session_id="x", doctor_id="d9", department_id="other", day=DAY)


def test_the_position_counts_only_waits_that_could_take_the_same_unit() -> None:
    mine = wait("mine", minutes=10)
    same_session_before = wait("a", minutes=1)
    other_doctor_before = wait("b", minutes=2, doctor="d2", session="s2")
    department_before = wait("c", scope="department", minutes=3)
    same_session_after = wait("d", minutes=20)
    everyone = [mine, same_session_before, other_doctor_before, department_before]
    assert position(mine, [*everyone, same_session_after]) == 3
    assert position(same_session_after, [*everyone, same_session_after]) == 4


def test_waits_of_different_departments_or_dates_never_compete() -> None:
    a = wait("a", scope="department")
    assert not could_compete(a, wait("b", scope="department", department="other"))
    later = DAY + timedelta(days=1)
    assert not could_compete(a, wait("c", scope="department", first=later, last=later))


def test_the_rules_have_defaults_and_refuse_unknown_fields() -> None:
    rules = msgspec.convert({}, WaitlistRules)
    assert rules == WaitlistRules()
    assert (rules.max_waits_per_patient, rules.hospital_stop_priority) == (3, 100)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"max_waits": 2}, WaitlistRules)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"max_waits_per_patient": 0}, WaitlistRules)


def test_rules_without_a_waitlist_part_mean_the_defaults() -> None:
    class Older:
        pass

    assert waitlist_rules_of(Older()) == WaitlistRules()

    class Newer:
        waitlist = WaitlistRules(max_waits_per_patient=5)

    assert waitlist_rules_of(Newer()).max_waits_per_patient == 5


waits = st.lists(
    st.builds(
        wait,
        st.uuids().map(lambda u: u.hex),
        scope=st.sampled_from(["session", "doctor", "department"]),
        priority=st.sampled_from([0, 0, 0, 100]),
        minutes=st.integers(0, 30),
        doctor=st.sampled_from(["d1", "d2"]),
        session=st.sampled_from(["s1", "s2"]),
    ),
    max_size=25,
    unique_by=lambda w: w.id,
)


@given(waits)
def test_the_line_is_a_total_order_independent_of_arrival(line: list[Wait]) -> None:
    ordered = in_line(line)
    assert in_line(reversed(line)) == ordered
    assert all(line_key(a) < line_key(b) for a, b in itertools.pairwise(ordered))


@given(waits)
def test_the_first_in_line_for_a_unit_has_position_one(line: list[Wait]) -> None:
    covering = [
        w for w in line if covers(w, session_id="s1", doctor_id="d1", department_id="dep", day=DAY)
    ]
    if covering:
        first = in_line(covering)[0]
        assert position(first, covering) == 1
    for w in line:
        assert 1 <= position(w, line) <= len(line)
