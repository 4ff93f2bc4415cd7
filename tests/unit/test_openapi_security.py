"""The OpenAPI document declares its security schemes and which one each operation needs,
read from the guards that enforce them."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute

from guahao.web.app import create_app
from tests.fixtures.platforms import settings_for


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Litestar:
    tmp = tmp_path_factory.mktemp("openapi")
    # create_app connects to nothing: the database and Redis are opened by its lifespan
    return create_app(settings_for(tmp, f"sqlite+aiosqlite:///{tmp}/g.db", "redis://127.0.0.1:1"))


@pytest.fixture(scope="module")
def document(app: Litestar) -> dict[str, Any]:
    return app.openapi_schema.to_schema()


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        op["operationId"]: op
        for item in document["paths"].values()
        for method, op in item.items()
        if method in {"get", "put", "post", "delete", "patch"}
    }


def test_the_document_declares_the_citizen_staff_hospital_and_page_schemes(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["citizenBearer"] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "",
    }
    assert schemes["staffBearer"]["scheme"] == "bearer"
    flow = schemes["hospitalOAuth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/api/v1/oauth/token"
    assert set(flow["scopes"]) == {"hospital:push", "hospital:read"}
    assert (schemes["pageSession"]["in"], schemes["pageSession"]["name"]) == (
        "cookie",
        "guahao_session",
    )


def test_each_operation_names_what_it_needs(document: dict[str, Any]) -> None:
    ops = operations(document)
    assert ops["holdSlot"]["security"] == [{"citizenBearer": []}]
    assert ops["addBan"]["security"] == [{"staffBearer": ["authority_admin"]}]
    assert ops["auditLog"]["security"] == [
        {"staffBearer": ["authority_admin", "authority_auditor"]}
    ]
    assert ops["regionRules"]["security"] == [{"staffBearer": []}]
    assert ops["pushSchedules"]["security"] == [{"hospitalOAuth2": ["hospital:push"]}]
    assert ops["hospitalBookings"]["security"] == [{"hospitalOAuth2": ["hospital:read"]}]
    assert ops["oidcLogout"]["security"] == [{"pageSession": []}, {}]
    for public in ("registerAccount", "issueToken", "hospitalToken", "search", "health"):
        assert "security" not in ops[public], public


def test_an_operation_declares_security_exactly_when_a_guard_protects_it(app: Litestar) -> None:
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.resolve_include_in_schema() and handler.operation_id != "oidcLogout":
                assert bool(handler.resolve_guards()) == bool(handler.resolve_security()), (
                    route.path,
                    handler.http_methods,
                )
