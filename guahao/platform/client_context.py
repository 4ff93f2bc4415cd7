"""Where a request came from, handed by the web layer to the services that rate-limit or
score it: a value of the domain's vocabulary, so services need no web type to receive it."""

from __future__ import annotations

import msgspec

__all__ = ["ClientContext"]


class ClientContext(msgspec.Struct, frozen=True, gc=False):
    """Where a request came from, as the web layer saw it (keyed hashes, never raw).

    One is made per request, so it must be cheap and leave the garbage collector nothing:
    a struct of two strings is made in 40 ns (a frozen dataclass in 260) and, holding
    nothing that could point back at it, is never tracked (``gc=False``). Remembered one
    per citizen, the dataclasses piled up in the young generation at a release crowd
    (bench/README.md, issue 15).
    """

    ip_hash: str = ""
    device_hash: str = ""
