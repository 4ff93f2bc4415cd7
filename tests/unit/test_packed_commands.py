"""The limiter's sync writes its calls from bytes kept on each counter: they must be exactly
what hiredis packs for the same call, or Redis would read other keys or arguments."""

from __future__ import annotations

import hiredis
import pytest

from guahao.platform.inventory.lua_scripts import LuaScript
from guahao.platform.rate_limiting.packed_commands import bulk, evalsha_head, window_keys

SCRIPT = LuaScript("any", "return #KEYS")


@pytest.mark.parametrize(
    ("keys", "args"),
    [
        (["guahao-limits:{LIMITER/hold:account/a1/30/1/minute}"], [60]),
        (["p:{k}/-1", "p:{k}", "p:{j}/-1", "p:{j}"], [60, 1, 3600, 12]),
        (["p:{账号}/-1", "p:{账号}"], [86400, 300]),
        ([f"p:{{k{i}}}" for i in range(512)], list(range(512))),
    ],
)
def test_a_call_put_together_from_kept_bytes_is_hiredis_own(
    keys: list[str], args: list[int]
) -> None:
    packed = b"".join(
        [evalsha_head(SCRIPT, len(keys), len(args)), *map(bulk, keys), *map(bulk, args)]
    )
    assert packed == hiredis.pack_command(("EVALSHA", SCRIPT.sha, len(keys), *keys, *args))


def test_a_multibyte_key_is_framed_by_its_bytes_not_its_characters() -> None:
    assert bulk("账") == b"$3\r\n\xe8\xb4\xa6\r\n"


@pytest.mark.parametrize("current", ["p:{k}", "guahao-limits:{LIMITER/hold:ip/账号/600/1/minute}"])
def test_a_counters_two_keys_are_packed_as_hiredis_packs_them(current: str) -> None:
    packed = evalsha_head(SCRIPT, 2, 0) + window_keys(current)
    assert packed == hiredis.pack_command(("EVALSHA", SCRIPT.sha, 2, f"{current}/-1", current))
