"""The region's rules over HTTP: read them (anyone signed in as staff), change them (the
authority), override the allowed fields for one hospital (the authority or that hospital's
staff), and the history of every version. The rules themselves live in
``guahao.platform.region_rules``; this layer authenticates, decodes and encodes."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from guahao.platform.services.add_on_units import AddOnSummary, AddOnUnits
from guahao.platform.services.rule_book import RuleBook, RuleVersion
from guahao.platform.services.staff import StaffRole
from guahao.web.rule_names import camel_tree, snake_tree
from guahao.web.staff_auth import require_staff, staff_of

__all__ = ["RulesController"]

ANY_STAFF = require_staff()
READER = require_staff(StaffRole.AUTHORITY_ADMIN, StaffRole.AUTHORITY_AUDITOR)
ADMIN = require_staff(StaffRole.AUTHORITY_ADMIN)
HOSPITAL_RULES = require_staff(StaffRole.AUTHORITY_ADMIN, StaffRole.HOSPITAL_STAFF)


class RulesInForce(msgspec.Struct, frozen=True, rename="camel"):
    version: int
    rules: dict[str, Any]
    """``RegionRules`` with camelCase names (guahao/web/rule_names.py)."""


class RulesChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Changes as nested or dotted keys in camelCase, e.g. ``{"limits.perPatientDay": 2}``
    (the snake_case names of docs/rules.md are accepted too)."""

    changes: dict[str, Any]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    expected_version: int | None = None


class HospitalOverrides(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """The hospital's complete overrides (replacing its previous ones)."""

    overrides: dict[str, Any]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class SavedVersion(msgspec.Struct, frozen=True, rename="camel"):
    version: int


class RulesController(Controller):
    path = "/api/v1/rules"
    tags = ["rules"]  # noqa: RUF012

    @get("/region", operation_id="regionRules", guards=[ANY_STAFF])
    async def region(self, rules: NamedDependency[RuleBook]) -> RulesInForce:
        """The region's rules in force and their version."""
        return RulesInForce(version=await rules.version(), rules=camel_tree(await rules.region()))

    @put("/region", operation_id="changeRegionRules", guards=[ADMIN])
    async def change_region(
        self,
        rules: NamedDependency[RuleBook],
        request: Request[Any, Any, Any],
        data: JSONBody[RulesChange],
    ) -> SavedVersion:
        """Save a new version of the region's rules (audited, with the reason)."""
        version = await rules.change_region(
            snake_tree(data.changes),
            staff=staff_of(request),
            reason=data.reason,
            expected_version=data.expected_version,
        )
        return SavedVersion(version=version)

    @get("/hospitals/{hospital_id:str}", operation_id="hospitalRules", guards=[ANY_STAFF])
    async def hospital(
        self, rules: NamedDependency[RuleBook], hospital_id: FromPath[str]
    ) -> dict[str, Any]:
        """The rules in force at one hospital (the region's plus its allowed overrides), with
        camelCase names."""
        rules_in_force: dict[str, Any] = camel_tree(await rules.for_known_hospital(hospital_id))
        return rules_in_force

    @put(
        "/hospitals/{hospital_id:str}",
        operation_id="changeHospitalRules",
        guards=[HOSPITAL_RULES],
    )
    async def change_hospital(
        self,
        rules: NamedDependency[RuleBook],
        request: Request[Any, Any, Any],
        hospital_id: FromPath[str],
        data: JSONBody[HospitalOverrides],
    ) -> SavedVersion:
        """Replace one hospital's overrides (only fields the region lets hospitals change)."""
        version = await rules.change_hospital(
            hospital_id, snake_tree(data.overrides), staff=staff_of(request), reason=data.reason
        )
        return SavedVersion(version=version)

    @get("/history", operation_id="rulesHistory", guards=[ANY_STAFF])
    async def history(
        self,
        rules: NamedDependency[RuleBook],
        hospital_id: Annotated[str | None, QueryParameter(name="hospitalId")] = None,
    ) -> list[RuleVersion]:
        """Every saved version, newest first: the region's, or one hospital's overrides (the
        rules in each with camelCase names)."""
        return [
            msgspec.structs.replace(saved, rules=camel_tree(saved.rules))
            for saved in await rules.history(hospital_id)
        ]

    @get("/add-on-units", operation_id="addOnSummary", guards=[READER])
    async def add_on_units(
        self,
        add_on_units: NamedDependency[AddOnUnits],
        since: Annotated[date, QueryParameter()],
        until: Annotated[date, QueryParameter()],
    ) -> list[AddOnSummary]:
        """诊间加号 per hospital and day: the authority watches how add-on units are used."""
        return await add_on_units.summary(since=since, until=until)
