"""The rules API's names: camelCase on the wire (as every other route), snake_case inside.

Region rules are stored as versions of their snake_case form (``msgspec.to_builtins`` of
``RegionRules``), so renaming the platform's structs would orphan every stored version; the
translation therefore happens here, at the edge. Changes are accepted under either spelling,
because docs/rules.md has always shown them as the rules' dotted snake_case names
(``{"limits.per_patient_day": 2}``) and clients written from it must keep working.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

__all__ = ["camel_name", "camel_tree", "snake_name", "snake_tree"]

_UPPER = re.compile(r"(?<!^)([A-Z])")


def camel_name(name: str) -> str:
    """One (possibly dotted) rule name in camelCase.

    >>> camel_name("limits.per_patient_day")
    'limits.perPatientDay'
    """
    return ".".join(
        part.split("_")[0] + "".join(w[:1].upper() + w[1:] for w in part.split("_")[1:])
        for part in name.split(".")
    )


def snake_name(name: str) -> str:
    """One (possibly dotted) rule name in snake_case, whichever spelling it came in.

    >>> snake_name("limits.perPatientDay"), snake_name("limits.per_patient_day")
    ('limits.per_patient_day', 'limits.per_patient_day')
    """
    return _UPPER.sub(r"_\1", name).replace("._", ".").lower()


def camel_tree(value: Any) -> Any:
    """``value`` (a struct or its builtins) with every key camelCased, and the dotted rule
    names listed in ``hospitalOverridable`` too, so they can be sent back as changes."""
    tree = msgspec.to_builtins(value)
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, item in tree.items():
            name = camel_name(str(key))
            if name == "hospitalOverridable" and isinstance(item, list):
                out[name] = sorted(camel_name(str(rule)) for rule in item)
            else:
                out[name] = camel_tree(item)
        return out
    if isinstance(tree, list):
        return [camel_tree(item) for item in tree]
    return tree


def snake_tree(value: Any) -> Any:
    """Rule changes (nested or dotted keys, either spelling) with snake_case keys, and the
    rule names of a ``hospitalOverridable`` list too."""
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = snake_name(str(key))
        if name.rsplit(".", 1)[-1] == "hospital_overridable" and isinstance(item, list):
            out[name] = [snake_name(rule) if isinstance(rule, str) else rule for rule in item]
        else:
            out[name] = snake_tree(item)
    return out
