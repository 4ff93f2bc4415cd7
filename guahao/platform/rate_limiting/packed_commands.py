"""Script calls in RESP, put together from byte strings kept between calls.

The limiter's sync sends the pending hits of every counter a process touched in the last
50 ms in one ``add_to_windows.lua`` call: at a release crowd about three counters per
sold-out refusal (each account's two windows and its address's one). Packed by hiredis at
every sync, each counter's two key names and its window were encoded and framed again
each time, about a microsecond of every refusal (bench/profiles/refuse2-*). A counter's keys
and window never change, so their RESP is made once, with the counter, and a sync's call
is a header and one join of those bytes (``AutoPipeline``'s ``packed``).

The bytes are exactly ``hiredis.pack_command``'s for the same call
(tests/unit/test_packed_commands.py).
"""

from __future__ import annotations

from guahao.platform.inventory.lua_scripts import LuaScript

__all__ = ["bulk", "evalsha_head", "window_keys"]


def bulk(value: str | int) -> bytes:
    """One RESP bulk string: a key's name, or a number as Redis reads an argument.

    >>> bulk("guahao-limits:{a/b}"), bulk(60)
    (b'$19\\r\\nguahao-limits:{a/b}\\r\\n', b'$2\\r\\n60\\r\\n')
    """
    data = str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def window_keys(current: str) -> bytes:
    """A counter's previous window's key (``current/-1``) and its current window's, as two
    bulk strings: the name encoded once for both.

    >>> window_keys("p:{k}") == bulk("p:{k}/-1") + bulk("p:{k}")
    True
    """
    data = current.encode()
    size = len(data)
    return b"$%d\r\n%b/-1\r\n$%d\r\n%b\r\n" % (size + 3, data, size, data)


def evalsha_head(script: LuaScript, keys: int, args: int) -> bytes:
    """The start of ``EVALSHA`` of ``script`` with ``keys`` keys and ``args`` arguments: the
    keys' and the arguments' bulk strings follow it.

    >>> evalsha_head(LuaScript("s", "return 1"), 2, 2)[:22]
    b'*7\\r\\n$7\\r\\nEVALSHA\\r\\n$40\\r\\n'
    """
    return b"*%d\r\n$7\r\nEVALSHA\r\n" % (3 + keys + args) + bulk(script.sha) + bulk(keys)
