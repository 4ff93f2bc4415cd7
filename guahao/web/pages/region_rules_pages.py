"""The region's rules page: the rules in force, every saved version with who saved it, when,
why and what it changed (a diff against the version before), and an administrator's change.

A change is typed as ``dotted.key = value`` lines (the names the in-force table shows; values
are JSON, so ``2``, ``true``, ``"5/minute"``, ``["a", "b"]``; a bare word is a string). The
first post is a proposal: the change is applied to the rules in force and validated exactly
as the API validates it (``region_rules.apply_changes``), and the page shows the diff, or the
refusal's code and message beside the form, with nothing saved. The second post, confirmed,
saves it through ``RuleBook.change_region`` with the version the administrator was looking at,
so a change saved meanwhile by someone else is refused instead of overwritten; it is audited
and in force everywhere within ``CACHE_SECONDS``, as a change through the API is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from guahao.platform.error_codes import refuse
from guahao.platform.errors import GuahaoError
from guahao.platform.region_rules import RegionRules, apply_changes
from guahao.platform.services.rule_book import CACHE_SECONDS, RuleBook, RuleVersion
from guahao.platform.services.staff import StaffRole
from guahao.web.pages.console_context import AUTHORITY, ConsoleContext, flat_rules, render_console
from guahao.web.pages.page_context import see_other, status_of
from guahao.web.rule_names import snake_name

__all__ = ["RegionRulesPage", "parse_rule_changes", "rule_diff", "shown"]

MAX_CHANGE_TEXT = 20_000
"""Characters of typed changes read (the whole rules are a few kilobytes)."""


def parse_rule_changes(text: str) -> dict[str, Any]:
    """``key = value`` lines as dotted snake_case changes (empty lines and ``#`` notes skipped).

    >>> parse_rule_changes("limits.perPatientDay = 2\\n# a note\\nreminders.enabled=false")
    {'limits.per_patient_day': 2, 'reminders.enabled': False}
    >>> parse_rule_changes('rate_limits.hold_per_account = 5/minute')
    {'rate_limits.hold_per_account': '5/minute'}
    """
    changes: dict[str, Any] = {}
    for number, line in enumerate(text[:MAX_CHANGE_TEXT].splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key or not raw:
            refuse("RULES_INVALID", field=f"line {number}", reason="write: key = value")
        try:
            value: Any = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            value = raw
        changes[snake_name(key)] = value
    if not changes:
        refuse("RULES_INVALID", field="changes", reason="nothing to change")
    return changes


def _plain(value: Any) -> Any:
    """``value`` as JSON would carry it, with lists of names sorted: the rules hold sets
    (``hospital_overridable``, a policy's ``counts``) whose order means nothing, and versions
    saved by different processes may list them differently."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items) if all(isinstance(v, str) for v in items) else items
    return value


def shown(value: Any) -> str:
    """A rule's value as it is typed in a change (JSON).

    >>> shown(["b", "a"]), shown(2), shown("5/minute")
    ('["a","b"]', '2', '"5/minute"')
    """
    return msgspec.json.encode(_plain(msgspec.to_builtins(value))).decode()


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf under a dotted key; a list of sections (the blacklist's policies) by each
    section's name, so a diff names the one threshold that changed, not the whole list.

    >>> _leaves({"b": {"policies": [{"name": "no_show", "threshold": 3}]}, "a": 1})
    {'b.policies[no_show].name': 'no_show', 'b.policies[no_show].threshold': 3, 'a': 1}
    """
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(tree, list) and tree and all(isinstance(v, dict) for v in tree):
        for i, section in enumerate(tree):
            out.update(_leaves(section, f"{prefix}[{section.get('name', i)}]"))
    else:
        out[prefix] = tree
    return out


def rule_diff(before: dict[str, Any] | None, after: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What changed between two versions' rules, as (dotted key, before, after) in JSON;
    ``before`` None (the version before is not known) lists nothing.

    >>> rule_diff({"limits": {"a": 1, "b": 2}}, {"limits": {"a": 1, "b": 3}})
    [('limits.b', '2', '3')]
    >>> rule_diff({"codes": ("20", "10")}, {"codes": ["10", "20"]})
    []
    """
    if before is None:
        return []
    old = {k: shown(v) for k, v in _leaves(_plain(msgspec.to_builtins(before))).items()}
    new = {k: shown(v) for k, v in _leaves(_plain(msgspec.to_builtins(after))).items()}
    return [
        (key, old.get(key, "—"), new.get(key, "—"))
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def _versions(history: list[RuleVersion]) -> list[tuple[RuleVersion, list[tuple[str, str, str]]]]:
    """Each saved version (newest first) with its diff against the one before it (version 1
    against this release's defaults)."""
    defaults: dict[str, Any] = msgspec.to_builtins(RegionRules())
    out = []
    for i, saved in enumerate(history):
        if i + 1 < len(history):
            before: dict[str, Any] | None = history[i + 1].rules
        else:
            before = defaults if saved.version == 1 else None
        out.append((saved, rule_diff(before, saved.rules)))
    return out


class RegionRulesPage(Controller):
    path = "/console/authority/rules"
    include_in_schema = False

    @get("/", name="console_rules")
    async def rules_page(
        self, console: NamedDependency[ConsoleContext], rules: NamedDependency[RuleBook]
    ) -> Template:
        """The region's rules in force and every saved version with its diff."""
        console.require(*AUTHORITY)
        return await self._page(console, rules)

    @post("/", name="console_rules_change", status_code=200)
    async def change(
        self, console: NamedDependency[ConsoleContext], rules: NamedDependency[RuleBook]
    ) -> Template | Redirect:
        """Propose (validated, diffed, nothing saved) or, confirmed, save a new version."""
        staff, form = await console.require_change(StaffRole.AUTHORITY_ADMIN)
        text = form.get("changes", "")[:MAX_CHANGE_TEXT]
        reason = form.get("reason", "").strip()[:2000]
        expected = form.get("expected_version", "")
        try:
            if not reason:
                refuse("VALIDATION_FAILED", field="reason", reason="say why the rules change")
            if not expected.isdigit() or len(expected) > 9:
                refuse("VALIDATION_FAILED", field="expected_version", reason="a whole number")
            changes = parse_rule_changes(text)
            if form.get("confirm") == "yes":
                saved = await rules.change_region(
                    changes, staff=staff, reason=reason, expected_version=int(expected)
                )
                return see_other(f"/console/authority/rules?saved={saved}")
            current = await rules.region()
            version = await rules.version()
            if version != int(expected):
                refuse("RULES_CHANGED_MEANWHILE", version=version)
            proposed = apply_changes(current, changes)
            diff = rule_diff(msgspec.to_builtins(current), msgspec.to_builtins(proposed))
            if not diff:
                refuse("RULES_INVALID", field="changes", reason="the rules would not change")
        except GuahaoError as exc:
            return await self._page(
                console, rules, error=exc, entered=text, reason=reason, status_code=status_of(exc)
            )
        return render_console(
            console,
            "console/rules_confirm.html",
            version=version,
            diff=diff,
            changes=text,
            reason=reason,
            cache_seconds=int(CACHE_SECONDS),
        )

    @staticmethod
    async def _page(
        console: ConsoleContext,
        rules: RuleBook,
        *,
        error: GuahaoError | None = None,
        entered: str = "",
        reason: str = "",
        status_code: int = 200,
    ) -> Template:
        saved = console.request.query_params.get("saved", "")
        history = await rules.history(None)
        return render_console(
            console,
            "console/rules.html",
            status_code=status_code,
            version=await rules.version(),
            in_force=[
                (k, shown(v)) for k, v in flat_rules(msgspec.to_builtins(await rules.region()))
            ],
            versions=_versions(history),
            changed_at={
                h.version: console.local(datetime.fromisoformat(h.changed_at), "%Y-%m-%d %H:%M")
                for h in history
            },
            error=error,
            entered=entered,
            reason=reason,
            saved=saved if saved.isdigit() else "",
        )
