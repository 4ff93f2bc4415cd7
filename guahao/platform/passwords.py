"""Password hashing for citizens, staff and hospital clients: scrypt (memory-hard, in the
standard library).

One scrypt costs about 50 ms of CPU and 16 MiB. On the event loop, forty sign-ins with wrong
client ids stalled every other request for seconds; so requests use the ``*_off_loop`` forms,
which run scrypt in worker threads (it releases the GIL) and at most ``CONCURRENT_HASHES`` at a
time per process: a burst waits its turn instead of taking all the CPU and memory.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import os
import weakref

__all__ = [
    "CONCURRENT_HASHES",
    "hash_password",
    "hash_password_off_loop",
    "verify_password",
    "verify_password_off_loop",
    "verify_unknown_off_loop",
]

CONCURRENT_HASHES = max(1, len(os.sched_getaffinity(0)) - 1)
"""Hashes at a time per process: one core fewer than the process may use (at least one), so
a burst of sign-ins never takes the core the event loop needs (with four at a time on two
cores, 40 sign-ins at once held ``/health`` at over a second)."""


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_password(password: str, stored: str) -> bool:
    try:
        _, salt, digest = stored.split("$")
    except ValueError:
        return False
    again = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=2**14, r=8, p=1)
    return hmac.compare_digest(again, base64.b64decode(digest))


_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _limiter() -> asyncio.Semaphore:
    """One semaphore per event loop (a semaphore belongs to the loop it first waited on)."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = asyncio.Semaphore(CONCURRENT_HASHES)
    return limiter


@functools.cache
def _unknown_hash() -> str:
    return hash_password("no such user")


async def hash_password_off_loop(password: str) -> str:
    async with _limiter():
        return await asyncio.to_thread(hash_password, password)


async def verify_password_off_loop(password: str, stored: str) -> bool:
    """``verify_password`` in a worker thread. A stored value that is no scrypt hash (an
    account that has no password) costs the same work, so timing does not tell it apart."""
    if not stored.startswith("scrypt$"):
        return await verify_unknown_off_loop(password)
    async with _limiter():
        return await asyncio.to_thread(verify_password, password, stored)


async def verify_unknown_off_loop(password: str) -> bool:
    """The work of a real check for a name that does not exist, so that its absence cannot be
    told by timing (always False)."""
    async with _limiter():
        stored = await asyncio.to_thread(_unknown_hash)
        await asyncio.to_thread(verify_password, password, stored)
    return False
