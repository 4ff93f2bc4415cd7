"""schemathesis against the live OpenAPI document, signed in as each role an operation admits
(and anonymous on the public ones): no server error, and no response that breaks the schema the
document gives for it.

Bounded and deterministic for CI: a few examples per operation and role (``MAX_EXAMPLES``),
generated with Hypothesis derandomized (the same cases every run), no shrinking and no example
database. schemathesis calls the server with ``requests`` (blocking), so the run happens in a
worker thread while the live server keeps serving from the test's event loop. SQLite only: the
inputs exercise validation and encoding in the web layer, which does not depend on the database
(the authorization matrix covers PostgreSQL).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from guahao.bootstrap import Platform
from tests.e2e.test_authorization_matrix import (
    ROLES,
    Operation,
    allowed,
    build_world,
    operations_of,
)

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 3


@pytest.fixture
def platform(sqlite_platform: Platform) -> Platform:
    """SQLite only (see the module's docstring): ``live_server`` serves this platform."""
    return sqlite_platform


# One role of each kind the document names (the matrix covers their twins).
FUZZ_ROLES = ("anonymous", "citizen", "hospital_client", "admin", "auditor", "hospital_staff")


def _checker(operation: Any, base_url: str, headers: dict[str, str]) -> Any:
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        sent = {**headers, "Idempotency-Key": uuid.uuid4().hex}
        response = case.call(base_url=base_url, headers=sent, timeout=30)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    return check


def _fuzz(base_url: str, document: dict[str, Any], headers: dict[str, dict[str, str]]) -> list[str]:
    schema = schemathesis.openapi.from_dict(document)
    by_route = {(op.method, op.path): op for op in operations_of(document)}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        described: Operation = by_route[(operation.method.lower(), operation.path)]
        if described.security:
            roles = [r for r in FUZZ_ROLES if r != "anonymous" and allowed(described, r)]
        else:
            roles = ["anonymous", "citizen"]  # open to all: as nobody and as a signed-in citizen
        for role in roles:
            try:
                _checker(operation, base_url, headers[role])()
            except Exception as exc:  # every failure is reported, then the next case runs
                failures.append(f"{described.operation_id} as {role}: {str(exc)[:600]}")
    return failures


async def test_no_server_error_and_no_response_outside_its_schema_for_any_role(
    platform: Platform, http: httpx.AsyncClient
) -> None:
    assert set(FUZZ_ROLES) <= set(ROLES)
    world = await build_world(http, platform)
    document = (await http.get("/schema/openapi.json")).json()
    failures = await asyncio.to_thread(_fuzz, str(http.base_url), document, world.headers)
    assert not failures, "\n\n".join(failures)
