"""Routes take what they use: every handler of the app declares the services it needs by
their ``Platform`` field names, never the whole platform."""

from __future__ import annotations

import base64
import typing
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.di import NamedDependency
from litestar.routes import HTTPRoute

from guahao.bootstrap import Platform
from guahao.platform.client_context import ClientContext
from guahao.web.app import create_app
from guahao.web.dependencies import DEPENDENCY_NAMES, PLATFORM_FIELDS
from tests.fixtures.platforms import settings_for

_NAMED = typing.get_args(NamedDependency[Any])[1]

APP_DEPENDENCIES = {"page", "console", "relying_party", "citizen_sessions"}
"""Dependencies that are not Platform fields: the pages' and the staff console's contexts and
the OpenID Connect relying party with its session seam (``guahao.web.app``)."""


def _app(tmp_path: Path) -> Litestar:
    settings = settings_for(tmp_path, "sqlite+aiosqlite:///unused.db", "redis://127.0.0.1:1/0")
    assert base64.b64decode(settings.secret("secret_key"))  # a real settings object
    return create_app(settings)


def our_handlers(app: Litestar) -> list[Any]:
    """The app's HTTP handlers written in ``guahao`` (not Litestar's own schema routes)."""
    return [
        handler
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        if handler.fn.__module__.startswith("guahao.")
    ]


def named_dependencies(app: Litestar) -> dict[str, set[str]]:
    """Each handler's (by operation id) dependencies declared with ``NamedDependency``."""
    found: dict[str, set[str]] = {}
    for handler in our_handlers(app):
        parameters = handler.parsed_fn_signature.parameters
        found[str(handler.operation_id or handler.handler_name)] = {
            name
            for name, field in parameters.items()
            if any(type(meta) is type(_NAMED) for meta in field.metadata)
        }
    return found


def test_every_named_dependency_is_a_platform_field_or_the_request_context(
    tmp_path: Path,
) -> None:
    declared = named_dependencies(_app(tmp_path))
    assert declared["holdSlot"] == {"bookings"}  # one dependency: no task group per grant
    assert declared["health"] == {"readiness"}
    # ``page`` (language, elderly mode, the signed-in account) exists on the pages' router only;
    # the identity provider's relying party and the session seam are the app's own
    unknown = {
        op: names - set(DEPENDENCY_NAMES) - APP_DEPENDENCIES for op, names in declared.items()
    }
    assert {op: names for op, names in unknown.items() if names} == {}


def test_no_handler_takes_the_whole_platform(tmp_path: Path) -> None:
    handlers = our_handlers(_app(tmp_path))
    assert len(handlers) > 60  # every route of the API is looked at
    for handler in handlers:
        for name, field in handler.parsed_fn_signature.parameters.items():
            assert name != "platform", handler.handler_name
            assert field.annotation is not Platform, handler.handler_name


def test_the_dependency_names_are_the_platform_fields() -> None:
    assert "platform" not in DEPENDENCY_NAMES
    assert {"bookings", "queries", "accounts", "search", "blacklist"} <= set(PLATFORM_FIELDS)
    assert set(PLATFORM_FIELDS) | {"clock", "client"} == set(DEPENDENCY_NAMES)


async def test_each_declared_type_accepts_what_the_platform_provides(
    sqlite_platform: Platform, tmp_path: Path
) -> None:
    """Litestar checks every dependency against the handler's declared type (a protocol must be
    checkable at run time); this is that check, for every handler, against a running
    platform."""
    provided: dict[str, Any] = {name: getattr(sqlite_platform, name) for name in PLATFORM_FIELDS}
    provided["clock"] = sqlite_platform.ports.clock
    provided["client"] = ClientContext()
    for handler in our_handlers(_app(tmp_path)):
        for name, field in handler.parsed_fn_signature.parameters.items():
            if name not in APP_DEPENDENCIES and any(
                type(meta) is type(_NAMED) for meta in field.metadata
            ):
                assert isinstance(provided[name], field.annotation), (handler.handler_name, name)
