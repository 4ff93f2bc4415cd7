"""docs/rules.md documents every rule with the default the code has: the guide cannot drift."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from guahao.platform.region_rules import RegionRules

GUIDE = Path(__file__).parents[2] / "docs" / "rules.md"


def _leaves(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


LEAVES = dict(_leaves(msgspec.to_builtins(RegionRules())))


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(sorted(str(v) for v in value))
    return msgspec.json.encode(value).decode().strip('"')


@pytest.mark.parametrize("path", sorted(LEAVES))
def test_every_rule_is_in_the_guide_with_its_default(path: str) -> None:
    rows = re.findall(rf"^\| `{re.escape(path)}` \| ([^|]*) \|", GUIDE.read_text(), re.M)
    assert rows, f"{path} is not documented in docs/rules.md"
    if path != "blacklist.policies":  # a list of structs: described in its own section
        assert rows[0].strip() == _shown(LEAVES[path])


def test_the_guide_has_no_rule_the_code_lacks() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+(?:\.[a-z_0-9]+)*)` \| ", GUIDE.read_text(), re.M))
    assert documented <= set(LEAVES), sorted(documented - set(LEAVES))
