"""Where a request came from, handed by the web layer to the services that rate-limit or
score it: a value of the domain's vocabulary, so services need no web type to receive it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClientContext"]


@dataclass(frozen=True)
class ClientContext:
    """Where a request came from, as the web layer saw it (keyed hashes, never raw)."""

    ip_hash: str = ""
    device_hash: str = ""
