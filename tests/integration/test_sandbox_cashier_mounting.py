"""The sandbox cashier confirms bookings without money: it is mounted only when the sandbox is
the configured payment gateway, and absent (404, not in the OpenAPI paths) otherwise."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec
import pytest

from guahao.bootstrap import Platform
from guahao.web.app import create_app
from tests.fixtures.platforms import settings_for


@pytest.mark.parametrize(("gateway", "mounted"), [("sandbox", True), ("wechat_pay", False)])
async def test_the_sandbox_cashier_is_mounted_only_for_the_sandbox_gateway(
    sqlite_platform: Platform,
    tmp_path: Path,
    sqlite_url: str,
    redis_url: str,
    gateway: str,
    mounted: bool,
) -> None:
    # No real provider's adapter exists yet, so the settings loader accepts only "sandbox";
    # the app's decision is tested against the name a real one would carry.
    settings = msgspec.structs.replace(
        settings_for(tmp_path, sqlite_url, redis_url), payment_gateway=gateway
    )
    app = create_app(settings, platform=sqlite_platform)
    app.state.platform = sqlite_platform  # what the lifespan does; ASGITransport runs none
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = await client.get("/sandbox/pay/no-such-order")
        pay = await client.post("/sandbox/pay/no-such-order")
    paths = {route.path for route in app.routes}
    assert ("/sandbox/pay/{order_no:str}" in paths) is mounted
    if not mounted:
        assert (page.status_code, pay.status_code) == (404, 404)
