"""What route handlers can ask for, by name: each field of the running ``Platform`` (its
services and resources) under the field's own name, plus the request's ``clock`` and
``client``.

A handler declares only what it uses (``bookings: NamedDependency[BookingService]``), so its
signature says which services it touches and a test or a reader need not follow the whole
platform. The names are the ``Platform`` field names, the one convention every route and page
follows; a new service becomes injectable by being a field of ``Platform``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide

from guahao.bootstrap import Platform
from guahao.platform.client_context import ClientContext
from guahao.platform.clock import Clock
from guahao.platform.personal_data import PersonalDataVault

__all__ = [
    "DEPENDENCY_NAMES",
    "PLATFORM_FIELDS",
    "client_context",
    "device_hash",
    "ip_hash",
    "platform_dependencies",
]

PLATFORM_FIELDS = tuple(f.name for f in dataclasses.fields(Platform) if not f.name.startswith("_"))
"""The ``Platform`` fields a handler may declare by name (its services and resources)."""

DEPENDENCY_NAMES = (*PLATFORM_FIELDS, "clock", "client")
"""Every name a handler may declare as a ``NamedDependency``."""


def _field_of_platform(name: str) -> Callable[[State], Any]:
    def provide(state: State) -> Any:
        return getattr(state.platform, name)

    provide.__name__ = f"provide_{name}"
    return provide


def provide_clock(state: State) -> Clock:
    """The platform's clock (tests run a manual one): "today" is the platform's, not the
    server's."""
    clock: Clock = state.platform.ports.clock
    return clock


def provide_client(request: Request[Any, Any, Any], state: State) -> ClientContext:
    """The request's address and device as keyed hashes, for rate limits and the authority's
    suspicion signals. The address is the peer's (a proxy in front must set it, e.g.
    uvicorn ``--proxy-headers``); the device is the app's ``X-Device-Id``."""
    host = request.client.host if request.client else ""
    return client_context(state.platform.ports.vault, host, request.headers.get("x-device-id", ""))


def client_context(vault: PersonalDataVault, host: str, device: str) -> ClientContext:
    """The keyed hashes of an address and a device id (the device id cut at 200 characters)."""
    return ClientContext(ip_hash=ip_hash(vault, host), device_hash=device_hash(vault, device))


def ip_hash(vault: PersonalDataVault, host: str) -> str:
    """``client_context``'s ``ip_hash``: apart, so the front answers remember it per address."""
    return vault.index("ip", host) if host else ""


def device_hash(vault: PersonalDataVault, device: str) -> str:
    """``client_context``'s ``device_hash``: apart, so the front answers remember it per
    device."""
    device = device[:200]
    return vault.index("device", device) if device else ""


def platform_dependencies() -> dict[str, Provide]:
    """The app's dependencies: one per ``Platform`` field, and ``clock`` and ``client``."""
    provided = {
        name: Provide(_field_of_platform(name), sync_to_thread=False) for name in PLATFORM_FIELDS
    }
    provided["clock"] = Provide(provide_clock, sync_to_thread=False)
    provided["client"] = Provide(provide_client, sync_to_thread=False)
    return provided
