"""A department's own online/offline split and release policy, over its hospital's.

A hospital registers one split (``QuotaPolicy``) and one release policy (``ReleasePolicy``);
its departments differ (a paediatrics desk wants more units on site for walk-in parents, a
specialist clinic releases further ahead), so staff set a department's fields on the console.
A field left unset falls back to the hospital's value, so a hospital re-registering with a
new policy still moves every department that did not choose otherwise.

The region bounds what a department may choose (``DepartmentPolicyRules`` in the region's
rules): the national and city rules ask for at least half the units online, an on-site quota
kept, and no release at midnight. Only the fields a department sets are checked: a hospital's
registered policy is the connector's word, not the desk's.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from guahao.platform.error_codes import refuse
from guahao.platform.hospitals import ClockTime, HospitalPolicies, QuotaPolicy, ReleasePolicy

__all__ = ["DepartmentPolicy", "DepartmentPolicyRules"]

Share = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class DepartmentPolicyRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the region lets a department choose for its split and release.

    Sources: the National Health Commission's 分时段预约 notices ask that most units open for
    booking ahead and that an on-site quota stay for people without a phone; city platforms
    (北京 114, 上海 医联预约) release between early morning and evening, never at midnight,
    and at most a fortnight ahead for ordinary clinics.
    """

    min_online_share: Share = 0.5
    max_online_share: Share = 0.9
    """At most this much online: the rest (here 10 %) stays for the on-site desk."""
    max_offline_first_segments: Annotated[int, msgspec.Meta(ge=0, le=20)] = 4
    min_days_ahead: Annotated[int, msgspec.Meta(ge=0, le=90)] = 1
    max_days_ahead: Annotated[int, msgspec.Meta(ge=0, le=90)] = 14
    earliest_release_at: ClockTime = "06:00"
    latest_release_at: ClockTime = "22:00"


class DepartmentPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The fields a department sets; ``None`` means "as the hospital".

    >>> hospital = HospitalPolicies(quota=QuotaPolicy(online_share=0.7))
    >>> DepartmentPolicy(online_share=0.6).over(hospital).quota
    QuotaPolicy(online_share=0.6, offline_first_segments=0)
    >>> DepartmentPolicy(release_at="07:30").over(hospital).release
    ReleasePolicy(days_ahead=7, at='07:30')
    >>> DepartmentPolicy().over(hospital) == hospital
    True
    """

    online_share: Share | None = None
    offline_first_segments: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    days_ahead: Annotated[int, msgspec.Meta(ge=0, le=90)] | None = None
    release_at: ClockTime | None = None

    @property
    def empty(self) -> bool:
        return self == DepartmentPolicy()

    def over(self, hospital: HospitalPolicies) -> HospitalPolicies:
        """The hospital's policies with this department's fields in place."""
        if self.empty:
            return hospital
        quota = QuotaPolicy(
            online_share=(
                hospital.quota.online_share if self.online_share is None else self.online_share
            ),
            offline_first_segments=(
                hospital.quota.offline_first_segments
                if self.offline_first_segments is None
                else self.offline_first_segments
            ),
        )
        release = ReleasePolicy(
            days_ahead=hospital.release.days_ahead if self.days_ahead is None else self.days_ahead,
            at=hospital.release.at if self.release_at is None else self.release_at,
        )
        return msgspec.structs.replace(hospital, quota=quota, release=release)

    def check(self, rules: DepartmentPolicyRules) -> None:
        """Refuse (``DEPARTMENT_POLICY_OUT_OF_BOUNDS``) a field outside the region's bounds.

        >>> DepartmentPolicy(online_share=0.8).check(DepartmentPolicyRules())
        >>> DepartmentPolicy(release_at="00:00").check(DepartmentPolicyRules())
        Traceback (most recent call last):
        ...
        guahao.platform.errors.InvalidInputError: DEPARTMENT_POLICY_OUT_OF_BOUNDS: ...
        """
        share = self.online_share
        if share is not None and not rules.min_online_share <= share <= rules.max_online_share:
            _out("online_share", share, rules.min_online_share, rules.max_online_share)
        first = self.offline_first_segments
        if first is not None and first > rules.max_offline_first_segments:
            _out("offline_first_segments", first, 0, rules.max_offline_first_segments)
        days = self.days_ahead
        if days is not None and not rules.min_days_ahead <= days <= rules.max_days_ahead:
            _out("days_ahead", days, rules.min_days_ahead, rules.max_days_ahead)
        at = self.release_at
        if at is not None and not rules.earliest_release_at <= at <= rules.latest_release_at:
            _out("release_at", at, rules.earliest_release_at, rules.latest_release_at)


def _out(field: str, value: object, low: object, high: object) -> None:
    refuse("DEPARTMENT_POLICY_OUT_OF_BOUNDS", field=field, value=value, min=low, max=high)
