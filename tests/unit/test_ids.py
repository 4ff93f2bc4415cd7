"""Ids are UUID4s in hex: unguessable (they appear in URLs) and fresh each time."""

from __future__ import annotations

import uuid

from guahao.platform.ids import new_id


def test_a_new_id_is_a_fresh_uuid4_in_hex() -> None:
    made = [new_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    for one in made[:100]:
        parsed = uuid.UUID(one)
        assert (parsed.hex, parsed.version, parsed.variant) == (one, 4, uuid.RFC_4122)
