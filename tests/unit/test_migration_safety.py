"""Migrations are safe for rolling deploys: ``upgrade()`` only expands the schema.

During a rolling deploy the schema is upgraded first (the migration Job) while the previous
release's workers still serve, and they keep serving until the last one is replaced. So an
upgrade may add tables, nullable columns (or columns with a server default), indexes and
constraints the old code already satisfies; it may not drop or rename a table or a column,
nor make a column stricter, which the old code would trip over mid-deploy. Removing something
is a *contract* migration: it ships one release after the code stopped using it (or, where
that cannot be, with the previous release's workers stopped), and says so with a module-level
``CONTRACT = "what it contracts and how it is deployed"`` (docs/operations.md, "Rolling
deploys"). ``downgrade()`` is not checked: it runs by hand.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

VERSIONS = (
    Path(__file__).resolve().parents[2] / "guahao" / "platform" / "persistence" / "migrations"
) / "versions"

NEVER_IN_AN_EXPANSION = {"drop_table", "drop_column", "rename_table"}

BEFORE_THE_FIRST_RELEASE = {
    "0002_region_rules": "makes patients.person_id NOT NULL after filling it and drops the "
    "fill-in server defaults of the new bookings columns; no release ran on 0001 alone",
}
"""Migrations written before anything was deployed, which no rolling deploy ever crosses.
The rule holds from the first release on: nothing may be added here."""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_false(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _column_is_required_without_default(column: ast.expr) -> bool:
    """``sa.Column(..., nullable=False)`` without ``server_default``: old code's inserts,
    which do not know the column, would fail."""
    if not isinstance(column, ast.Call):
        return False
    return _is_false(_keyword(column, "nullable")) and _keyword(column, "server_default") is None


def unsafe_operations(source: str) -> list[str]:
    """What in ``upgrade()`` of a migration's source the previous release could trip over."""
    tree = ast.parse(source)
    if any(
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "CONTRACT" for t in node.targets)
        for node in tree.body
    ):
        return []
    upgrade = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"), None
    )
    if upgrade is None:
        return []
    found: list[tuple[int, str]] = []
    for node in ast.walk(upgrade):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        operation, line = node.func.attr, node.lineno
        if operation in NEVER_IN_AN_EXPANSION:
            found.append((line, operation))
        elif operation == "alter_column":
            if _keyword(node, "new_column_name") is not None:
                found.append((line, "alter_column renames a column"))
            if _is_false(_keyword(node, "nullable")):
                found.append((line, "alter_column makes a column NOT NULL"))
            if _keyword(node, "type_") is not None:
                found.append((line, "alter_column changes a column's type"))
            default = _keyword(node, "server_default")
            if isinstance(default, ast.Constant) and default.value is None:
                found.append((line, "alter_column drops a server default old inserts rely on"))
        elif operation == "add_column" and node.args:
            column = node.args[-1]
            if _column_is_required_without_default(column):
                found.append((line, "add_column NOT NULL without a server default"))
    return [f"line {line}: {what}" for line, what in sorted(found)]


@pytest.mark.parametrize("migration", sorted(VERSIONS.glob("*.py")), ids=lambda p: p.stem)
def test_each_upgrade_only_expands_the_schema(migration: Path) -> None:
    found = unsafe_operations(migration.read_text())
    if migration.stem in BEFORE_THE_FIRST_RELEASE:
        assert found, "no longer contracts: remove it from BEFORE_THE_FIRST_RELEASE"
        return
    assert found == []


def test_a_contracting_upgrade_is_caught_unless_declared() -> None:
    unsafe = """
def upgrade() -> None:
    op.add_column("bookings", sa.Column("origin", sa.String(16), nullable=False))
    with op.batch_alter_table("patients") as batch_op:
        batch_op.alter_column("name", new_column_name="full_name", server_default=None)
        batch_op.drop_column("legacy")
    op.drop_table("push_requests")

def downgrade() -> None:
    op.drop_table("bookings")
"""
    assert unsafe_operations(unsafe) == [
        "line 3: add_column NOT NULL without a server default",
        "line 5: alter_column drops a server default old inserts rely on",
        "line 5: alter_column renames a column",
        "line 6: drop_column",
        "line 7: drop_table",
    ]
    safe = unsafe.replace("nullable=False)", 'nullable=False, server_default="patient")')
    assert unsafe_operations(safe)[0].startswith("line 5: ")
    declared = 'CONTRACT = "push_requests unused since 0.4"\n' + unsafe
    assert unsafe_operations(declared) == []
